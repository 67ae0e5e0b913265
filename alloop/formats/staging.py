"""Write an export directory all at once: build it beside the target, then swap it in.

Training exports (KITTI, YOLO) are trees of images and label files. A crash half-way, or a
re-export with fewer images, must never leave stale or missing label files that a trainer
would silently read, so the tree is built in a hidden sibling folder and each top-level entry
replaces the old one only when everything is written.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from alloop import atomic
from alloop.errors import ImageError


class StagedDir:
    """``with StagedDir(out_dir) as tmp:`` write under ``tmp``; on success its entries replace out_dir's."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.tmp = self.out_dir / f".staging-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Path:
        self.tmp.mkdir(parents=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                for entry in sorted(self.tmp.iterdir()):
                    target = self.out_dir / entry.name
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    elif target.exists() or target.is_symlink():
                        target.unlink()
                    entry.rename(target)
        finally:
            # Judged before the staged tree goes (it holds the space the export took).
            full = atomic.disk_full(exc, self.out_dir) if isinstance(exc, Exception) else None
            shutil.rmtree(self.tmp, ignore_errors=True)
        if full is not None:
            raise full from exc


def put(path: Path, data: str | bytes) -> None:
    """Write one file inside a staged tree (UTF-8 for text); the swap, not each file, is the atomic step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def place_image(src: Path, dst: Path) -> None:
    """Hard-link ``src`` at ``dst`` (no copy, works inside containers), else copy it."""
    if not src.is_file():
        raise ImageError(f"{src}: image file is missing; restore it or remove the image from the project")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


__all__ = ["StagedDir", "place_image", "put"]
