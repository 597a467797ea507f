"""A fake Hugging Face hub for download tests: no network, the real cache layout.

:class:`FakeHub` holds repos in memory and stands in for ``huggingface_hub.snapshot_download``
and ``HfApi.list_repo_files`` (the ``fake_hub`` fixture of the testing kit installs it). It
writes files chunk by chunk into the hub cache the way huggingface_hub 2.4 does (a temporary
``.incomplete`` blob moved into place when complete and deleted when the transfer stops; the
tree listing cached first) and reports bytes through the progress bar class it is given, so
progress, cancel and resume are exercised for real. Cache lookups (``local_files_only``) go to
the real function. :class:`Gate` holds a transfer at a chosen point until the test lets it go.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huggingface_hub._snapshot_download import snapshot_download as REAL_SNAPSHOT_DOWNLOAD
from huggingface_hub.utils import filter_repo_objects

WAIT = 10.0  # seconds: every wait on a transfer is bounded


class FakeHub:
    """Remote repos held in memory, served into a hub cache as huggingface_hub 2.4 does."""

    def __init__(self, chunk: int = 64) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.chunk = chunk
        #: per download call, the files it asked for (after allow_patterns)
        self.calls: list[list[str]] = []
        #: files whose transfer began (``repo:file``), in order
        self.transfers: list[str] = []
        #: called after each chunk written: ``on_chunk(repo_id, filename, bytes_done)``
        self.on_chunk: Callable[[str, str, int], None] | None = None
        #: called when a file is complete in the snapshot: ``on_file(repo_id, filename)``
        self.on_file: Callable[[str, str], None] | None = None

    def add(self, repo_id: str, files: dict[str, bytes]) -> None:
        self.repos[repo_id] = files

    def list_repo_files(self, repo_id: str, *, revision: str | None = None, **_: Any) -> list[str]:
        return sorted(self.repos[repo_id])

    def snapshot_download(
        self,
        repo_id: str,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        allow_patterns: list[str] | None = None,
        tqdm_class: Any = None,
        local_files_only: bool = False,
        **kwargs: Any,
    ) -> str:
        if local_files_only:  # the cache lookups of refs: the real thing, no network
            return str(
                REAL_SNAPSHOT_DOWNLOAD(
                    repo_id,
                    revision=revision,
                    cache_dir=cache_dir,
                    allow_patterns=allow_patterns,
                    local_files_only=True,
                    **kwargs,
                )
            )
        assert cache_dir is not None and tqdm_class is not None
        files = self.repos[repo_id]
        commit = hashlib.sha1(repo_id.encode() + json.dumps(sorted(files)).encode()).hexdigest()
        repo_dir = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
        blobs, snapshot = repo_dir / "blobs", repo_dir / "snapshots" / commit
        blobs.mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / (revision or "main")).write_text(commit)
        _write_tree_listing(repo_dir, commit, files)
        wanted = list(filter_repo_objects(sorted(files), allow_patterns=allow_patterns))
        self.calls.append(wanted)
        counter = tqdm_class(total=len(wanted), desc=f"Fetching {len(wanted)} files")
        transfer = tqdm_class(total=0, initial=0, unit="B", desc="Downloading bytes")
        received = tqdm_class(total=0, initial=0, unit="B", desc="Reconstructing (incomplete...)")
        for name in wanted:
            data = files[name]
            blob = blobs / hashlib.sha256(data).hexdigest()
            if not blob.exists():
                received.total += len(data)
                received.refresh()  # as each file's aggregated bar does when it starts
                self.transfers.append(f"{repo_id}:{name}")
                tmp = blobs / f"{blob.name}.{uuid.uuid4().hex[:8]}.incomplete"
                try:
                    with open(tmp, "wb") as fh:
                        for start in range(0, len(data), self.chunk):
                            piece = data[start : start + self.chunk]
                            fh.write(piece)
                            if self.on_chunk is not None:
                                self.on_chunk(repo_id, name, start + len(piece))
                            transfer.update(len(piece))
                            received.update(len(piece))
                    os.replace(tmp, blob)
                finally:
                    tmp.unlink(missing_ok=True)  # huggingface_hub 2.4 keeps no partial file
            link = snapshot / name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                os.symlink(os.path.relpath(blob, link.parent), link)
            if self.on_file is not None:
                self.on_file(repo_id, name)
            counter.update(1)
        return str(snapshot)


def _write_tree_listing(repo_dir: Path, commit: str, files: dict[str, bytes]) -> None:
    """The tree listing huggingface_hub 2.4 caches before it downloads (all the repo's files)."""
    from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache

    entries = {}
    for name, data in files.items():
        lfs = name.endswith((".safetensors", ".bin"))
        entries[name] = TreeCacheEntry(
            size=len(data),
            blob_id=hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
            lfs_sha256=hashlib.sha256(data).hexdigest() if lfs else None,
            lfs_size=len(data) if lfs else None,
        )
    write_tree_cache(str(repo_dir), commit, entries)


def tiny_repo(
    size: int = 1000, seed: int = 0, extra: dict[str, bytes] | None = None
) -> dict[str, bytes]:
    weights = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    return {
        "config.json": json.dumps({"model_type": "gpt2"}).encode(),
        "model.safetensors": weights[:size],
        **(extra or {}),
    }


class Gate:
    """Holds the fake transfer at one point until the test lets it go on."""

    def __init__(self, name: str, after: int) -> None:
        self.name, self.after = name, after
        self.reached, self.proceed = threading.Event(), threading.Event()

    def __call__(self, repo_id: str, name: str, done: int | None = None) -> None:
        reached = done is None or done >= self.after
        if name == self.name and reached and not self.reached.is_set():
            self.reached.set()
            assert self.proceed.wait(WAIT), "the test never let the transfer go on"
