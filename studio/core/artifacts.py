"""Artifacts and their provenance: the recipe, and the files that carry it.

Every output the studio saves carries its *recipe*: which plugin and generator made it, from which
model (reference, revision, weights hash) and adapters, with which prompt, options and seed, with
which library versions, on which device and dtype, and when. The recipe regenerates the artifact.

- Images are PNG files with an A1111-style ``parameters`` text chunk (read by the wider image
  tool ecosystem) and the full recipe as JSON in a ``studio_recipe`` chunk.
- Audio is WAV or FLAC (soundfile) with the recipe JSON in the file's comment metadata, plus a
  sidecar ``<file>.json``.
- Text is a UTF-8 ``.txt`` file plus a sidecar ``<file>.json``.

Files are written atomically and never overwrite an existing file: a taken name gets a ``-1``,
``-2``... suffix. Pillow, numpy and soundfile are imported only when a file is written or read.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import importlib.metadata
import io
import itertools
import json
import os
import platform
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from studio.core.atomic import atomic_write_bytes, atomic_write_text
from studio.core.errors import InvalidRequest
from studio.core.events import AudioOutput, ImageOutput, Output, TextOutput

if TYPE_CHECKING:
    from studio.core.context import RecipeNotes
    from studio.core.generator import GenerationRun, Generator

__all__ = [
    "AUDIO_FORMATS",
    "RECIPE_SCHEMA",
    "a1111_parameters",
    "artifact_files",
    "artifact_stem",
    "build_recipe",
    "library_versions",
    "read_recipe",
    "sidecar_path",
    "slug",
    "write_artifact",
]

#: Version of the recipe layout (bumped when a key changes meaning). 2: ``model`` may be null (a
#: generator that uses no model), ``options`` include the values the run chose
#: (``ctx.record_options``), and ``threads``/``device_name`` are recorded. Recipes of schema 1 are
#: read and replayed as they are (their missing keys read as ``None``).
RECIPE_SCHEMA = 2

#: The PNG chunk holding the full recipe.
PNG_RECIPE_KEY = "studio_recipe"

#: Audio containers the studio writes, by ``AudioOutput.extra["format"]``.
AUDIO_FORMATS = ("wav", "flac")

#: Distributions whose versions go into every recipe (read from metadata, never imported).
_LIBRARIES = (
    "torch",
    "diffusers",
    "transformers",
    "peft",
    "accelerate",
    "safetensors",
    "huggingface_hub",
    "tokenizers",
    "numpy",
    "Pillow",
    "soundfile",
    "pydantic",
    "pluggy",
)

#: Pillow modes a PNG can hold as they are; other modes are converted to RGB(A) first.
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}


# --- recipe -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _library_versions() -> tuple[tuple[str, str], ...]:
    versions = [("studio", _studio_version()), ("python", platform.python_version())]
    for dist in _LIBRARIES:
        try:
            versions.append((dist, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            pass
    return tuple(versions)


def _studio_version() -> str:
    try:
        return importlib.metadata.version("aigc-studio")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        from studio import __version__

        return __version__


def library_versions() -> dict[str, str]:
    """Versions of the studio, Python and the installed model/IO libraries (no imports)."""
    return dict(_library_versions())


def jsonable(value: Any) -> Any:
    """``value`` made JSON-able: paths to strings, enums to values, models dumped, arrays noted."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=str)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    shape = getattr(value, "shape", None)
    if shape is not None and getattr(value, "ndim", 0) == 0 and hasattr(value, "item"):
        return jsonable(value.item())  # a numpy scalar
    if shape is not None:  # an array or tensor: too big for a recipe, note what it was
        return f"<{type(value).__name__} shape={tuple(shape)}>"
    return str(value)


