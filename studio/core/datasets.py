"""Datasets: the artist's files checked before a training, recorded as a hashed manifest, split.

One code path for every trainer, ours and third-party: a trainer's ``ingest`` calls
:func:`ingest_dataset` with the kinds of files it takes, may add checks of its own
(:meth:`~studio.core.training.IngestReport.skip` a file with the reason, add notes), and returns
the report. The studio shows that report before the run starts and records the dataset in its
library (:class:`~studio.core.records.DatasetRecord`).

* **Ingest** walks the folder (sub-folders too; hidden files and folders, and the junk desktops
  leave, are left out) and checks every file for its kind: **text** (``.txt``, ``.md``, ``.jsonl``:
  UTF-8, not empty, each ``.jsonl`` line a JSON object), **image** (Pillow opens and fully decodes
  it; no CMYK, no 16-bit, no transparency, not too small, the extension matches the content),
  **audio** (soundfile decodes all of it; duration within bounds; its sample rate is reported).
  A file it cannot use (empty, too large, truncated, of the wrong extension, undecodable, of an
  unknown type) is skipped with a reason the artist can act on, never with a crash.
* **The manifest** lists each usable file's relative path, size and sha256, one line each
  (``path<TAB>size<TAB>sha256``, sorted); its own hash is the sha256 of those sorted lines. A run
  records it, so a training is reproducible and a dataset changed since is noticed on resume
  (:func:`compare_manifests` says what changed).
* **The validation split** (:func:`split_validation`) holds out files chosen from the seed and
  their relative paths alone: the same for the same seed and manifest on every machine, whatever
  order the file system lists them in.

Pillow and soundfile are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from studio.core.errors import InvalidRequest, one_line
from studio.core.hashing import sha256_file
from studio.core.units import human_size

if TYPE_CHECKING:
    from studio.core.training import IngestReport

__all__ = [
    "AUDIO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "KINDS",
    "TEXT_EXTENSIONS",
    "DatasetFile",
    "DatasetKind",
    "DatasetManifest",
    "ManifestChanges",
    "ManifestEntry",
    "compare_manifests",
    "ingest_dataset",
    "split_validation",
]

DatasetKind = Literal["text", "image", "audio"]
#: The kinds of files the shared ingest knows, in the order they are listed.
KINDS: tuple[DatasetKind, ...] = ("text", "image", "audio")

TEXT_EXTENSIONS = (".txt", ".md", ".jsonl")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")
_EXTENSIONS: dict[DatasetKind, tuple[str, ...]] = {
    "text": TEXT_EXTENSIONS,
    "image": IMAGE_EXTENSIONS,
    "audio": AUDIO_EXTENSIONS,
}

#: Default limits; a trainer passes its own to :func:`ingest_dataset`.
MAX_FILE_BYTES = 500 * 10**6
MIN_IMAGE_SIDE = 64
MAX_IMAGE_PIXELS = 8192 * 8192
MIN_AUDIO_SECONDS = 0.5
MAX_AUDIO_SECONDS = 600.0

#: Files and folders desktops leave behind; left out like hidden ones.
_JUNK = frozenset(
    {"Thumbs.db", "desktop.ini", "__MACOSX", "$RECYCLE.BIN", "System Volume Information"}
)

#: The image formats Pillow may open (no other decoder runs, e.g. none that calls Ghostscript),
#: and the extensions each may have.
_IMAGE_FORMATS: dict[str, tuple[str, ...]] = {
    "PNG": (".png",),
    "JPEG": (".jpg", ".jpeg"),
    "MPO": (".jpg", ".jpeg"),  # what many phone cameras write: a JPEG with a second picture
    "WEBP": (".webp",),
    "BMP": (".bmp",),
    "GIF": (".gif",),
    "TIFF": (".tif", ".tiff"),
}
#: The decoders Pillow may run (an MPO file is opened by the JPEG one).
_OPENERS = [fmt for fmt in _IMAGE_FORMATS if fmt != "MPO"]
#: Colour modes a trainer converts to RGB without loss (alpha is checked separately).
_PLAIN_MODES = frozenset({"RGB", "L", "P", "1", "RGBA", "LA", "PA"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
#: soundfile's formats and the extensions each may have.
_AUDIO_FORMATS: dict[str, tuple[str, ...]] = {
    "WAV": (".wav",),
    "WAVEX": (".wav",),
    "RF64": (".wav",),
    "FLAC": (".flac",),
    "OGG": (".ogg", ".oga", ".opus"),
    "MP3": (".mp3",),
    "AIFF": (".aif", ".aiff"),
}
_AUDIO_BLOCK = 1 << 16

#: What a file's first bytes say it is: (offset, magic, description, extension, kind).
_MAGIC: tuple[tuple[int, bytes, str, str | None, DatasetKind | None], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image", ".png", "image"),
    (0, b"\xff\xd8\xff", "a JPEG image", ".jpg", "image"),
    (0, b"GIF87a", "a GIF image", ".gif", "image"),
    (0, b"GIF89a", "a GIF image", ".gif", "image"),
    (8, b"WEBP", "a WebP image", ".webp", "image"),
    (0, b"II*\x00", "a TIFF image", ".tif", "image"),
    (0, b"MM\x00*", "a TIFF image", ".tif", "image"),
    (8, b"WAVE", "WAV audio", ".wav", "audio"),
    (0, b"fLaC", "FLAC audio", ".flac", "audio"),
    (0, b"OggS", "Ogg audio", ".ogg", "audio"),
    (0, b"ID3", "MP3 audio", ".mp3", "audio"),
    (8, b"AIFF", "AIFF audio", ".aiff", "audio"),
    (0, b"%PDF", "a PDF document", None, None),
    (0, b"PK\x03\x04", "a zip archive (or a document made of one, such as .docx)", None, None),
)


# --- the manifest -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestEntry:
    """One usable file of a dataset: its path relative to the folder (POSIX), size and sha256."""

    path: str
    size: int
    sha256: str

    def line(self) -> str:
        """The entry as a manifest line: ``path<TAB>size<TAB>sha256``."""
        return f"{self.path}\t{self.size}\t{self.sha256}"

    @classmethod
    def parse(cls, line: str) -> ManifestEntry:
        """An entry from its line (a path may hold tabs: size and hash are the last fields)."""
        try:
            path, size, digest = line.rsplit("\t", 2)
            return cls(path, int(size), digest)
        except ValueError:
            raise ValueError(f"not a manifest line (path, size, sha256): {line[:120]!r}") from None


@dataclass(frozen=True)
class DatasetManifest:
    """The usable files of a dataset, as a run records them; :attr:`sha256` identifies them.

    Entries are kept sorted by their lines, so two manifests of the same files are equal whatever
    order they were listed in. :meth:`text` is the manifest as a file (one line per entry) and
    ``sha256`` the hash of that text: ``LC_ALL=C sort manifest.txt | sha256sum`` gives it too.
    """

    entries: tuple[ManifestEntry, ...] = ()

    def __post_init__(self) -> None:
        entries = tuple(sorted(self.entries, key=ManifestEntry.line))
        paths = Counter(e.path for e in entries)
        twice = sorted(p for p, n in paths.items() if n > 1)
        if twice:
            raise ValueError(f"a manifest lists each file once; twice: {', '.join(twice[:5])}")
        bad = [e.path for e in entries if "\n" in e.path or "\r" in e.path or not e.path]
        if bad:
            raise ValueError(f"a manifest path is not empty and has no line break: {bad[0]!r}")
        object.__setattr__(self, "entries", entries)

    @classmethod
    def parse(cls, text: str) -> DatasetManifest:
        """A manifest from its :meth:`text` (blank lines ignored)."""
        return cls(tuple(ManifestEntry.parse(line) for line in text.splitlines() if line))

    def lines(self) -> list[str]:
        """One line per file, sorted."""
        return [entry.line() for entry in self.entries]

    def text(self) -> str:
        """The manifest as text: its sorted lines, each ending with a newline."""
        return "".join(line + "\n" for line in self.lines())

    @cached_property
    def sha256(self) -> str:
        """The manifest's own hash: the sha256 of its sorted lines (:meth:`text`)."""
        return hashlib.sha256(self.text().encode("utf-8")).hexdigest()

    @property
    def files(self) -> int:
        """How many files it lists."""
        return len(self.entries)

    @property
    def bytes(self) -> int:
        """The files' total size in bytes."""
        return sum(entry.size for entry in self.entries)

    def by_path(self) -> dict[str, ManifestEntry]:
        """Its entries by relative path."""
        return {entry.path: entry for entry in self.entries}


