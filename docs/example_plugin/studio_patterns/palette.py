"""The palette adapter: what the trainer learns and the generator applies.

A palette is one safetensors file: ``colours`` (n, 3) floats in [0, 1] and ``shares`` (n,), how
much of the pictures each colour covers. safetensors stores arrays exactly and cannot run code
when it is read, unlike pickle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio import InvalidRequest

#: The file name of a palette inside an adapter folder.
PALETTE_FILE = "palette.safetensors"
_FORMAT = "studio-patterns/palette/1"


def palette_file(ref: str | Path) -> Path:
    """The palette file of ``ref``: the file itself, or the one inside an adapter folder."""
    path = Path(ref)
    return path / PALETTE_FILE if path.is_dir() else path


def save_palette(path: Path, colours: Any, shares: Any) -> Path:
    """Write a palette file (``colours`` (n, 3) and ``shares`` (n,)); return its path."""
    import numpy as np
    from safetensors.numpy import save_file

    arrays = {
        "colours": np.asarray(colours, dtype=np.float32),
        "shares": np.asarray(shares, dtype=np.float32),
    }
    # one metadata entry: safetensors writes several in no fixed order, which would give the
    # same palette another sha256 (the recipe of every image made with it records that hash)
    save_file(arrays, str(path), metadata={"format": _FORMAT})
    return path


def load_palette(ref: str | Path) -> tuple[Any, Any]:
    """``(colours, shares)`` of a palette file or adapter folder; InvalidRequest if it is none."""
    from safetensors import safe_open

    path = palette_file(ref)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            if (fh.metadata() or {}).get("format") != _FORMAT:
                raise ValueError("it holds no palette")
            return fh.get_tensor("colours"), fh.get_tensor("shares")
    except Exception as exc:
        raise InvalidRequest(
            f"{path} is not a palette ({exc}): give a palette trained by 'patterns-palette', "
            f"or a folder holding {PALETTE_FILE}"
        ) from exc


def swatch(colours: Any, shares: Any, width: int = 256, height: int = 48) -> Any:
    """A PIL image showing the colours side by side, each as wide as its share."""
    import numpy as np
    from PIL import Image

    middles = (np.arange(width) + 0.5) / width  # where each column of pixels sits, in 0..1
    index = np.searchsorted(np.cumsum(np.asarray(shares, dtype=np.float64)), middles)
    row = np.asarray(colours)[np.minimum(index, len(colours) - 1)]
    pixels = np.round(np.clip(row, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(np.broadcast_to(pixels, (height, width, 3))))
