"""Init images and masks: checked before any model work, then converted to what diffusers takes.

Accepted modes and what happens to them (documented in docs/guide-image.md):

=====================  ==========================================================================
RGB, RGBX, YCbCr       used as RGB
L, 1 (greyscale)       copied into the three channels
P (palette)            expanded to RGB (RGBA when the palette has a transparent colour)
I;16*, I (16-bit)      scaled to 8 bits (value / 257)
RGBA, LA, PA, RGBa     transparent pixels flattened onto white or black (``transparent`` option),
                       or refused with ``transparent=error``
CMYK, LAB, HSV, F      refused: no faithful conversion without a colour profile / value range
=====================  ==========================================================================

EXIF orientation is applied (photos from phones come out upright). Masks are read as greyscale
(white = repaint) and must have the init image's size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio import InvalidRequest

_RGB_LIKE = {"RGB", "RGBX", "YCbCr"}
_GREY = {"L", "1"}
_SIXTEEN = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}
_REFUSED = {
    "CMYK": "CMYK colours cannot be converted faithfully without a colour profile; "
    "export the image as RGB (sRGB) from your image editor",
    "LAB": "Lab images are not supported; export the image as RGB",
    "HSV": "HSV images are not supported; export the image as RGB",
    "F": "32-bit float images have no fixed value range; export the image as 8- or 16-bit",
}


@dataclass
class ImageInfo:
    """What :func:`inspect_image` found, without decoding the pixels."""

    path: Path
    mode: str
    size: tuple[int, int]
    has_alpha: bool
    format: str | None


@dataclass
class LoadedImage:
    """An image converted for the pipeline, with the notes to show the user."""

    image: Any  # PIL.Image.Image
    notes: list[str] = field(default_factory=list)


def _open(path: Path, role: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidRequest(f"{role} {str(path)!r} does not exist (or is not a file)")
    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        raise InvalidRequest(
            f"{role} {str(path)!r} is not an image Pillow can read (PNG, JPEG, WebP, TIFF, BMP...)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise InvalidRequest(f"{role} {str(path)!r} is too large to open safely: {exc}") from None
    except OSError as exc:
        raise InvalidRequest(f"{role} {str(path)!r} cannot be read: {exc}") from None
    return img


def inspect_image(
    path: Path,
    role: str = "init image",
    *,
    transparent: str = "white",
    max_side: int = 4096,
    min_side: int = 64,
) -> ImageInfo:
    """Check an image file without decoding it fully: readable, supported mode, sane size.

    Raises :class:`InvalidRequest` naming the problem and what is accepted.
    """
    img = _open(path, role)
    with img:
        try:
            img.verify()  # checks the file structure (truncated/corrupt data) without decoding
        except Exception as exc:
            raise InvalidRequest(f"{role} {str(path)!r} is damaged: {exc}") from None
        mode = img.mode
        size = img.size
        fmt = img.format
        has_alpha = mode in _ALPHA or (mode == "P" and "transparency" in img.info)
    if mode in _REFUSED:
        raise InvalidRequest(f"{role} {str(path)!r} is in {mode} mode: {_REFUSED[mode]}")
    if mode not in _RGB_LIKE | _GREY | _SIXTEEN | _ALPHA | {"P"}:
        raise InvalidRequest(
            f"{role} {str(path)!r} is in unsupported mode {mode}; accepted: RGB, greyscale, "
            "palette, 16-bit greyscale, or those with transparency"
        )
    if role == "init image" and has_alpha and transparent == "error":
        raise InvalidRequest(
            f"{role} {str(path)!r} has transparency ({mode}); flatten it first, or set "
            "transparent=white or transparent=black"
        )
    w, h = size
    if max(w, h) > max_side:
        raise InvalidRequest(
            f"{role} {str(path)!r} is {w}x{h}; the largest side allowed is {max_side} pixels "
            "(resize it, or set width/height)"
        )
    if min(w, h) < 8:
        raise InvalidRequest(f"{role} {str(path)!r} is {w}x{h}: too small (at least 8 pixels)")
    return ImageInfo(Path(path), mode, size, has_alpha, fmt)


def _sixteen_to_8bit(img: Any) -> Any:
    import numpy as np
    from PIL import Image

    arr = np.asarray(img, dtype=np.int64)
    arr = np.clip(arr, 0, 65535)
    return Image.fromarray(((arr + 128) // 257).astype(np.uint8))


def load_rgb(path: Path, *, transparent: str = "white", role: str = "init image") -> LoadedImage:
    """Decode and convert an init image to 8-bit RGB (see the module table), with notes."""
    from PIL import Image, ImageOps

    info = inspect_image(path, role, transparent=transparent)
    notes: list[str] = []
    with _open(path, role) as raw:
        raw.load()
        img = ImageOps.exif_transpose(raw) or raw
        img = img.copy()
    mode = img.mode
    if mode in _SIXTEEN:
        img = _sixteen_to_8bit(img)
        notes.append(f"{role}: {mode} (16-bit) image scaled to 8 bits")
    if mode == "P":
        img = img.convert("RGBA" if info.has_alpha else "RGB")
    elif mode == "PA" or mode in ("RGBa", "La"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        alpha = img.getchannel("A")
        lowest: Any = alpha.getextrema()[0]
        if lowest < 255:
            colour = (255, 255, 255) if transparent == "white" else (0, 0, 0)
            base = Image.new("RGB", img.size, colour)
            base.paste(img.convert("RGB"), mask=alpha)
            img = base
            notes.append(f"{role}: transparent pixels flattened onto {transparent}")
        else:
            img = img.convert("RGB")
    if img.mode != "RGB":
        if img.mode in _GREY:
            notes.append(f"{role}: greyscale image converted to RGB")
        img = img.convert("RGB")
    return LoadedImage(img, notes)


def load_mask(path: Path) -> LoadedImage:
    """Decode a mask as 8-bit greyscale (white = repaint)."""
    from PIL import ImageOps

    inspect_image(path, "mask image", transparent="white")
    with _open(path, "mask image") as raw:
        raw.load()
        img = ImageOps.exif_transpose(raw) or raw
        img = img.copy()
    notes = []
    if img.mode in _SIXTEEN:
        img = _sixteen_to_8bit(img)
    elif img.mode != "L":
        if img.mode not in _GREY:
            notes.append(f"mask image: {img.mode} read as greyscale (white = repaint)")
        img = img.convert("L")
    return LoadedImage(img, notes)


def check_mask_matches(init: ImageInfo, mask: ImageInfo) -> None:
    """The mask must cover the init image pixel for pixel."""
    if init.size != mask.size:
        raise InvalidRequest(
            f"mask image is {mask.size[0]}x{mask.size[1]} but the init image is "
            f"{init.size[0]}x{init.size[1]}; they must be the same size"
        )


def target_size(
    width: int | None, height: int | None, image_size: tuple[int, int] | None, native: int
) -> tuple[int, int]:
    """Output size: the options, else the init image's size rounded down to a multiple of 8,
    else the model's native square. A single side given keeps the init image's aspect ratio."""
    if image_size is not None:
        iw, ih = image_size
        if width is None and height is None:
            width, height = iw, ih
        elif width is None:
            assert height is not None
            width = round(iw * height / ih)
        elif height is None:
            height = round(ih * width / iw)
    w = width if width is not None else native
    h = height if height is not None else native
    return max(64, w // 8 * 8), max(64, h // 8 * 8)


def fit(image: Any, size: tuple[int, int], *, mask: bool = False) -> Any:
    """Resize to ``size`` (high-quality for images, bilinear for masks) when it differs."""
    from PIL import Image

    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.BILINEAR if mask else Image.Resampling.LANCZOS)
