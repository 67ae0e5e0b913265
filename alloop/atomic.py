"""Crash-safe file writes: write a temporary file beside the target, fsync, then rename over it.

A reader (or a rerun after kill -9) sees either the old file or the new one, never half of one.
The one home for atomic writes: text, JSON and bytes here; anything else (``torch.save``, an
image, a zip) writes to the path :func:`atomic_path` yields. A failed write removes its temporary;
one left by kill -9 is named ``.NAME.XXXXXXXX.tmp`` and :func:`leftover_temps` finds it.

A full disk is one rule, here too: :func:`disk_full` turns what any writer raises when the disk
fills up (``OSError`` ENOSPC, SQLite's "database or disk is full", torch's zip writer's bare
``RuntimeError``) into one :class:`~alloop.errors.DiskFullError` line naming the file, the disk,
the space free and, when known, the space needed.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sqlite3
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alloop.errors import DiskFullError

_TEMP_SUFFIX = ".tmp"
# ".{target name}.{mkstemp's 8 random characters}.tmp"
_TEMP_NAME = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")


# Less than this left free after a failed write means the write failed for want of space, whatever
# the writer raised: torch's zip writer says "[enforce fail at inline_container.cc] unexpected pos".
_NEARLY_FULL = 1 << 20


@contextmanager
def atomic_path(target: Path, *, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s directory; on success rename it onto ``target``.

    ``size``: the bytes about to be written, when known; a disk with less free is refused up front.
    A write that fails because the disk is full raises :class:`DiskFullError` (temporary removed).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if size is not None and free_bytes(target.parent) < size:
            raise disk_full_error(target, needed=size)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_TEMP_SUFFIX, dir=target.parent)
    except OSError as exc:
        if not is_disk_full(exc, target.parent):
            raise
        raise disk_full_error(target, needed=size) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would (labeling
        # tools and web servers must be able to read exported batches and reports).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except Exception as exc:
        # Judged before the temporary is removed: it holds the space the write took.
        if not is_disk_full(exc, target.parent):
            raise
        written = _size_of(tmp_path)
        # The failed writer (torch's zip writer) lives on in the traceback's frames with the temporary
        # still open: unlinked, it would keep its space for as long as the error is kept.
        for link in _chain(exc):
            traceback.clear_frames(link.__traceback__)
        tmp_path.unlink(missing_ok=True)
        raise disk_full_error(target, needed=size, written=written) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(target: Path, data: bytes) -> None:
    """Atomically replace ``target`` with ``data``."""
    with atomic_path(target, size=len(data)) as tmp:
        tmp.write_bytes(data)


def write_text(target: Path, text: str) -> None:
    """Atomically replace ``target`` with ``text`` (UTF-8)."""
    write_bytes(target, text.encode("utf-8"))


def write_json(target: Path, obj: Any, *, indent: int | None = 1, allow_nan: bool = True) -> None:
    """Atomically replace ``target`` with ``obj`` as JSON (UTF-8, one newline at the end).

    ``allow_nan=False`` refuses NaN and infinities (a ValueError) for files other tools read (COCO).
    """
    write_text(target, json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=allow_nan) + "\n")


def leftover_temps(directory: Path) -> list[Path]:
    """Temporary files :func:`atomic_path` left in ``directory`` (not recursive) when killed mid-write."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(".*.tmp") if p.is_file() and _TEMP_NAME.fullmatch(p.name))


def disk_full(exc: BaseException, target: Path | None = None, *, needed: int | None = None) -> DiskFullError | None:
    """``exc`` as a one-line DiskFullError when it means the disk filled up, else None.

    ``target`` is the file being written (it names the disk; else the file the OSError names);
    ``needed``: the bytes it needs, when known.
    """
    if isinstance(exc, DiskFullError):
        return exc
    if not is_disk_full(exc, Path(target).parent if target is not None else None):
        return None
    if target is None:
        target = next((Path(e.filename) for e in _chain(exc) if isinstance(e, OSError) and e.filename), None)
    return disk_full_error(Path(target) if target is not None else None, needed=needed)


def is_disk_full(exc: BaseException, directory: Path | None = None) -> bool:
    """Whether ``exc`` means the disk is full: ENOSPC/EDQUOT or SQLite's SQLITE_FULL anywhere in its
    chain, or (given the ``directory`` written to) a write error while it has next to nothing free."""
    if any(_says_full(e) for e in _chain(exc)):
        return True
    # SQLite may say "disk I/O error" where the write under it failed for want of space.
    return (directory is not None and isinstance(exc, (OSError, RuntimeError, sqlite3.OperationalError))
            and free_bytes(directory) < _NEARLY_FULL)


def disk_full_error(target: Path | None, *, needed: int | None = None, written: int | None = None) -> DiskFullError:
    """The one-line error for a write to ``target`` that the disk has no room for."""
    if target is None:
        return DiskFullError("disk full: a write failed (no space left on device); free space on the disk "
                             "that holds the project and rerun the same command (finished work is kept)")
    disk = _mount_point(target)
    if needed:
        need = f", needs {_human(needed)}"
    elif written:
        need = f", needs more than the {_human(written)} it had written"
    else:
        need = ""
    return DiskFullError(
        f"disk full: cannot write {target} on {disk} ({_human(free_bytes(target.parent))} free{need}); "
        f"free space on {disk} and rerun the same command (finished work is kept)"
    )


def free_bytes(directory: Path) -> int:
    """Bytes free to this user on the filesystem that holds ``directory`` (or its nearest existing parent)."""
    directory = Path(directory).absolute()
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return shutil.disk_usage(directory).free


def _says_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (torch wraps the OSError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _mount_point(path: Path) -> Path:
    path = Path(path).absolute()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _human(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _fsync_dir(directory: Path) -> None:
    # The rename itself lives in the directory entry; without this a power cut can undo it.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
