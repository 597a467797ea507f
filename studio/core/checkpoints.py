"""Crash-safe checkpoints for trainers.

A checkpoint is written into a temporary folder, completed with a marker file written last, then
renamed into place. Older checkpoints are deleted only after the new one is verified complete, so
at every instant at least one complete checkpoint exists once the first has been written.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from studio.core.atomic import fsync_dir

MARKER = "COMPLETE"


class CheckpointStore:
    """Checkpoints of one training job, under ``root`` (``step-00000123`` folders)."""

    def __init__(self, root: Path, keep: int = 2) -> None:
        self.root = Path(root)
        self.keep = max(1, keep)

    def save(self, step: int, write: Callable[[Path], None], meta: dict | None = None) -> Path:
        """Call ``write(folder)`` to fill a new checkpoint for ``step``; return its final path."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"step-{step:08d}"
        tmp = self.root / f".tmp-step-{step:08d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write(tmp)
        _fsync_tree(tmp)  # the data reaches the disk before the marker can say it is complete
        marker = tmp / MARKER
        with open(marker, "w", encoding="utf-8") as fh:
            json.dump({"step": step, "time": time.time(), **(meta or {})}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(self.root)
        if self.is_complete(final):
            self._prune(keep_latest=final)
        return final

    def is_complete(self, folder: Path) -> bool:
        return (folder / MARKER).is_file()

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(
            p for p in self.root.iterdir() if p.name.startswith("step-") and self.is_complete(p)
        )

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or ``None``."""
        done = self.complete()
        return done[-1] if done else None

    def step_of(self, folder: Path) -> int:
        return int(json.loads((folder / MARKER).read_text(encoding="utf-8"))["step"])

    def _prune(self, keep_latest: Path) -> None:
        done = self.complete()
        for old in done[: max(0, len(done) - self.keep)]:
            if old != keep_latest:
                shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob(".tmp-step-*"):  # left by a crash mid-write
            shutil.rmtree(stale, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` to disk (what ``write`` left in the cache)."""
    for path in sorted(folder.rglob("*"), reverse=True):  # files before the folders holding them
        if path.is_dir():
            fsync_dir(path)
        elif path.is_file():
            with open(path, "rb+") as fh:
                os.fsync(fh.fileno())
    fsync_dir(folder)