@dataclass(frozen=True)
class ManifestChanges:
    """What changed from one manifest to another: relative paths, each sorted.

    ``modified``: in both, with other content (sha256) or size. A renamed file is one removed
    and one added. Truthy when anything changed.
    """

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)

    def describe(self, limit: int = 5) -> str:
        """In words, naming up to ``limit`` files of each change: ``"1 added (c.txt);
        1 modified (a.txt)"``, or ``"no change"``."""
        parts = []
        for label, paths in (
            ("added", self.added),
            ("removed", self.removed),
            ("modified", self.modified),
        ):
            if paths:
                shown = ", ".join(paths[:limit]) + (", …" if len(paths) > limit else "")
                parts.append(f"{len(paths)} {label} ({shown})")
        return "; ".join(parts) or "no change"


def compare_manifests(old: DatasetManifest, new: DatasetManifest) -> ManifestChanges:
    """What changed from ``old`` to ``new``: files added, removed and modified."""
    before, after = old.by_path(), new.by_path()
    return ManifestChanges(
        added=tuple(sorted(after.keys() - before.keys())),
        removed=tuple(sorted(before.keys() - after.keys())),
        modified=tuple(
            sorted(
                path
                for path in before.keys() & after.keys()
                if (before[path].sha256, before[path].size)
                != (after[path].sha256, after[path].size)
            )
        ),
    )


