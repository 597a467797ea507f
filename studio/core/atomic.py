"""Atomic file writes: every user-data file the studio writes goes through these helpers.

A file is written to a temporary file in the same folder, flushed to disk (``fsync``), then renamed
over its final name, and the folder entry is synced too. A reader (or a crash) therefore sees
either the old complete file or the new complete file, never a half-written one, and a failed
write leaves no temporary file behind.

With ``overwrite=False`` the final step refuses to replace an existing file (it raises
:class:`FileExistsError`) without any window in which two writers could both succeed: the new
file is hard-linked into place, which fails if the name is taken. On file systems without hard
links it falls back to a check followed by a rename.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


def _current_umask() -> int:
    # os.umask can only be read by setting it; done once at import, before worker threads exist.
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()

#: errors from os.link that mean "this file system has no hard links", not "the name is taken".
_NO_LINK_ERRNOS = {
    errno.EPERM,
    errno.EACCES,
    errno.EXDEV,
    errno.EMLINK,
    errno.ENOTSUP,
    errno.EOPNOTSUPP,
    errno.ENOSYS,
}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed to ``path``.

    The temporary file already exists (empty) when the block starts: open it for writing
    (``"w"``/``"wb"``) or hand it to a library. It keeps ``path``'s suffix, so libraries that pick
    a format from the extension (Pillow, soundfile) do the right thing. If the block raises, the
    temporary file is removed and ``path`` is untouched. With ``overwrite=False``,
    :class:`FileExistsError` is raised (and nothing is written) when ``path`` already exists.
    """
    final = Path(path)
    folder = final.parent
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.stem}-", suffix=f".tmp{final.suffix}", dir=folder
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the mode a normal open() would have.
        with contextlib.suppress(OSError):
            os.chmod(tmp, _FILE_MODE)
        _fsync_file(tmp)
        if overwrite:
            os.replace(tmp, final)
        else:
            _place_new(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, overwrite: bool = True
) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); return the path."""
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(
    path: str | os.PathLike[str],
    text: str,
    *,
    encoding: str = "utf-8",
    overwrite: bool = True,
) -> Path:
    """Write ``text`` to ``path`` atomically, encoded as given, newlines kept exactly as passed."""
    return atomic_write_bytes(path, text.encode(encoding), overwrite=overwrite)


def _place_new(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final`` unless ``final`` exists (then FileExistsError)."""
    try:
        os.link(tmp, final)  # fails atomically with FileExistsError if the name is taken
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "file exists, not overwritten", str(final)) from None
    except OSError as exc:
        if exc.errno not in _NO_LINK_ERRNOS:
            raise
        if final.exists():
            raise FileExistsError(
                errno.EEXIST, "file exists, not overwritten", str(final)
            ) from None
        os.replace(tmp, final)
        return
    with contextlib.suppress(OSError):  # final is in place; a leftover link is only clutter
        tmp.unlink()


def _fsync_file(path: Path) -> None:
    # opened for writing: Windows cannot flush a read-only handle
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Persist the rename itself (a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
