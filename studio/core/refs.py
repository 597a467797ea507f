"""Model references: a Hugging Face hub id, a local folder, or a single ``.safetensors`` file.

:func:`resolve` turns what the user wrote into a :class:`ResolvedModel` (where the weights are on
disk, and which hub commit), under the studio's safety rule: safetensors only, unless pickle-based
weights were allowed for that one model (settings ``allow_pickle``).

This module owns what a reference means and what is safe to load: parsing (:func:`parse_hub_id`,
:func:`is_local_path`), resolving, the weights files a model loads (:func:`weights_files`, the
same plan for a folder, a cached snapshot and a download), the pickle refusal, and the hash of the
weights (:func:`weights_sha256`). Talking to the hub and its cache is :mod:`studio.core.hub`'s job.

Hub ids go through the standard hub cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, read at each
call), so a model downloaded for another tool is used in place, never copied. A cached model
resolves offline; a missing one is downloaded (resumable, with progress) when allowed. A hub id may
name a revision: ``org/name@branch-tag-or-commit``. A download can be cancelled (``cancel``).

Nothing here imports torch; ``huggingface_hub`` is imported only when a hub id is resolved.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from studio.core import hub
from studio.core.errors import (
    Cancelled,
    InvalidRequest,
    ModelNotFound,
    StudioError,
    UnsafeWeightsError,
)
from studio.core.hashing import sha256_file
from studio.core.hub import ByteProgress, hub_cache_dir, hub_offline
from studio.core.layout import Layout, detect_layout

SAFE_SUFFIXES = (".safetensors",)
#: Weights serialised with Python's pickle: loading them can run arbitrary code.
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
#: Weights of other frameworks the studio never loads; not downloaded.
FOREIGN_SUFFIXES = (".h5", ".msgpack", ".onnx", ".onnx_data", ".ot", ".tflite", ".gguf", ".mlmodel")

#: Top-level folders of a diffusers pipeline that the studio never loads: the image plugin loads
#: pipelines with the NSFW safety checker off (``safety_checker=None``, ``feature_extractor=None``;
#: the feature extractor only feeds the checker), so they are neither downloaded nor checked.
#: Older Stable Diffusion repos often have a pickle-only ``safety_checker/``.
DIFFUSERS_UNUSED_FOLDERS = ("safety_checker", "feature_extractor")

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SHARD = r"-\d{5}-of-\d{5}"
# Weights file names as diffusers writes them: plain ``model.safetensors`` or
# ``model-00001-of-00002.safetensors``; a variant ``model.fp16.safetensors`` or
# ``model.fp16-00001-of-00002.safetensors`` (legacy: ``model-00001-of-00002.fp16.safetensors``);
# and the variant's shard index ``model.safetensors.index.fp16.json`` (legacy:
# ``model.safetensors.fp16.index.json``).
_PLAIN_WEIGHTS_RE = re.compile(rf"^(?P<base>[^.]+?)(?:{_SHARD})?\.\w+$")
_VARIANT_WEIGHTS_RES = (  # legacy first: its base must not keep the shard suffix
    re.compile(rf"^(?P<base>[^.]+?){_SHARD}\.(?P<variant>\w+)\.\w+$"),
    re.compile(rf"^(?P<base>[^.]+)\.(?P<variant>\w+)(?:{_SHARD})?\.\w+$"),
)
_VARIANT_INDEX_RES = (
    re.compile(r"^(?P<base>[^.]+)\.\w+\.index\.(?P<variant>\w+)\.json$"),
    re.compile(r"^(?P<base>[^.]+)\.\w+\.(?P<variant>\w+)\.index\.json$"),
)
_ALLOW_PICKLE_HINT = (
    "Pickle files can run arbitrary code when loaded, so the studio loads only .safetensors "
    "weights by default. If you trust this model, allow it for this one model by adding {ref!r} "
    "to the `allow_pickle` setting; otherwise use a .safetensors version of it."
)


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model reference points on disk."""

    ref: str  #: as the user wrote it
    source: Literal["hub", "folder", "file"]
    path: Path  #: hub snapshot folder, local folder, or the weights file itself
    revision: str | None  #: hub commit hash; ``None`` for local models
    repo_id: str | None  #: hub repo id; ``None`` for local models

    @property
    def cache_ref(self) -> str:
        """The model-cache key part: the repo id for hub models, the absolute path otherwise."""
        if self.source == "hub" and self.repo_id:
            return self.repo_id
        return str(self.path)

    @property
    def layout(self) -> Layout:
        """The folder layout (see :func:`detect_layout`)."""
        return detect_layout(self.path)

    def weights_files(self) -> list[Path]:
        """The weights files the model loads from (see :func:`weights_files`)."""
        return weights_files(self)

    def estimated_bytes(self) -> int:
        """Sum of the weights files' sizes: a first estimate of the memory the model needs."""
        return estimate_bytes(self)


