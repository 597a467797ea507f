"""The learning maths of the palette trainer: k-means on a seeded sample of pixels.

Plain numpy. A step is one Lloyd iteration (assign each pixel to its nearest colour, move each
colour to the mean of its pixels); its loss is the mean squared distance of the pixels to their
colour, which never rises. Everything is a pure function of its arguments, so a run resumed from
saved colours continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Pictures are shrunk to this many pixels on their longer side before sampling.
THUMBNAIL = 128


def load_pixels(files: Sequence[Path]) -> np.ndarray:
    """Every pixel of the (shrunk) pictures, as an (n, 3) array of floats in [0, 1]."""
    from PIL import Image

    chunks = []
    for path in files:
        with Image.open(path) as image:
            picture = image.convert("RGB")
        picture.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR)
        chunks.append(np.asarray(picture, dtype=np.float64).reshape(-1, 3) / 255)
    return np.concatenate(chunks)


def sample(pixels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` pixels drawn without replacement (all of them if there are fewer)."""
    rng = np.random.default_rng([seed, 0])
    if len(pixels) <= count:
        return pixels
    return pixels[np.sort(rng.choice(len(pixels), size=count, replace=False))]


def initial_colours(pixels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++: each next colour is a pixel drawn far from the colours chosen so far."""
    rng = np.random.default_rng([seed, 1])
    colours = [pixels[rng.integers(len(pixels))]]
    for _ in range(1, k):
        distance = squared_distances(pixels, np.array(colours)).min(axis=1)
        total = distance.sum()
        if total <= 0:  # fewer distinct colours than k: repeat one
            colours.append(colours[-1])
            continue
        colours.append(pixels[rng.choice(len(pixels), p=distance / total)])
    return np.array(colours)


def squared_distances(pixels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(n, k): the squared distance of every pixel to every colour."""
    return ((pixels[:, None, :] - colours[None, :, :]) ** 2).sum(axis=2)


def lloyd_step(pixels: np.ndarray, colours: np.ndarray) -> tuple[np.ndarray, float]:
    """One k-means iteration: ``(new colours, loss of the colours given)``."""
    distance = squared_distances(pixels, colours)
    nearest = distance.argmin(axis=1)
    error = distance[np.arange(len(pixels)), nearest]
    updated = colours.copy()
    for k in range(len(colours)):
        members = pixels[nearest == k]
        if len(members):
            updated[k] = members.mean(axis=0)
        else:  # an empty colour takes the pixel that fits worst
            updated[k] = pixels[error.argmax()]
    return updated, float(error.mean())


def shares(pixels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """The fraction of the pixels nearest to each colour."""
    nearest = squared_distances(pixels, colours).argmin(axis=1)
    return np.bincount(nearest, minlength=len(colours)) / len(pixels)


def fingerprint(files: Sequence[Path], *settings: object) -> str:
    """What shaped a run: the files (name, size, content hash) and the settings given."""
    digest = hashlib.sha256(repr(settings).encode())
    for path in files:
        digest.update(f"{path.name}|{path.stat().st_size}|".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
