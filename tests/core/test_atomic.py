"""Atomic writes: complete new file or untouched old file, never a temp file left behind."""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
from pathlib import Path

import pytest

from studio.core import atomic
from studio.core.atomic import atomic_path, atomic_write_bytes, atomic_write_text


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_bytes_creates_the_file_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    assert atomic_write_bytes(target, b"\x00\x01data") == target
    assert target.read_bytes() == b"\x00\x01data"
    assert _names(tmp_path) == ["a.bin"]


def test_write_text_keeps_newlines_and_encodes_utf8(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    atomic_write_text(target, "é漢\r\nline two\n")
    assert target.read_bytes() == "é漢\r\nline two\n".encode()
    atomic_write_text(target, "latin é", encoding="latin-1")
    assert target.read_bytes() == b"latin \xe9"


def test_overwrite_replaces_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("a much longer old content")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert _names(tmp_path) == ["a.txt"]


def test_temp_path_is_next_to_the_target_and_keeps_its_suffix(tmp_path: Path) -> None:
    target = tmp_path / "image.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.suffix == ".png"
        assert tmp.exists() and tmp != target
        assert not target.exists()  # nothing visible until the block succeeds
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"
    assert not tmp.exists()


def test_failure_leaves_the_existing_file_intact_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "settings.json"
    target.write_text('{"old": true}')
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_path(target) as tmp:
        tmp.write_text('{"new": tr')  # half written when the failure happens
        raise RuntimeError("disk on fire")
    assert target.read_text() == '{"old": true}'
    assert _names(tmp_path) == ["settings.json"]


def test_failure_of_the_rename_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="I/O error"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["a.txt"]


def test_no_overwrite_refuses_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("precious")
    with pytest.raises(FileExistsError):
        atomic_write_text(target, "other", overwrite=False)
    assert target.read_text() == "precious"
    assert _names(tmp_path) == ["a.txt"]
    atomic_write_text(tmp_path / "b.txt", "fresh", overwrite=False)
    assert (tmp_path / "b.txt").read_text() == "fresh"
    assert _names(tmp_path) == ["a.txt", "b.txt"]


def test_no_overwrite_without_hard_links_falls_back_to_a_checked_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(atomic.os, "link", no_links)
    atomic_write_text(tmp_path / "a.txt", "one", overwrite=False)
    assert (tmp_path / "a.txt").read_text() == "one"
    with pytest.raises(FileExistsError):
        atomic_write_text(tmp_path / "a.txt", "two", overwrite=False)
    assert (tmp_path / "a.txt").read_text() == "one"
    assert _names(tmp_path) == ["a.txt"]


def test_racing_writers_without_overwrite_exactly_one_wins(tmp_path: Path) -> None:
    target = tmp_path / "race.txt"
    barrier = threading.Barrier(8)
    won: list[int] = []
    lost: list[int] = []

    def write(n: int) -> None:
        barrier.wait()
        try:
            atomic_write_text(target, f"writer {n}", overwrite=False)
            won.append(n)
        except FileExistsError:
            lost.append(n)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 7
    assert target.read_text() == f"writer {won[0]}"
    assert _names(tmp_path) == ["race.txt"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_new_files_get_the_usual_permissions_not_private_temp_ones(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    target = atomic_write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