def build_recipe(
    *,
    plugin_name: str,
    plugin_version: str,
    generator_cls: type[Generator],
    task: str,
    request: GenerationRun,
    notes: RecipeNotes,
    device: str,
    output: Output,
    threads: int | None = None,
    device_name: str | None = None,
) -> dict[str, Any]:
    """The provenance recipe of one output of a run (a JSON-able dict).

    Keys: schema, plugin{name, version}, generator, task, modality, model{ref, source, revision,
    sha256} (``None`` when the run used no model), adapters[{ref, weight, sha256}], prompt,
    options, seed (this output's), index, parent, libraries, device, device_name, threads (torch's
    CPU threads), dtype, created (ISO 8601 with time zone), extra.

    ``request`` is the validated request as it was before the run (the worker runs the plugin on a
    copy); ``options`` are its options with the values the run chose (``notes.options``, from
    ``ctx.record_options``) over them.
    """
    if notes.model:
        model: dict[str, Any] | None = dict(notes.model)
    elif request.model is not None:
        model = {"ref": request.model, "source": None, "revision": None, "sha256": None}
    else:  # a generator that uses no model
        model = None
    if notes.adapters:
        adapters = [dict(a) for a in notes.adapters]
    else:  # the plugin recorded none: keep at least what was asked for
        adapters = [
            {"ref": lora.ref, "weight": lora.weight, "sha256": None} for lora in request.loras
        ]
    seed = getattr(output, "seed", None)
    recipe: dict[str, Any] = jsonable(
        {
            "schema": RECIPE_SCHEMA,
            "plugin": {"name": plugin_name, "version": plugin_version},
            "generator": generator_cls.id,
            "task": task,
            "modality": output.modality,
            "model": model,
            "adapters": adapters,
            "prompt": request.prompt,
            "options": {**jsonable(request.options), **jsonable(notes.options)},
            "seed": request.seed if seed is None else seed,
            "index": getattr(output, "index", 0),
            "parent": request.parent,
            "libraries": library_versions(),
            "device": device,
            "device_name": device_name,
            "threads": threads,
            "dtype": notes.dtype,
            "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "extra": {**notes.extra, **output.extra},
        }
    )
    return recipe


# --- A1111 parameters ---------------------------------------------------------------------------