# --- what the ingest learnt of a file ---------------------------------------------------------


@dataclass(frozen=True)
class DatasetFile:
    """A usable file as the shared ingest checked it.

    ``path`` is relative to the dataset folder (POSIX); ``format`` the content's format
    (``"text"``, ``"markdown"``, ``"jsonl"``; Pillow's ``"PNG"``, ``"JPEG"`` …; soundfile's
    ``"WAV"``, ``"FLAC"`` …). Images have ``width``, ``height`` and ``mode`` (Pillow's colour mode:
    RGB, L, P, 1, or one with a fully opaque alpha channel), audio ``duration`` (seconds),
    ``sample_rate`` and ``channels``, ``.jsonl`` files ``records`` (JSON objects).
    """

    path: str
    kind: DatasetKind
    size: int
    sha256: str
    format: str
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    records: int | None = None

    def entry(self) -> ManifestEntry:
        """Its manifest entry."""
        return ManifestEntry(self.path, self.size, self.sha256)


class _Skip(Exception):
    """A file cannot be used; the message says why (and how to fix it when one can)."""


# --- ingest -----------------------------------------------------------------------------------


def ingest_dataset(
    folder: Path | str,
    *,
    kinds: Iterable[DatasetKind],
    extensions: Iterable[str] | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    min_image_side: int = MIN_IMAGE_SIDE,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    min_audio_seconds: float = MIN_AUDIO_SECONDS,
    max_audio_seconds: float = MAX_AUDIO_SECONDS,
    hash_file: Callable[[Path], str] | None = None,
) -> IngestReport:
    """Check every file of the dataset ``folder`` for a trainer that takes ``kinds`` of files.

    The one way a trainer's ``ingest`` reads a dataset. Sub-folders are walked; hidden files and
    folders (a name starting with ``.``) and desktop junk (``Thumbs.db``, ``__MACOSX`` …) are left
    out; links to files are followed, links to folders are not. Every other file is usable or
    skipped with a reason (``report.skipped``, keyed by its path relative to ``folder``); nothing
    in a file makes this raise.

    :param kinds: ``"text"`` (.txt, .md, .jsonl), ``"image"`` (.png, .jpg, .jpeg, .webp, .bmp,
        .gif, .tif, .tiff) and/or ``"audio"`` (.wav, .flac, .ogg, .oga, .opus, .mp3, .aif, .aiff).
    :param extensions: only these of the kinds' extensions (e.g. ``(".txt", ".md")``).
    :param max_file_bytes: larger files are skipped.
    :param min_image_side: images whose width or height is smaller are skipped.
    :param max_image_pixels: images of more pixels are skipped (before they are decoded).
    :param min_audio_seconds: shorter sounds are skipped.
    :param max_audio_seconds: longer sounds are skipped.
    :param hash_file: the sha256 of a file (default :func:`studio.sha256_file`; in ``run``,
        ``ctx.hash_file`` caches it by path, size and modification time).
    :returns: an :class:`~studio.core.training.IngestReport` with ``root`` (the folder, absolute),
        ``usable`` (sorted by relative path), ``skipped``, ``notes`` (counts, sizes, sample rates),
        ``files`` (a :class:`DatasetFile` per usable file) and the :attr:`manifest`.
    :raises InvalidRequest: ``folder`` is not a folder.
    :raises ValueError: an unknown kind or extension, or a limit out of range (a plugin's bug).
    """
    from studio.core.training import IngestReport

    taken = _taken(kinds, extensions)
    limits = _Limits(
        max_file_bytes, min_image_side, max_image_pixels, min_audio_seconds, max_audio_seconds
    )
    root = Path(os.path.abspath(Path(folder).expanduser()))
    if not root.is_dir():
        raise InvalidRequest(f"dataset {root} is not a folder: give the folder holding your files")
    hasher = hash_file or sha256_file
    report = IngestReport(root=root)
    left_out = 0
    found: list[tuple[str, Path]] = []
    for relative, path, problem in _walk(root):
        if problem == "hidden":
            left_out += 1
        elif problem is not None:
            report.skipped[relative] = problem
        else:
            found.append((relative, path))
    for relative, path in sorted(found):
        try:
            checked = _check(path, relative, taken, limits, hasher)
        except _Skip as skip:
            report.skipped[relative] = str(skip)
        except Exception as exc:  # a checker's own failure: still a reason, never a crash
            report.skipped[relative] = f"cannot be checked ({one_line(exc)})"
        else:
            report.usable.append(path)
            report.files[relative] = checked
    report.skipped = dict(sorted(report.skipped.items()))
    summary = _notes(report, left_out, taken)
    report.notes.extend(summary)
    report._summary = (summary, left_out, dict(taken))
    return report