# --- public API --------------------------------------------------------------------------------


def resolve(
    ref: str,
    *,
    allow_pickle: bool = False,
    allow_download: bool = True,
    cache_dir: Path | None = None,
    progress: ByteProgress | None = None,
    cancel: threading.Event | None = None,
) -> ResolvedModel:
    """Resolve a model reference to weights on disk.

    :param ref: a hub id (``org/name``, optionally ``@revision``), a folder in diffusers or
        transformers layout, or a single ``.safetensors`` file. An existing path always wins.
    :param allow_pickle: accept pickle-based weights (``.bin .ckpt .pt .pth``) for this model.
    :param allow_download: fetch a hub model missing from the cache (never when ``HF_HUB_OFFLINE``
        is set). When a repo has safetensors weights, its pickle files are not downloaded; nor
        are a diffusers pipeline's safety checker, feature extractor and unused weight variants
        (they are not checked either: a pickle-only safety checker is no reason to refuse).
    :param cache_dir: the hub cache; default ``HF_HUB_CACHE`` / ``HF_HOME/hub`` / the hub default.
    :param progress: called with ``(0, 0)`` when a download begins (on the calling thread), then
        as ``progress(done_bytes, total_bytes)`` from the download threads, one call at a time.
        Never called for a model that is already complete in the cache.
    :param cancel: set it (from any thread) to stop a download: :class:`Cancelled` is raised at
        the next chunk of a file served over HTTP, or before the next file for a file stored with
        Xet (``hf_xet`` transfers it in Rust and ignores errors raised from its progress
        callbacks). Files already complete stay in the cache and are not fetched again next time.
    :raises ModelNotFound: missing path, empty folder, no weights, not cached while offline.
    :raises UnsafeWeightsError: only pickle-based weights, and ``allow_pickle`` is false.
    :raises InvalidRequest: the reference is neither a path nor a well-formed hub id.
    :raises Cancelled: ``cancel`` was set during a download.
    """
    text = (ref or "").strip()
    if not text:
        raise InvalidRequest("empty model reference: give a hub id (org/name), a folder or a file")
    path = Path(text).expanduser()
    if path.exists():
        return _resolve_local(text, path, allow_pickle)
    if is_local_path(text):
        raise ModelNotFound(
            f"model {text!r}: no such file or folder ({path.absolute()}). A local model is a "
            "folder in diffusers/transformers layout or a single .safetensors file."
        )
    repo_id, revision = parse_hub_id(text)
    return _resolve_hub(
        text,
        repo_id,
        revision,
        allow_pickle=allow_pickle,
        allow_download=allow_download,
        cache_dir=hub_cache_dir(cache_dir),
        progress=progress,
        cancel=cancel,
    )


