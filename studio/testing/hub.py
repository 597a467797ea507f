"""Put a locally saved model into a Hugging Face hub cache layout, offline.

The layout is the one ``huggingface_hub`` reads (``models--org--name/{blobs,snapshots,refs}``), so
hub-id resolution can be tested without any download: blobs are named by their sha256 (as the hub
does for LFS files) and snapshot files are symlinks to them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from studio.core.hashing import sha256_file


def save_to_hub_cache(
    folder: Path, repo_id: str, cache_dir: Path, revision: str = "main", commit: str | None = None
) -> Path:
    """Copy ``folder`` into ``cache_dir`` as repo ``repo_id``; return the snapshot folder."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if commit is None:
        digest = hashlib.sha1(repo_id.encode())
        for f in files:
            digest.update(str(f.relative_to(folder)).encode())
            digest.update(f.read_bytes())
        commit = digest.hexdigest()
    repo = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in files:
        sha = sha256_file(f)
        blob = blobs / sha
        if not blob.exists():
            shutil.copyfile(f, blob)
        link = snapshot / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        os.symlink(os.path.relpath(blob, link.parent), link)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot
