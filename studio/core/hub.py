"""The Hugging Face hub and its local cache: where the cache is, what it holds, downloads, deletes.

Everything that talks to ``huggingface_hub`` lives here; :mod:`studio.core.refs` decides *which*
files a model needs (safetensors only, unless pickle was allowed) and asks this module to find or
fetch exactly those.

* Where: :func:`hub_cache_dir` (``HF_HUB_CACHE``, else ``HF_HOME/hub``, read at each call, so a
  model downloaded for another tool is used in place, never copied) and :func:`hub_offline`.
* Lookup, no network: :func:`cached_listing` (the repo's file list huggingface_hub kept from a
  download) and :func:`cached_snapshot`; :func:`list_hub_models` lists the cached models.
* Network: :func:`list_remote_files` and :func:`download` (resumable, with byte progress through
  :func:`progress_tqdm`, and cancellable); their errors become :class:`ModelNotFound` saying what
  to do.
* Deleting: :func:`delete_from_cache` removes cached revisions (or a whole repo) and says what
  could not be deleted.

Nothing here imports torch; ``huggingface_hub`` is imported inside the functions that use it.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.core.errors import Cancelled, ModelNotFound, StudioError
from studio.core.layout import detect_layout, guess_modality
from studio.core.records import ModelEntry

#: ``progress(done_bytes, total_bytes)`` of a download.
ByteProgress = Callable[[int, int], None]


# --- where the cache is ----------------------------------------------------------------------


def hub_cache_dir(cache_dir: Path | None = None) -> Path:
    """The hub cache folder, read from the environment at each call (as huggingface_hub does at
    import): ``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME/hub``,
    ``XDG_CACHE_HOME/huggingface/hub``, ``~/.cache/huggingface/hub``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids network access now."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def repo_folder(cache: Path, repo_id: str) -> Path:
    """The folder of model repo ``repo_id`` in hub cache ``cache`` (``models--org--name``)."""
    from huggingface_hub.file_download import repo_folder_name

    return cache / repo_folder_name(repo_id=repo_id, repo_type="model")


def has_snapshot(cache: Path, repo_id: str) -> bool:
    """Whether the cache holds any snapshot folder of ``repo_id``, complete or not."""
    snapshots = repo_folder(cache, repo_id) / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


# --- what the cache holds (no network) ---------------------------------------------------------


def list_hub_models(cache_dir: Path | None = None) -> list[ModelEntry]:
    """Models in the hub cache (the snapshot that ``main`` points to, else the newest), by id."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    folder = hub_cache_dir(cache_dir)
    try:
        info = scan_cache_dir(folder)
    except CacheNotFound:
        return []
    entries = []
    for repo in info.repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        by_ref = repo.refs
        revision = by_ref.get("main") or max(repo.revisions, key=lambda r: r.last_modified)
        snapshot = Path(revision.snapshot_path)
        layout = detect_layout(snapshot)
        entries.append(
            ModelEntry(
                ref=repo.repo_id,
                source="hub",
                modality=guess_modality(snapshot),
                size_bytes=int(repo.size_on_disk),
                downloaded=True,
                path=snapshot,
                revision=revision.commit_hash,
                kind=None if layout == "unknown" else layout,
            )
        )
    return sorted(entries, key=lambda e: e.ref.lower())


def cached_listing(repo_id: str, revision: str | None, cache_dir: Path) -> list[str] | None:
    """The repo's whole file list as huggingface_hub kept it from a download (its tree listing),
    or ``None`` when it kept none (a cache filled by an older tool); no network."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        tree = get_cached_repo_tree(repo_id, revision=revision, cache_dir=cache_dir)
    except CachedRepoTreeNotFoundError:
        return None
    return [f.path for f in tree]


