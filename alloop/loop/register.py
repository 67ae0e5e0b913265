"""init's first stage: register the image folder's readable images in the pool."""

from __future__ import annotations

from alloop import images as imagelib
from alloop import pool
from alloop.loop.records import RegisterInfo
from alloop.loop.runner import Record, Turn


def register_images(turn: Turn, record: Record) -> RegisterInfo:
    """Scan the image root and register every readable image; refuse a folder with none."""
    project = turn.project
    recorded: list[RegisterInfo] = []

    def commit(reg: pool.Registration) -> None:
        # Inside register's transaction: a pool with no readable image records nothing.
        if not reg.added:
            path, reason = reg.bad[0]
            raise imagelib.ImageError(
                f"{project.image_root}: none of the {len(reg.bad)} images could be read "
                f"(first: {path}: {reason}); check the files"
            )
        recorded.append(RegisterInfo(images=reg.added, bad=len(reg.bad)))
        record(recorded[0])

    pool.register(project, progress=turn.progress, on_commit=commit)
    return recorded[0]