def _a1111_quote(value: object) -> str:
    """Quote a value the way A1111 does, when it holds a comma, colon or newline."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _model_name(ref: str) -> str:
    """A1111 names a model by its file stem: the last part of a reference, without suffix."""
    name = re.split(r"[\\/]", ref.rstrip("/\\"))[-1]
    stem, dot, suffix = name.rpartition(".")
    if dot and suffix.lower() in {"safetensors", "ckpt", "pt", "pth", "bin"}:
        return stem
    return name


def _number(value: Any) -> str:
    """Integers without a decimal point, other numbers as Python prints them."""
    if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
        return str(int(value))
    return str(value)


def a1111_parameters(recipe: dict[str, Any], size: tuple[int, int] | None = None) -> str:
    """The A1111-style ``parameters`` text of an image recipe.

    The prompt, a ``Negative prompt: ...`` line when there is one, then ``Steps: N, Sampler: X,
    CFG scale: Y, Seed: S, Size: WxH, Model hash: H10, Model: NAME`` from the recipe options
    (``steps``, ``scheduler``, ``guidance_scale``, ``width``/``height``), its seed and model.
    ``size`` (the image's) is used when the options have no width/height; absent keys are left out.
    """
    options = recipe.get("options") or {}
    model = recipe.get("model") or {}
    params: list[tuple[str, str]] = []
    if options.get("steps") is not None:
        params.append(("Steps", _number(options["steps"])))
    if options.get("scheduler"):
        params.append(("Sampler", _a1111_quote(options["scheduler"])))
    if options.get("guidance_scale") is not None:
        params.append(("CFG scale", str(float(options["guidance_scale"]))))
    if recipe.get("seed") is not None:
        params.append(("Seed", str(recipe["seed"])))
    width, height = options.get("width"), options.get("height")
    if width is not None and height is not None:
        params.append(("Size", f"{_number(width)}x{_number(height)}"))
    elif size is not None:
        params.append(("Size", f"{size[0]}x{size[1]}"))
    if model.get("sha256"):
        params.append(("Model hash", str(model["sha256"])[:10]))
    if model.get("ref"):
        params.append(("Model", _a1111_quote(_model_name(str(model["ref"])))))

    text = str(recipe.get("prompt") or "")
    negative = options.get("negative_prompt")
    if negative:
        text += f"\nNegative prompt: {negative}"
    line = ", ".join(f"{key}: {value}" for key, value in params)
    return f"{text}\n{line}".strip()  # as A1111 does: no blank first line without a prompt


# --- writing ------------------------------------------------------------------------------------


def artifact_stem(
    job_id: str | None, index: int, created: float | dt.datetime | None = None
) -> str:
    """A readable file stem: local time, a short job id and the output index.

    ``artifact_stem("3f2a9c1e...", 0, t)`` -> ``"20261122-181500-3f2a9c1e-0"``.
    """
    if created is None:
        moment = dt.datetime.now()
    elif isinstance(created, dt.datetime):
        moment = created
    else:
        moment = dt.datetime.fromtimestamp(created)
    short = re.sub(r"[^0-9A-Za-z]", "", job_id or "")[:8] or "nojob"
    return f"{moment:%Y%m%d-%H%M%S}-{short}-{int(index)}"


def slug(text: str) -> str:
    """A file-name-safe, lower-case form of ``text`` (adapter folders, named after the user's name).

    ``slug("Ink Style / v2")`` -> ``"ink-style-v2"``; an empty result becomes ``"adapter"``.
    """
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in text.strip().lower())
    return "-".join(p for p in cleaned.split("-") if p)[:60] or "adapter"


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The recipe sidecar of an artifact file: ``name.ext`` -> ``name.ext.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def artifact_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files that make up an artifact: the main file and its sidecar, those that exist."""
    return [p for p in (Path(path), sidecar_path(path)) if p.exists()]


def _recipe_json(recipe: dict[str, Any], *, compact: bool = False, ascii_only: bool = False) -> str:
    try:
        if compact:
            return json.dumps(recipe, ensure_ascii=ascii_only, separators=(",", ":"))
        return json.dumps(recipe, ensure_ascii=ascii_only, indent=2) + "\n"
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"the recipe is not JSON-able: {exc}") from exc


def _check_stem(stem: str) -> None:
    if not stem or stem.startswith(".") or any(c in stem for c in "/\\\0") or stem != stem.strip():
        raise InvalidRequest(
            f"invalid artifact file stem {stem!r}: use a plain file name without folders, "
            "not starting with a dot"
        )


def write_artifact(
    output: Output, recipe: dict[str, Any], out_dir: str | os.PathLike[str], stem: str
) -> Path:
    """Write ``output`` with its recipe into ``out_dir`` as ``stem.<ext>``; return the main file.

    Images become PNG, audio WAV/FLAC (``output.extra["format"]``, ``["subtype"]``, default
    ``wav`` + ``PCM_16``) plus a sidecar, text ``.txt`` plus a sidecar. Writes are atomic and an
    existing file is never replaced: the stem gets ``-1``, ``-2``... until the name is free.
    """
    _check_stem(stem)
    if isinstance(output, ImageOutput):
        data, suffix, sidecar = _png_bytes(output, recipe), ".png", False
    elif isinstance(output, AudioOutput):
        fmt, subtype = _audio_format(output)
        data, suffix, sidecar = _audio_bytes(output, recipe, fmt, subtype), f".{fmt}", True
    elif isinstance(output, TextOutput):
        data, suffix, sidecar = output.text.encode("utf-8"), ".txt", True
    else:
        raise InvalidRequest(
            f"cannot save a {type(output).__name__} as an artifact: only image, audio and text "
            "outputs are (adapters are saved by their trainer)"
        )
    sidecar_text = _recipe_json(recipe) if sidecar else ""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in itertools.count():
        name = stem if attempt == 0 else f"{stem}-{attempt}"
        path = folder / f"{name}{suffix}"
        if os.path.lexists(path) or os.path.lexists(sidecar_path(path)):
            continue
        try:
            atomic_write_bytes(path, data, overwrite=False)
        except FileExistsError:  # another writer took the name meanwhile
            continue
        if sidecar:
            atomic_write_text(sidecar_path(path), sidecar_text)
        return path
    raise AssertionError("unreachable")  # pragma: no cover


def _png_bytes(output: ImageOutput, recipe: dict[str, Any]) -> bytes:
    from PIL import Image, PngImagePlugin

    image = output.image
    if not isinstance(image, Image.Image):
        raise InvalidRequest(f"an image output must hold a PIL image, not {type(image).__name__}")
    if image.mode not in _PNG_MODES:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    info = PngImagePlugin.PngInfo()
    # Pillow writes tEXt, or iTXt when the text is not Latin-1 (as A1111 itself does).
    info.add_text("parameters", a1111_parameters(recipe, size=image.size))
    info.add_itxt(PNG_RECIPE_KEY, _recipe_json(recipe, compact=True), zip=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _audio_format(output: AudioOutput) -> tuple[str, str]:
    import soundfile as sf

    fmt = str(output.extra.get("format", "wav")).lower()
    if fmt not in AUDIO_FORMATS:
        raise InvalidRequest(
            f"audio format {fmt!r} is not supported: use one of {', '.join(AUDIO_FORMATS)}"
        )
    subtype = str(output.extra.get("subtype", "PCM_16")).upper()
    if not sf.check_format(fmt.upper(), subtype):
        allowed = ", ".join(sf.available_subtypes(fmt.upper()))
        raise InvalidRequest(
            f"audio subtype {subtype!r} cannot be written as {fmt}: use one of {allowed}"
        )
    return fmt, subtype


def _audio_bytes(output: AudioOutput, recipe: dict[str, Any], fmt: str, subtype: str) -> bytes:
    import numpy as np
    import soundfile as sf

    samples = np.asarray(output.samples)
    if samples.ndim not in (1, 2) or (samples.ndim == 2 and samples.shape[1] == 0):
        raise InvalidRequest(
            f"audio samples must be shaped (frames,) or (frames, channels), not {samples.shape}"
        )
    if np.issubdtype(samples.dtype, np.floating):
        # the plugin normalises; clipping here only guards the integer encodings from wrapping
        samples = np.clip(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    elif samples.dtype not in (np.int16, np.int32):
        raise InvalidRequest(
            f"audio samples must be float (-1..1), int16 or int32, not {samples.dtype}"
        )
    rate = int(output.sample_rate)
    if rate <= 0:
        raise InvalidRequest(f"audio sample rate must be positive, not {output.sample_rate}")
    channels = 1 if samples.ndim == 1 else int(samples.shape[1])
    buffer = io.BytesIO()
    try:
        with sf.SoundFile(
            buffer, "w", samplerate=rate, channels=channels, format=fmt.upper(), subtype=subtype
        ) as fh:
            # ASCII JSON: RIFF INFO text is not reliably UTF-8 for other readers
            fh.comment = _recipe_json(recipe, compact=True, ascii_only=True)
            fh.write(samples)
    except (RuntimeError, ValueError, TypeError) as exc:  # sf.LibsndfileError is a RuntimeError
        raise InvalidRequest(
            f"cannot write {channels}-channel audio at {rate} Hz as {fmt}/{subtype}: {exc}"
        ) from exc
    return buffer.getvalue()


# --- reading ------------------------------------------------------------------------------------


def _parse_recipe(text: str, source: str, *, strict: bool) -> dict[str, Any] | None:
    """The recipe in ``text``; ``None`` (or, if ``strict``, an error) when it is not one."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        if strict:
            raise InvalidRequest(f"{source} holds a damaged studio recipe: {exc}") from exc
        return None
    if isinstance(value, dict) and "generator" in value:
        return value
    if strict:
        raise InvalidRequest(f"{source} does not hold a studio recipe (no 'generator' key)")
    return None


def read_recipe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The recipe of an artifact: from its PNG chunk, its sidecar JSON or its audio metadata.

    ``path`` may also be the sidecar itself. Raises :class:`InvalidRequest` when the file does not
    exist, or has no studio recipe.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidRequest(f"{path} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _parse_recipe(path.read_text(encoding="utf-8"), str(path), strict=True) or {}
    if suffix == ".png":
        embedded = _png_recipe_text(path)
        if embedded is not None:
            return _parse_recipe(embedded, f"{path} ({PNG_RECIPE_KEY} chunk)", strict=True) or {}
    side = sidecar_path(path)
    if side.is_file():
        return _parse_recipe(side.read_text(encoding="utf-8"), str(side), strict=True) or {}
    comment = _audio_comment(path) if suffix in {".wav", ".flac", ".ogg"} else None
    if comment:
        recipe = _parse_recipe(comment, f"{path} (comment metadata)", strict=False)
        if recipe is not None:
            return recipe
    raise InvalidRequest(
        f"{path} has no studio recipe: no '{PNG_RECIPE_KEY}' PNG chunk, no sidecar "
        f"{side.name}, no recipe in its audio metadata"
    )


def _png_recipe_text(path: Path) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            # .text also reads the chunks that follow the image data
            text = getattr(image, "text", {}).get(PNG_RECIPE_KEY)
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidRequest(f"{path} is not a readable PNG image: {exc}") from exc
    return None if text is None else str(text)


def _audio_comment(path: Path) -> str | None:
    if path.suffix.lower() == ".wav":
        # libsndfile reads back only ~2 KB of a WAV comment; read the RIFF chunk ourselves.
        return _wav_comment(path)
    import soundfile as sf

    try:
        with sf.SoundFile(path) as fh:
            return str(fh.comment or "") or None
    except (RuntimeError, OSError):
        return None


def _wav_comment(path: Path) -> str | None:
    """The ICMT (comment) text of a RIFF/WAVE file's LIST/INFO chunk, if it has one."""
    with open(path, "rb") as fh:
        header = fh.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        while True:
            head = fh.read(8)
            if len(head) < 8:
                return None
            chunk_id, size = head[:4], struct.unpack("<I", head[4:])[0]
            padded = size + (size & 1)  # RIFF chunks are word aligned
            if chunk_id != b"LIST":
                fh.seek(padded, os.SEEK_CUR)
                continue
            body = fh.read(padded)
            if body[:4] != b"INFO":
                continue
            pos = 4
            while pos + 8 <= len(body):
                sub_id = body[pos : pos + 4]
                sub_size = struct.unpack("<I", body[pos + 4 : pos + 8])[0]
                if sub_id == b"ICMT":
                    raw = body[pos + 8 : pos + 8 + sub_size].split(b"\0", 1)[0]
                    return raw.decode("utf-8", errors="replace")
                pos += 8 + sub_size + (sub_size & 1)