@dataclass(frozen=True)
class _Limits:
    max_file_bytes: int
    min_image_side: int
    max_image_pixels: int
    min_audio_seconds: float
    max_audio_seconds: float

    def __post_init__(self) -> None:
        if self.max_file_bytes < 1:
            raise ValueError(f"max_file_bytes must be at least 1, got {self.max_file_bytes}")
        if self.min_image_side < 1:
            raise ValueError(f"min_image_side must be at least 1, got {self.min_image_side}")
        if self.max_image_pixels < self.min_image_side**2:
            raise ValueError(
                f"max_image_pixels ({self.max_image_pixels}) is below min_image_side squared"
            )
        low, high = self.min_audio_seconds, self.max_audio_seconds
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
            raise ValueError(
                f"audio bounds must be finite with 0 <= min_audio_seconds <= max_audio_seconds, "
                f"got {low} and {high}"
            )


def _taken(
    kinds: Iterable[DatasetKind], extensions: Iterable[str] | None
) -> dict[str, DatasetKind]:
    """Extension -> kind, for the files the trainer takes."""
    chosen: list[str] = [kinds] if isinstance(kinds, str) else list(kinds)
    unknown = [k for k in chosen if k not in _EXTENSIONS]
    if unknown or not chosen:
        raise ValueError(
            f"kinds must name some of {', '.join(KINDS)}; "
            f"got {', '.join(map(repr, chosen)) or 'none'}"
        )
    taken = {ext: kind for kind in KINDS if kind in chosen for ext in _EXTENSIONS[kind]}
    if extensions is None:
        return taken
    if isinstance(extensions, str):
        extensions = (extensions,)
    wanted = [e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions]
    other = [e for e in wanted if e not in taken]
    if other or not wanted:
        raise ValueError(
            f"extensions must be some of {', '.join(taken)} (the kinds' extensions); "
            f"got {', '.join(other) or 'none'}"
        )
    return {ext: kind for ext, kind in taken.items() if ext in wanted}


def _walk(root: Path) -> Iterator[tuple[str, Path, str | None]]:
    """``(relative path, path, problem)`` for every entry worth a word: files (problem ``None``),
    hidden ones (``"hidden"``), and what cannot be walked (with the reason)."""
    unreadable: list[OSError] = []
    for top, dirs, names in os.walk(root, onerror=unreadable.append, followlinks=False):
        here = Path(top)
        keep = []
        for name in sorted(dirs):
            relative = (here / name).relative_to(root).as_posix()
            if _hidden(name):
                yield relative, here / name, "hidden"
            elif (here / name).is_symlink():
                yield (
                    relative + "/",
                    here / name,
                    "a link to a folder: links to folders are not followed (copy the files in)",
                )
            else:
                keep.append(name)
        dirs[:] = keep
        for name in names:
            path = here / name
            yield path.relative_to(root).as_posix(), path, "hidden" if _hidden(name) else None
    for error in unreadable:
        if error.filename is not None and Path(error.filename) != root:
            relative = Path(error.filename).relative_to(root).as_posix() + "/"
            yield relative, Path(error.filename), f"folder cannot be read ({_os_reason(error)})"


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in _JUNK


def _os_reason(exc: OSError) -> str:
    return exc.strerror or one_line(exc)