def locate_model(ref: str) -> Path | None:
    """Where a model reference's files already are on this machine, or ``None``.

    An existing file or folder as given, or a hub id's snapshot in the hub cache; nothing is
    downloaded and no weights are loaded, so no safety setting applies. For ``Generator.check``,
    which runs without a ``ctx`` and may read a model's small JSON files to refuse a request
    before the job; ``run`` gets the model through ``ctx.resolve_model``. A model that is not
    here yet (or is incomplete) gives ``None``: check it again in ``run``.
    """
    try:
        return resolve(ref, allow_pickle=True, allow_download=False).path
    except (StudioError, OSError, ValueError):
        return None


def is_local_path(ref: str) -> bool:
    """Whether ``ref`` means a local file or folder: an existing path, or text written as one
    (``/x``, ``./x``, ``~/x``, ``C:\\x``, more than one ``/``, a weights-file suffix), so that a
    missing one is "no such file", not a hub id."""
    text = ref.strip()
    if not text:
        return False
    if Path(text).expanduser().exists():
        return True
    if text.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in text:
        return True
    if re.match(r"^[A-Za-z]:[\\/]", text):  # a Windows drive
        return True
    if text.count("/") > 1:
        return True
    return text.lower().endswith(SAFE_SUFFIXES + PICKLE_SUFFIXES + FOREIGN_SUFFIXES)


def parse_hub_id(ref: str) -> tuple[str, str | None]:
    """Split a hub reference ``org/name[@revision]`` into ``(repo_id, revision or None)``.

    :raises InvalidRequest: an empty revision, or a malformed repo id (the message says what a
        hub id may contain).
    """
    text = ref.strip()
    repo_id, sep, revision = text.partition("@")
    if sep and not revision.strip():
        raise InvalidRequest(f"model {text!r}: empty revision after '@' (use org/name@revision)")
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise InvalidRequest(
            f"model {text!r} is neither an existing file or folder nor a valid hub id: {exc} "
            "Allowed: org/name or name (letters, digits, '-', '_', '.'; optionally @revision), a "
            "folder in diffusers/transformers layout, or a .safetensors file."
        ) from None
    return repo_id, revision.strip() or None


def weights_files(resolved: ResolvedModel) -> list[Path]:
    """The weights files the model loads from (safetensors preferred per folder), sorted.

    For a diffusers pipeline that leaves out the components the studio never loads
    (``safety_checker/``, ``feature_extractor/``) and weight variants beside the plain weights
    (``*.fp16.safetensors``, ``*.non_ema.*``, ...), whether or not they are on disk: so
    :func:`weights_sha256` and :func:`estimate_bytes` are the same for a full snapshot and for the
    files the studio downloads.
    """
    if resolved.source == "file":
        return [resolved.path]
    root = resolved.path
    plan = _plan(_list_files(root))
    return [root / p for p in sorted(plan.safe + plan.pickle)]


def weights_sha256(
    resolved: ResolvedModel, hash_file: Callable[[Path], str] | None = None
) -> str | None:
    """A sha256 identifying the weights, or ``None`` when there are no weights files.

    Files in a hub cache are symlinks to blobs named by their LFS sha256: that name is used, no
    hashing. Other files go through ``hash_file`` (the store caches it by path, size and mtime),
    else are hashed here. One file gives its own sha256 (what other tools show); several give the
    sha256 of the sorted ``relative-path sha256`` lines.
    """
    files = weights_files(resolved)
    if not files:
        return None
    hasher = hash_file or sha256_file
    digests = {f: _blob_sha256(f) or hasher(f) for f in files}
    if len(files) == 1:
        return digests[files[0]]
    base = resolved.path if resolved.path.is_dir() else resolved.path.parent
    lines = sorted(f"{f.relative_to(base).as_posix()} {d}\n" for f, d in digests.items())
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def estimate_bytes(resolved: ResolvedModel) -> int:
    """Sum of the weights files' sizes: a first estimate of the memory the model needs."""
    return sum(f.stat().st_size for f in weights_files(resolved))


# --- local references --------------------------------------------------------------------------


