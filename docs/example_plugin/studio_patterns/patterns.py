"""The pattern maths: seeded value noise summed octave by octave, shaped, coloured by a gradient.

Plain numpy, no studio import: the generator imports this module inside ``run``. Every function
is a pure function of its arguments (the random values come from the generator passed in), so the
same seed gives the same pixels, run after run.
"""

from __future__ import annotations

import numpy as np

#: The built-in palettes: dark to light, as ``#rrggbb`` colours.
PALETTES: dict[str, tuple[str, ...]] = {
    "sea": ("#03045e", "#0077b6", "#00b4d8", "#90e0ef", "#caf0f8"),
    "ember": ("#1b0000", "#6a040f", "#d00000", "#f48c06", "#ffdd00"),
    "forest": ("#081c15", "#1b4332", "#40916c", "#95d5b2", "#d8f3dc"),
    "dusk": ("#10002b", "#3c096c", "#7b2cbf", "#e0aaff", "#ffd6a5"),
    "mono": ("#000000", "#ffffff"),
}

#: Entries of a gradient table: a field value in [0, 1] picks one of them.
GRADIENT_SIZE = 256


def hex_colours(colours: tuple[str, ...]) -> np.ndarray:
    """``#rrggbb`` strings as an (n, 3) array of floats in [0, 1]."""
    return np.array([[int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)] for c in colours])


def to_hex(colours: np.ndarray) -> list[str]:
    """An (n, 3) array of floats in [0, 1] as ``#rrggbb`` strings."""
    values = np.clip(np.round(np.asarray(colours) * 255), 0, 255).astype(int)
    return ["#{:02x}{:02x}{:02x}".format(*row) for row in values]


def gradient(colours: np.ndarray, shares: np.ndarray | None = None) -> np.ndarray:
    """A (GRADIENT_SIZE, 3) table running through ``colours`` from dark to light.

    ``shares`` (one per colour, summing to 1) give each colour room in proportion: a palette
    learned from pictures that are mostly blue makes mostly blue patterns.
    """
    colours = np.asarray(colours, dtype=np.float64)
    shares = np.full(len(colours), 1 / len(colours)) if shares is None else np.asarray(shares)
    order = np.argsort(colours @ np.array([0.2126, 0.7152, 0.0722]), kind="stable")
    colours, shares = colours[order], shares[order]
    t = np.linspace(0.0, 1.0, GRADIENT_SIZE)
    if len(colours) == 1:
        return np.repeat(colours, GRADIENT_SIZE, axis=0)
    stops = np.cumsum(shares) - shares / 2  # each colour sits in the middle of its share
    stops = (stops - stops[0]) / max(stops[-1] - stops[0], 1e-12)
    return np.stack([np.interp(t, stops, colours[:, c]) for c in range(3)], axis=1)


def value_noise(rng: np.random.Generator, height: int, width: int, frequency: float) -> np.ndarray:
    """Smooth noise in [0, 1]: random values on a grid ``frequency`` cells wide, interpolated."""
    fx, fy = frequency, frequency * height / width
    grid = rng.random((int(fy) + 2, int(fx) + 2))
    x = np.arange(width) * (fx / width)
    y = np.arange(height) * (fy / height)
    x0, y0 = x.astype(int), y.astype(int)
    tx, ty = _smooth(x - x0), _smooth(y - y0)[:, None]
    top = grid[y0][:, x0] * (1 - tx) + grid[y0][:, x0 + 1] * tx
    bottom = grid[y0 + 1][:, x0] * (1 - tx) + grid[y0 + 1][:, x0 + 1] * tx
    return top * (1 - ty) + bottom * ty


def _smooth(t: np.ndarray) -> np.ndarray:
    return t * t * (3 - 2 * t)


def shape(pattern: str, noise: np.ndarray, scale: float) -> np.ndarray:
    """Turn summed noise (values around 0.5) into the field of a pattern, in [0, 1]."""
    height, width = noise.shape
    if pattern == "clouds":
        field = noise
    elif pattern == "marble":  # veins: a sine across the image, bent by the noise
        x = np.arange(width)[None, :] * (scale / width)
        field = 0.5 + 0.5 * np.sin(2 * np.pi * (x + 2.5 * noise))
    elif pattern == "rings":  # wood: rings around the centre, bent by the noise
        y, x = np.mgrid[0:height, 0:width]
        radius = np.hypot(x - width / 2, y - height / 2) * (scale / width)
        field = 0.5 + 0.5 * np.sin(2 * np.pi * (radius + 1.5 * noise))
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    low, high = field.min(), field.max()
    return (field - low) / max(high - low, 1e-12)


def render(field: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Colour a field in [0, 1] through a gradient table: a (height, width, 3) uint8 array."""
    index = np.round(field * (len(table) - 1)).astype(int)
    return np.round(table[index] * 255).astype(np.uint8)
