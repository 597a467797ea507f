"""Checkpoints: complete-marker written last, old ones pruned only after the new one is complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.core.checkpoints import MARKER, CheckpointStore


def _writer(payload: str):
    def write(folder: Path) -> None:
        (folder / "state.txt").write_text(payload)

    return write


def test_save_latest_and_prune(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ck", keep=2)
    assert store.latest() is None
    for step in (10, 20, 30):
        store.save(step, _writer(f"s{step}"))
    done = store.complete()
    assert [store.step_of(p) for p in done] == [20, 30]
    assert (store.latest() / "state.txt").read_text() == "s30"


def test_crash_mid_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ck")
    store.save(5, _writer("good"))

    def crash(folder: Path) -> None:
        (folder / "state.txt").write_text("half")
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        store.save(6, crash)
    latest = store.latest()
    assert latest is not None and store.step_of(latest) == 5
    assert (latest / "state.txt").read_text() == "good"
    # the half-written folder has no marker, so it is never taken for a checkpoint
    assert all((p / MARKER).exists() for p in store.complete())
    store.save(7, _writer("next"))  # and is cleaned up by the next successful save
    assert not list((tmp_path / "ck").glob(".tmp-step-*"))


def test_folder_without_marker_is_ignored(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ck")
    (tmp_path / "ck" / "step-00000009").mkdir(parents=True)
    assert store.latest() is None


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names fds through /proc (Linux)")
def test_every_file_is_flushed_before_the_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power loss must not leave a checkpoint marked complete with its data still in the cache."""
    import os

    order: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        order.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def write(folder: Path) -> None:
        (folder / "sub").mkdir()
        (folder / "weights.safetensors").write_bytes(b"w" * 10)
        (folder / "sub" / "state.json").write_text("{}")

    monkeypatch.setattr(os, "fsync", fsync)
    CheckpointStore(tmp_path / "ckpt").save(1, write)
    flushed = [Path(p).name for p in order]
    marker_at = flushed.index(MARKER)
    assert "weights.safetensors" in flushed[:marker_at]
    assert "state.json" in flushed[:marker_at]