def _resolve_local(ref: str, path: Path, allow_pickle: bool) -> ResolvedModel:
    # Absolute but with symlinks kept: a hub snapshot file must keep its name (not its blob's).
    path = Path(os.path.abspath(path))
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in SAFE_SUFFIXES:
            return ResolvedModel(ref, "file", path, None, None)
        if suffix in PICKLE_SUFFIXES:
            if allow_pickle:
                return ResolvedModel(ref, "file", path, None, None)
            raise UnsafeWeightsError(
                f"model {ref!r} is a pickle-based file ({path.name}). "
                + _ALLOW_PICKLE_HINT.format(ref=ref)
            )
        raise ModelNotFound(
            f"model {ref!r}: {path.name} is not a weights file the studio loads; a single-file "
            "model must be a .safetensors file (or a folder in diffusers/transformers layout)."
        )
    if not path.is_dir():
        raise ModelNotFound(f"model {ref!r}: {path} is neither a file nor a folder")
    if not _list_files(path):
        raise ModelNotFound(
            f"model {ref!r}: the folder {path} is empty; expected a model in diffusers layout "
            "(model_index.json) or transformers layout (config.json + *.safetensors)"
        )
    _check_weights(ref, path, allow_pickle)
    return ResolvedModel(ref, "folder", path, None, None)


# --- weights selection (shared by local folders, cached snapshots and downloads) ---------------


@dataclass
class _Plan:
    """Which weights files a model loads: safetensors where a folder has them, else pickle."""

    safe: list[str]
    pickle: list[str]  # pickle files in folders without safetensors (pickle-only)
    skipped_pickle: list[str]  # pickle files next to safetensors: never needed
    other: list[str]  # configs, tokenizers, ...: everything that is not weights
    #: diffusers only: files of components the studio never loads (``DIFFUSERS_UNUSED_FOLDERS``)
    #: and weight variants next to the plain weights (``*.fp16.*``, ``*.non_ema.*``, ...).
    unused: list[str] = field(default_factory=list)

    @property
    def has_weights(self) -> bool:
        return bool(self.safe or self.pickle)

    @property
    def wanted(self) -> list[str]:
        """The files a download fetches: everything but skipped pickle, foreign weights and
        unused diffusers files."""
        return self.other + self.safe + self.pickle


def _plan(paths: Iterable[str]) -> _Plan:
    """Sort a model's relative posix paths into a plan.

    In a diffusers layout (``model_index.json``):

    - weights at the top level (a single-file checkpoint kept beside the components) are not part
      of the pipeline and are ignored when components have weights;
    - the ``safety_checker/`` and ``feature_extractor/`` components are never loaded (see
      :data:`DIFFUSERS_UNUSED_FOLDERS`), so they are left out entirely: a pickle-only safety
      checker does not make the model unsafe, and its 1.2 GB are not downloaded;
    - weight variants (``diffusion_pytorch_model.fp16.safetensors``, ``*.non_ema.*``,
      ``*.ema_only.*``, with their shard indexes) are left out when the component has the plain
      weights (of the same format) that the pipeline loads by default; a component with only
      variant weights keeps them.

    Transformers layouts keep every folder and file name as it is.
    """
    paths = list(paths)
    diffusers = "model_index.json" in paths
    unused: list[str] = []
    if diffusers:
        kept: list[str] = []
        for p in paths:
            top = p.split("/", 1)[0] if "/" in p else ""
            (unused if top in DIFFUSERS_UNUSED_FOLDERS else kept).append(p)
        paths = kept
    by_dir: dict[str, tuple[list[str], list[str]]] = {}
    other: list[str] = []
    for p in paths:
        suffix = PurePosixPath(p).suffix.lower()
        parent = str(PurePosixPath(p).parent)
        if suffix in SAFE_SUFFIXES:
            by_dir.setdefault(parent, ([], []))[0].append(p)
        elif suffix in PICKLE_SUFFIXES:
            by_dir.setdefault(parent, ([], []))[1].append(p)
        elif suffix not in FOREIGN_SUFFIXES:
            other.append(p)
    if diffusers and any(d != "." for d in by_dir):
        by_dir.pop(".", None)
    plan = _Plan([], [], [], [], unused)
    dropped_variants: set[tuple[str, str]] = set()  # (folder, variant) whose weights are skipped
    for parent, (safe, pickled) in by_dir.items():
        chosen = safe or pickled
        if diffusers:
            chosen, variants = _split_variants(chosen)
            plan.unused += variants
            dropped_variants.update((parent, _variant_of(v)) for v in variants)
        if safe:
            plan.safe += chosen
            plan.skipped_pickle += pickled
        else:
            plan.pickle += chosen
    for p in other:
        index_of = (str(PurePosixPath(p).parent), _index_variant(p) or "")
        # the shard index of a skipped variant goes with it
        (plan.unused if index_of in dropped_variants else plan.other).append(p)
    for group in (plan.safe, plan.pickle, plan.skipped_pickle, plan.other, plan.unused):
        group.sort()
    return plan


