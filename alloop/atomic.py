"""Crash-safe file writes: write a temporary file beside the target, fsync, then rename over it.

A reader (or a rerun after kill -9) sees either the old file or the new one, never half of one.
The one home for atomic writes: text, JSON and bytes here; anything else (``torch.save``, an
image, a zip) writes to the path :func:`atomic_path` yields. A failed write (disk full) removes its
temporary; one left by kill -9 is named ``.NAME.XXXXXXXX.tmp`` and :func:`leftover_temps` finds it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_TEMP_SUFFIX = ".tmp"
# ".{target name}.{mkstemp's 8 random characters}.tmp"
_TEMP_NAME = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s directory; on success rename it onto ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_TEMP_SUFFIX, dir=target.parent)
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
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(target: Path, data: bytes) -> None:
    """Atomically replace ``target`` with ``data``."""
    with atomic_path(target) as tmp:
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