def _check(
    path: Path,
    relative: str,
    taken: dict[str, DatasetKind],
    limits: _Limits,
    hasher: Callable[[Path], str],
) -> DatasetFile:
    """The file's facts if it is usable, else :class:`_Skip` with the reason."""
    if "\n" in relative or "\r" in relative:
        raise _Skip("its name holds a line break: rename it")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise _Skip(
            "a broken link (what it points to is gone)" if path.is_symlink() else "gone"
        ) from None
    except OSError as exc:
        raise _Skip(f"cannot be read ({_os_reason(exc)})") from None
    if not stat.S_ISREG(info.st_mode):
        raise _Skip("not a regular file (a device, pipe or socket)")
    extension = path.suffix.lower()
    kind = taken.get(extension)
    if kind is None:
        raise _Skip(_not_taken(extension, taken))
    if info.st_size == 0:
        raise _Skip("empty file (0 bytes)")
    if info.st_size > limits.max_file_bytes:
        raise _Skip(
            f"too large ({human_size(info.st_size)}; at most {human_size(limits.max_file_bytes)}): "
            "split it into smaller files"
        )
    try:
        if kind == "text":
            facts = _check_text(path, extension, taken)
        elif kind == "image":
            facts = _check_image(path, extension, limits, taken)
        else:
            facts = _check_audio(path, extension, limits, taken)
        digest = hasher(path)
    except OSError as exc:
        raise _Skip(f"cannot be read ({_os_reason(exc)})") from None
    return DatasetFile(path=relative, kind=kind, size=info.st_size, sha256=digest, **facts)


def _not_taken(extension: str, taken: dict[str, DatasetKind]) -> str:
    accepted = _accepted(taken)
    kind = next((k for k, exts in _EXTENSIONS.items() if extension in exts), None)
    if kind is not None and kind in taken.values():
        return f"{extension} files are not used by this trainer (it takes {accepted})"
    if kind is not None:
        what = {"text": "a text file", "image": "an image", "audio": "a sound file"}[kind]
        return f"{what}: this trainer takes {accepted}"
    if not extension:
        return f"no file extension, so its type is unknown: this trainer takes {accepted}"
    return f"unknown file type ({extension}): this trainer takes {accepted}"


def _accepted(taken: dict[str, DatasetKind]) -> str:
    """The files a trainer takes, by kind: ``text (.txt, .md) and images (.png, .jpg)``."""
    names = {"text": "text", "image": "images", "audio": "sound"}
    groups = [
        f"{names[kind]} ({', '.join(e for e, k in taken.items() if k == kind)})"
        for kind in KINDS
        if kind in taken.values()
    ]
    return " and ".join([", ".join(groups[:-1]), groups[-1]] if len(groups) > 1 else groups)