def _split_variants(files: list[str]) -> tuple[list[str], list[str]]:
    """Split one folder's weights (one format) into ``(kept, variants with plain weights)``."""
    plain_bases = set()
    for f in files:
        m = _PLAIN_WEIGHTS_RE.match(PurePosixPath(f).name)
        if m:
            plain_bases.add(m["base"])
    kept: list[str] = []
    variants: list[str] = []
    for f in files:
        name = PurePosixPath(f).name
        if _PLAIN_WEIGHTS_RE.match(name) is None and _variant_base(name) in plain_bases:
            variants.append(f)
        else:
            kept.append(f)
    return kept, variants


def _variant_match(name: str) -> re.Match[str] | None:
    for pattern in _VARIANT_WEIGHTS_RES:
        m = pattern.match(name)
        if m:
            return m
    return None


def _variant_base(name: str) -> str | None:
    m = _variant_match(name)
    return m["base"] if m else None


def _variant_of(path: str) -> str:
    m = _variant_match(PurePosixPath(path).name)
    return m["variant"] if m else ""


def _index_variant(path: str) -> str | None:
    """The variant a shard index file belongs to (``x.safetensors.index.fp16.json``), if any."""
    name = PurePosixPath(path).name
    for pattern in _VARIANT_INDEX_RES:
        m = pattern.match(name)
        if m:
            return m["variant"]
    return None


def _check_weights(ref: str, root: Path, allow_pickle: bool) -> None:
    """Raise unless ``root`` holds complete weights the safety rule accepts."""
    rel = _list_files(root)
    plan = _plan(rel)
    if not plan.has_weights:
        raise ModelNotFound(
            f"model {ref!r}: no weights files in {root} (expected *.safetensors in diffusers "
            "layout with model_index.json, or transformers layout with config.json)"
        )
    if plan.pickle and not allow_pickle:
        raise UnsafeWeightsError(
            f"model {ref!r} has only pickle-based weights ({_sample(plan.pickle)}). "
            + _ALLOW_PICKLE_HINT.format(ref=ref)
        )
    missing = _missing_shards(root, rel, plan.other)
    if missing:
        raise ModelNotFound(
            f"model {ref!r} is incomplete: shard(s) {_sample(missing)} listed in its index are "
            f"missing from {root}"
        )