def cached_snapshot(
    repo_id: str, revision: str | None, cache_dir: Path, files: list[str] | None
) -> Path | None:
    """The cached snapshot folder for ``revision`` (default ``main``), or ``None``; no network.

    huggingface_hub 2.4 takes a snapshot that misses any file of its cached listing for
    incomplete; ``files`` (when given) are the only files asked for, so that files a download
    skipped on purpose do not count as missing. Without a listing huggingface_hub cannot tell, and
    the caller checks the snapshot's files itself.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = None if files is None else [_escape_pattern(f) for f in files]
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=patterns,
            local_files_only=True,
        )
    except (LocalEntryNotFoundError, FileNotFoundError):  # missing, or listed files missing
        return None
    return Path(folder)


# --- network -----------------------------------------------------------------------------------


def list_remote_files(repo_id: str, revision: str | None) -> list[str]:
    """The repo's file list on the hub (network).

    :raises ModelNotFound: the repo or revision does not exist, is gated, or the hub is out of
        reach (the message says which, and what to do).
    """
    from huggingface_hub import HfApi

    try:
        return list(HfApi().list_repo_files(repo_id, revision=revision))
    except Exception as exc:
        raise _hub_error(repo_id, exc) from exc


def download(
    repo_id: str,
    revision: str | None,
    cache_dir: Path,
    files: list[str],
    progress: ByteProgress | None,
    cancel: threading.Event | None = None,
) -> Path:
    """Download exactly ``files`` into the hub cache (complete files are kept); the snapshot.

    :raises Cancelled: ``cancel`` was set (see :func:`progress_tqdm` for when it takes effect).
    :raises ModelNotFound: as :func:`list_remote_files`.
    """
    from huggingface_hub import snapshot_download

    patterns = [_escape_pattern(f) for f in files]
    kwargs: dict[str, Any] = {}
    if progress is not None or cancel is not None:
        kwargs["tqdm_class"] = progress_tqdm(progress, cancel)
    try:
        folder = snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=patterns, **kwargs
        )
    except Exception as exc:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"download of {repo_id} cancelled") from exc
        raise _hub_error(repo_id, exc) from exc
    return Path(folder)


def _hub_error(ref: str, exc: Exception) -> ModelNotFound:
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, GatedRepoError):
        return ModelNotFound(
            f"model {ref!r} is gated on the hub: accept its licence on huggingface.co and log in "
            "(`hf auth login`), then try again"
        )
    if isinstance(exc, RevisionNotFoundError):
        return ModelNotFound(f"model {ref!r}: that revision does not exist on the hub")
    if isinstance(exc, RepositoryNotFoundError):
        return ModelNotFound(
            f"model {ref!r} was not found on the hub (check the id; private models need "
            "`hf auth login`)"
        )
    return ModelNotFound(
        f"model {ref!r} is not cached and the hub could not be reached ({type(exc).__name__}: "
        f"{exc}). Check the connection and try again; an interrupted download resumes."
    )


def _escape_pattern(name: str) -> str:
    """An fnmatch pattern matching exactly ``name``."""
    return re.sub(r"([\[\]*?])", r"[\1]", name)


def progress_tqdm(callback: ByteProgress | None, cancel: threading.Event | None = None) -> type:
    """A silent tqdm class for ``snapshot_download``: byte progress to ``callback``, and a stop
    once ``cancel`` is set.

    huggingface_hub aggregates every file's bytes into one bar (unit ``B``, "Reconstructing...");
    that bar's count and growing total are forwarded as ``callback(done, total)``, one call at a
    time although huggingface_hub updates the bar from several threads.

    After ``cancel`` is set, every bar (the file counter included) raises :class:`Cancelled` when
    it is created, updated or refreshed on a Python thread: at a file's next HTTP chunk, or at the
    next file (huggingface_hub refreshes the bytes bar as each file starts, and counts each file
    done). Not on hf_xet's own threads, which would only print the error and carry on.
    """
    from tqdm.auto import tqdm

    lock = threading.Lock()

    def check() -> None:
        on_python_thread = not isinstance(threading.current_thread(), threading._DummyThread)
        if cancel is not None and cancel.is_set() and on_python_thread:
            raise Cancelled("download cancelled")

    class _ProgressTqdm(tqdm):  # type: ignore[misc, valid-type]
        # tqdm starts a monitor thread per bar class, disabled or not, unless this is 0; the
        # bars here are silent, and a new class per download would mean a thread per download
        monitor_interval = 0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            desc = str(kwargs.get("desc") or "")
            self._report = kwargs.get("unit") == "B" and not desc.startswith("Downloading bytes")
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            check()

        def update(self, n: float | None = 1) -> bool | None:
            check()
            with lock:
                # A disabled tqdm does not count: keep the count here.
                self.n += n or 0
                if self._report and callback is not None:
                    callback(int(self.n), int(self.total or 0))
            return None

        def refresh(self, *args: Any, **kwargs: Any) -> None:
            check()
            super().refresh(*args, **kwargs)

    return _ProgressTqdm


# --- deleting ----------------------------------------------------------------------------------


def delete_from_cache(text: str, repo_id: str, revision: str | None, cache: Path) -> int:
    """Remove ``repo_id`` from hub cache ``cache``: every cached revision with any leftover of a
    stopped download, or, with ``revision`` (a branch, tag, commit hash or its prefix), only that
    one. ``text`` is the reference as the user wrote it, for messages. Returns the bytes freed.

    :raises ModelNotFound: the repo (or that revision) is not in the cache.
    :raises StudioError: files could not be deleted (permissions, a file in use).
    """
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    folder = repo_folder(cache, repo_id)
    try:
        info = scan_cache_dir(cache)
    except CacheNotFound:
        info = None
    repo = None
    if info is not None:
        repo = next(
            (r for r in info.repos if r.repo_type == "model" and r.repo_id == repo_id), None
        )
    if repo is None:
        if folder.is_dir() and revision is None:
            # a download stopped before its first file: no snapshot, only leftovers
            freed = _folder_bytes(folder)
            shutil.rmtree(folder, ignore_errors=True)
            _check_gone(text, [folder])
            return freed
        raise ModelNotFound(f"model {text!r} is not in the hub cache ({cache}): nothing to delete")
    revisions = [
        r
        for r in repo.revisions
        if revision is None or r.commit_hash.startswith(revision) or revision in r.refs
    ]
    if not revisions:
        cached = ", ".join(sorted(r.commit_hash[:10] for r in repo.revisions))
        raise ModelNotFound(
            f"model {text!r}: revision {revision!r} is not in the hub cache (cached: {cached})"
        )
    assert info is not None
    strategy = info.delete_revisions(*(r.commit_hash for r in revisions))
    freed = int(strategy.expected_freed_size)
    strategy.execute()  # logs, does not raise, what it could not delete: checked below
    whole = len(revisions) == len(repo.revisions)
    if whole and folder.is_dir():  # leftovers outside snapshots (a stopped download's blobs)
        shutil.rmtree(folder, ignore_errors=True)
    _check_gone(text, [folder] if whole else [Path(r.snapshot_path) for r in revisions])
    return freed


def _check_gone(text: str, paths: list[Path]) -> None:
    left = [p for p in paths if p.exists() or p.is_symlink()]
    if left:
        raise StudioError(
            f"model {text!r} could not be deleted completely: {left[0]} is still there (a file "
            "in use or without permission); close what uses it and delete again"
        )


def _folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total