def _sniff(path: Path) -> tuple[str, str | None, DatasetKind | None] | None:
    """What the first bytes of a file say it is: (description, extension, kind), if known."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    for offset, magic, what, extension, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if offset == 8 and not head.startswith((b"RIFF", b"FORM")):
                continue
            return what, extension, kind
    return None


def _wrong_content(
    path: Path, extension: str, expected: str, taken: dict[str, DatasetKind]
) -> str | None:
    """A reason when the content is some other known format than the extension says."""
    sniffed = _sniff(path)
    if sniffed is None:
        return None
    what, right, kind = sniffed
    if right is not None and (
        right == extension or (kind == "image" and right in _same_image(extension))
    ):
        return None
    reason = (
        f"wrong extension: the content is {what}, not {expected} (the name ends in {extension})"
    )
    if right is not None and right in taken:
        reason += f": rename it to {right}"
    return reason


def _same_image(extension: str) -> tuple[str, ...]:
    return next((exts for exts in _IMAGE_FORMATS.values() if extension in exts), ())


# --- text ---------------------------------------------------------------------------------------


def _check_text(path: Path, extension: str, taken: dict[str, DatasetKind]) -> dict[str, Any]:
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _Skip("UTF-16 text: save it as UTF-8")
    expected = "text" if extension != ".jsonl" else "JSON lines"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Skip(
            _wrong_content(path, extension, expected, taken)
            or f"not UTF-8 text (an undecodable byte at offset {exc.start}): save it as UTF-8"
        ) from None
    if "\x00" in text:
        raise _Skip(
            _wrong_content(path, extension, expected, taken)
            or "holds NUL bytes: a binary file, not text"
        )
    if not text.strip():
        raise _Skip("holds only white space")
    if extension != ".jsonl":
        return {"format": "markdown" if extension == ".md" else "text"}
    import json

    records = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise _Skip(f"line {number} is not JSON ({exc.args[0] if exc.args else exc})") from None
        if not isinstance(value, dict):
            raise _Skip(
                f"line {number} is JSON but not an object ({{...}}): each line of a .jsonl file "
                "is one example as a JSON object"
            )
        records += 1
    return {"format": "jsonl", "records": records}


# --- images -------------------------------------------------------------------------------------


def _check_image(
    path: Path, extension: str, limits: _Limits, taken: dict[str, DatasetKind]
) -> dict[str, Any]:
    from PIL import Image

    try:
        image = Image.open(path, formats=_OPENERS)
    except Image.DecompressionBombError:
        raise _Skip(f"too many pixels (at most {limits.max_image_pixels}): scale it down") from None
    except Exception as exc:
        raise _Skip(
            _wrong_content(path, extension, "an image", taken)
            or f"cannot be read as an image ({one_line(exc)})"
        ) from None
    with image:
        facts = _image_header(image, extension, limits)
        try:
            image.load()  # decodes every pixel: a truncated or damaged file fails here
        except Exception as exc:
            raise _Skip(f"truncated or damaged: it cannot be decoded ({one_line(exc)})") from None
        if _transparent(image):
            raise _Skip(
                "has transparent pixels (an alpha channel): flatten it onto a background and "
                "save it without alpha, e.g. `magick in.png -background white -alpha remove "
                "-alpha off out.png`, or export it as JPEG"
            )
    return facts


def _image_header(image: Any, extension: str, limits: _Limits) -> dict[str, Any]:
    """Checks that need no pixels (format, size, frames, bit depth, colour mode)."""
    fmt = str(image.format)
    if extension not in _IMAGE_FORMATS.get(fmt, ()):
        right = _IMAGE_FORMATS.get(fmt, ("?",))[0]
        raise _Skip(
            f"wrong extension: the content is a {fmt} image (the name ends in {extension}): "
            f"rename it to {right}"
        )
    width, height = image.size
    if width * height > limits.max_image_pixels:
        raise _Skip(
            f"too many pixels ({width}x{height}; at most {limits.max_image_pixels} pixels): "
            "scale it down"
        )
    if min(width, height) < limits.min_image_side:
        raise _Skip(
            f"too small ({width}x{height}; each side at least {limits.min_image_side} pixels)"
        )
    frames = int(getattr(image, "n_frames", 1) or 1)
    if frames > 1 and fmt in ("GIF", "WEBP", "PNG"):
        raise _Skip(f"animated ({frames} frames): save the frame you want as a still picture")
    mode = str(image.mode)
    if _deep(image):
        raise _Skip(
            f"16 bits per channel ({mode}): convert it to 8 bits per channel, e.g. "
            "`magick in.png -depth 8 out.png` or Image > Mode > 8 Bits/Channel"
        )
    if mode == "CMYK":
        raise _Skip(
            "CMYK colours (a print file): convert it to RGB, e.g. `magick in.jpg -colorspace "
            "sRGB out.jpg` or Image > Mode > RGB Color"
        )
    if mode not in _PLAIN_MODES:
        raise _Skip(f"unusual colour mode {mode}: convert it to RGB")
    return {"format": fmt, "width": width, "height": height, "mode": mode}


def _deep(image: Any) -> bool:
    """Whether the picture has more than 8 bits per channel (read from the header)."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        return True
    for tile in getattr(image, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        raw = (
            args if isinstance(args, str) else (args[0] if isinstance(args, tuple) and args else "")
        )
        if isinstance(raw, str) and (";16" in raw or ";32" in raw):
            return True
    return False


def _transparent(image: Any) -> bool:
    """Whether any pixel is (partly) transparent; an alpha channel that is opaque everywhere
    is not (a trainer converts the picture to RGB without loss)."""
    if image.mode not in _ALPHA_MODES and "transparency" not in image.info:
        return False
    alpha = image.convert("RGBA").getchannel("A")
    low, _ = alpha.getextrema()
    return bool(low < 255)


# --- audio --------------------------------------------------------------------------------------


def _check_audio(
    path: Path, extension: str, limits: _Limits, taken: dict[str, DatasetKind]
) -> dict[str, Any]:
    import numpy as np
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise _Skip(
            _wrong_content(path, extension, "sound", taken)
            or f"cannot be read as sound ({one_line(exc)}): convert it to WAV or FLAC"
        ) from None
    fmt = str(info.format)
    allowed = _AUDIO_FORMATS.get(fmt)
    if allowed is None:
        raise _Skip(f"a {fmt} sound file, which is not used: convert it to WAV or FLAC")
    if extension not in allowed:
        raise _Skip(
            f"wrong extension: the content is {fmt} sound (the name ends in {extension}): "
            f"rename it to {allowed[0]}"
        )
    if fmt in ("WAV", "WAVEX"):
        _check_wav_length(path)
    frames = 0
    finite = True
    try:
        with sf.SoundFile(str(path)) as sound:
            rate, channels = int(sound.samplerate), int(sound.channels)
            while True:
                block = sound.read(_AUDIO_BLOCK, dtype="float32")
                if not len(block):
                    break
                frames += len(block)
                finite = finite and bool(np.isfinite(block).all())
    except Exception as exc:
        raise _Skip(
            f"truncated or damaged: decoding stopped after "
            f"{_duration(frames / max(info.samplerate, 1))} ({one_line(exc)})"
        ) from None
    if frames == 0 or rate <= 0:
        raise _Skip("holds no sound (0 samples)")
    if not finite:
        raise _Skip("holds samples that are not numbers (NaN or infinity): export it again")
    seconds = frames / rate
    if seconds < limits.min_audio_seconds:
        raise _Skip(
            f"too short ({_duration(seconds)}; at least {_duration(limits.min_audio_seconds)})"
        )
    if seconds > limits.max_audio_seconds:
        raise _Skip(
            f"too long ({_duration(seconds)}; at most {_duration(limits.max_audio_seconds)}): "
            "cut it into shorter clips"
        )
    return {"format": fmt, "duration": seconds, "sample_rate": rate, "channels": channels}


def _check_wav_length(path: Path) -> None:
    """A WAV file shorter than its header says (libsndfile reads what is there, silently)."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= size:
            fh.seek(offset)
            chunk = fh.read(8)
            if len(chunk) < 8:
                return
            name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"data":
                # 0 and 0xFFFFFFFF: written by a stream that could not go back to fill it in
                if length not in (0, 0xFFFFFFFF) and offset + 8 + length > size:
                    raise _Skip(
                        f"truncated: the header promises {human_size(length)} of sound, the "
                        f"file holds {human_size(max(0, size - offset - 8))}"
                    )
                return
            offset += 8 + length + (length & 1)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + " s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


# --- notes --------------------------------------------------------------------------------------


def _notes(report: IngestReport, left_out: int, taken: dict[str, DatasetKind]) -> list[str]:
    files = list(report.files.values())
    notes = []
    if files:
        kinds = Counter(f.kind for f in files)
        split = ", ".join(f"{kinds[k]} {k}" for k in KINDS if kinds[k])
        total = human_size(sum(f.size for f in files))
        notes.append(f"{_count(len(files), 'usable file')} ({split}), {total}")
    else:
        notes.append(f"no usable file: this trainer takes {_accepted(taken)}")
    if report.skipped:
        notes.append(f"{_count(len(report.skipped), 'file')} skipped (see the reasons)")
    if left_out:
        notes.append(
            f"{_count(left_out, 'hidden file or folder', 'hidden files and folders')} left out"
        )
    opaque = sum(1 for f in files if f.mode in _ALPHA_MODES)
    if opaque:
        notes.append(
            f"{_count(opaque, 'picture')} with an alpha channel that is opaque everywhere: "
            "it is dropped"
        )
    rates = Counter(f.sample_rate for f in files if f.sample_rate)
    if rates:
        shown = ", ".join(
            f"{rate} Hz ({_count(n, 'file')})" for rate, n in sorted(rates.items(), reverse=True)
        )
        notes.append(f"sample rate{'s' if len(rates) > 1 else ''}: {shown}")
    return notes


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


# --- the report's manifest and its own checks (IngestReport delegates here) ------------------


def report_manifest(report: IngestReport) -> DatasetManifest:
    """The manifest of ``report.usable`` (see :attr:`IngestReport.manifest`)."""
    root = _root_of(report)
    cache: dict[str, ManifestEntry] = report._hashed
    entries = []
    for path in report.usable:
        relative = _relative(root, path)
        known = report.files.get(relative)
        if known is not None:
            entries.append(known.entry())
            continue
        entry = cache.get(relative)
        full = root / relative
        if entry is None or entry.size != full.stat().st_size:
            entry = ManifestEntry(relative, full.stat().st_size, sha256_file(full))
            cache[relative] = entry
        entries.append(entry)
    return DatasetManifest(tuple(entries))


def report_skip(report: IngestReport, path: Path | str, reason: str) -> None:
    """Move a usable file of ``report`` to ``skipped`` (see :meth:`IngestReport.skip`)."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("a skipped file needs a reason the user can act on")
    root = _root_of(report)
    relative = _relative(root, path)
    for index, usable in enumerate(report.usable):
        if _relative(root, usable) == relative:
            del report.usable[index]
            report.files.pop(relative, None)
            report._hashed.pop(relative, None)
            report.skipped[relative] = reason
            _renew_summary(report)
            return
    raise ValueError(f"{relative} is not a usable file of this report")


def _renew_summary(report: IngestReport) -> None:
    """Write the summary notes of ``ingest_dataset`` anew from the report as it is now, where
    they were (the trainer's own notes stay as they are)."""
    if report._summary is None:  # a report made by hand: no summary to keep true
        return
    old, left_out, taken = report._summary
    new = _notes(report, left_out, taken)
    notes = report.notes
    start = next(
        (i for i in range(len(notes) - len(old) + 1) if notes[i : i + len(old)] == old), None
    )
    if start is not None:
        notes[start : start + len(old)] = new
    else:  # the trainer rearranged them: drop what is left of the old ones, the new go first
        notes[:] = [*new, *(n for n in notes if n not in old)]
    report._summary = (new, left_out, taken)


def _root_of(report: IngestReport) -> Path:
    if report.root is None:
        raise ValueError(
            "this IngestReport has no root folder: make it with studio.ingest_dataset (or set "
            "report.root to the dataset folder)"
        )
    return Path(os.path.abspath(report.root))


def _relative(root: Path, path: Path | str) -> str:
    """``path`` relative to ``root`` as POSIX text (links are not resolved: a file linked in
    from elsewhere keeps its place in the dataset)."""
    given = Path(path)
    full = Path(os.path.abspath(given if given.is_absolute() else root / given))
    try:
        return full.relative_to(root).as_posix()
    except ValueError:
        raise ValueError(f"{path} is not inside the dataset folder {root}") from None


# --- the validation split -----------------------------------------------------------------------

T = TypeVar("T")


def split_validation(
    files: Iterable[T],
    *,
    fraction: float | None = None,
    count: int | None = None,
    seed: int,
    root: Path | str | None = None,
) -> tuple[list[T], list[T]]:
    """Split ``files`` into ``(train, validation)``, holding out ``fraction`` or ``count`` of them.

    Which files are held out depends on the seed and each file's key alone: a
    :class:`ManifestEntry`'s or :class:`DatasetFile`'s ``path``, a path's relative to ``root``
    when given (else the path as given): the same split for the same seed and manifest on every
    machine, whatever order the files come in; adding a file moves few others. Each file is
    ranked by ``sha256(seed, key)``, the lowest held out; both lists are returned sorted by key.

    ``fraction`` (``0 <= fraction < 1``) holds out ``round(fraction * n)`` files, at least one
    when ``fraction > 0`` and there are two files or more, never all; with one file, none (a
    trainer may then hold out part of it). ``count`` holds out exactly that many and must leave
    at least one to train on. ``0`` holds out nothing. Give one of the two.

    :raises InvalidRequest: neither or both given; a fraction outside [0, 1); a count below 0 or
        leaving no file to train on; a file given twice.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidRequest(f"the validation split's seed must be an integer, got {seed!r}")
    if (fraction is None) == (count is None):
        raise InvalidRequest(
            "give the validation split a fraction or a count of files (one of them)"
        )
    base = Path(os.path.abspath(Path(root).expanduser())) if root is not None else None
    keyed = sorted(((_split_key(item, base), item) for item in files), key=lambda pair: pair[0])
    keys = [key for key, _ in keyed]
    twice = sorted({k for k in keys if keys.count(k) > 1}) if len(set(keys)) != len(keys) else []
    if twice:
        raise InvalidRequest(f"the same file is given twice to the validation split: {twice[0]}")
    n = len(keyed)
    held = _held_count(n, fraction, count)
    ranked = sorted(range(n), key=lambda i: (_rank(seed, keys[i]), keys[i]))
    out = set(ranked[:held])
    train = [item for i, (_, item) in enumerate(keyed) if i not in out]
    validation = [item for i, (_, item) in enumerate(keyed) if i in out]
    return train, validation


def _held_count(n: int, fraction: float | None, count: int | None) -> int:
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidRequest(f"the validation count must be a whole number >= 0, got {count!r}")
        if count and count >= n:
            raise InvalidRequest(
                f"a validation count of {count} leaves no file to train on: the dataset has "
                f"{_count(n, 'usable file')}"
                + (f"; hold out at most {n - 1}" if n >= 2 else "; add files, or hold out none")
            )
        return count
    assert fraction is not None
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise InvalidRequest(f"the validation fraction must be a number, got {fraction!r}")
    if not (math.isfinite(fraction) and 0 <= fraction < 1):
        raise InvalidRequest(
            f"the validation fraction must be at least 0 and below 1, got {fraction}"
        )
    if fraction == 0 or n < 2:
        return 0
    return min(max(1, round(fraction * n)), n - 1)


def _split_key(item: object, root: Path | None) -> str:
    if isinstance(item, ManifestEntry | DatasetFile):
        return item.path
    if isinstance(item, str | PurePath | os.PathLike):
        path = Path(os.fspath(item))
        if root is None:
            return path.as_posix()
        return _relative(root, path)
    raise InvalidRequest(
        f"the validation split takes paths, ManifestEntry or DatasetFile items, not "
        f"{type(item).__name__}"
    )


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()