def _missing_shards(root: Path, rel: list[str], candidates: list[str]) -> list[str]:
    """Shards named in a ``*.safetensors.index.json`` among ``candidates`` (the plan's files:
    not those of unused diffusers components) that are not on disk."""
    present = set(rel)
    missing: list[str] = []
    for index in (p for p in candidates if p.endswith(".safetensors.index.json")):
        try:
            weight_map = json.loads((root / index).read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        parent = PurePosixPath(index).parent
        for shard in sorted(set(weight_map.values())):
            name = str(parent / shard) if str(parent) != "." else shard
            if name not in present:
                missing.append(name)
    return missing


def _sample(items: list[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _list_files(root: Path) -> list[str]:
    """Files under ``root`` as relative posix paths (symlinks followed), sorted, skipping hidden
    files and folders such as ``.cache``."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not name.startswith(".") and p.is_file():
                out.append(p.relative_to(root).as_posix())
    return out


def _blob_sha256(path: Path) -> str | None:
    """The sha256 a hub cache gives for free: the name of the LFS blob a snapshot file links to."""
    if not path.is_symlink():
        return None
    target = Path(os.path.realpath(path))
    if target.parent.name == "blobs" and _SHA256_RE.match(target.name):
        return target.name
    return None


# --- hub references ----------------------------------------------------------------------------


def _resolve_hub(
    ref: str,
    repo_id: str,
    revision: str | None,
    *,
    allow_pickle: bool,
    allow_download: bool,
    cache_dir: Path,
    progress: ByteProgress | None,
    cancel: threading.Event | None,
) -> ResolvedModel:
    offline = hub_offline()
    snapshot = _cached_snapshot(repo_id, revision, cache_dir)
    cached_problem: Exception | None = None
    if snapshot is not None:
        try:
            _check_weights(ref, snapshot, allow_pickle)
        except (ModelNotFound, UnsafeWeightsError) as exc:
            cached_problem = exc  # partial or pickle-only snapshot: the hub may have more
        else:
            return ResolvedModel(ref, "hub", snapshot, snapshot.name, repo_id)
    if not allow_download or offline:
        why = (
            "HF_HUB_OFFLINE is set"
            if offline and allow_download
            else "downloads are off (offline setting)"
        )
        if isinstance(cached_problem, ModelNotFound):
            raise ModelNotFound(f"{cached_problem}; it cannot be completed: {why}")
        if cached_problem is not None:
            raise cached_problem
        raise ModelNotFound(
            f"model {ref!r} is not in the hub cache ({cache_dir}) and {why}. Download it while "
            "online (turn the offline setting off, unset HF_HUB_OFFLINE), point HF_HUB_CACHE or "
            "HF_HOME at the cache that holds it, or use a local folder or .safetensors file."
        )
    remote = hub.list_remote_files(repo_id, revision)
    plan = _plan(remote)
    if not plan.has_weights:
        raise ModelNotFound(
            f"model {ref!r}: the hub repo has no PyTorch weights (.safetensors) to load "
            f"(files: {_sample(sorted(remote), 6) or 'none'})"
        )
    if plan.pickle and not allow_pickle:
        raise UnsafeWeightsError(
            f"model {ref!r} has only pickle-based weights on the hub ({_sample(plan.pickle)}); "
            "nothing was downloaded. " + _ALLOW_PICKLE_HINT.format(ref=ref)
        )
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"download of {ref} cancelled")
    if progress is not None:
        progress(0, 0)  # the download begins
    snapshot = hub.download(repo_id, revision, cache_dir, plan.wanted, progress, cancel)
    _check_weights(ref, snapshot, allow_pickle)
    return ResolvedModel(ref, "hub", snapshot, snapshot.name, repo_id)


def _cached_snapshot(repo_id: str, revision: str | None, cache_dir: Path) -> Path | None:
    """The cached snapshot folder for ``revision`` (default ``main``), or ``None``; no network.

    huggingface_hub 2.4 keeps the repo's whole file list (its tree listing) from the download and
    takes a snapshot that misses any listed file for incomplete. The files a download here skips
    (pickle beside safetensors, other frameworks' weights, a diffusers pipeline's safety checker
    and unused weight variants) are never there, so only the files it fetches are asked for: the
    same plan, made from that cached listing. Without a listing (a cache filled by an older tool)
    huggingface_hub cannot tell, and :func:`_check_weights` decides.
    """
    listing = hub.cached_listing(repo_id, revision, cache_dir)
    files = None if listing is None else _plan(listing).wanted
    return hub.cached_snapshot(repo_id, revision, cache_dir, files)
