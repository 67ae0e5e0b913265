"""The project's SQLite store: images, classes, tags, labels, iterations, stages, scores, embeddings.

One file per project (``alloop.db``), WAL mode, foreign keys on. The store owns its tables and
applies the named forward migrations of ``specs/schema/`` when opened (:mod:`.migrations`); it
never drops a user's labels. Every public write method runs in one transaction, and
:meth:`Store.transaction` lets the loop group several writes (a stage's results and the record that
the stage finished) into one atomic unit. Every value is a query parameter.

Each table group is one module (:mod:`.images`, :mod:`.labels`, :mod:`.tags`, :mod:`.iterations`,
:mod:`.scores`) on the shared connection of :mod:`.connection`; :class:`Store` joins them.
"""

from __future__ import annotations

from alloop.store.connection import Database, now
from alloop.store.images import ImageRow, ImageTables
from alloop.store.iterations import Iteration, IterationTables
from alloop.store.labels import LabelTables
from alloop.store.migrations import MIGRATIONS, Migration
from alloop.store.scores import ScoreTables
from alloop.store.tags import Tag, TagMember, TagTables


class Store(ImageTables, LabelTables, TagTables, IterationTables, ScoreTables):
    """The SQLite store of one project. Use as a context manager or call :meth:`close`."""

    def counts(self) -> dict[str, int]:
        """Pool, labeled, train/val, queued, bad and box counts: indexed COUNT queries, no rows loaded."""
        def one(sql: str) -> int:
            return int(self.conn.execute(sql).fetchone()[0])

        return {
            "images": one("SELECT COUNT(*) FROM images"),
            "labeled": one("SELECT COUNT(*) FROM labels"),
            "train": one("SELECT COUNT(*) FROM labels WHERE split = 'train'"),
            "val": one("SELECT COUNT(*) FROM labels WHERE split = 'val'"),
            "queued": self.queued_count(),
            "boxes": one("SELECT COUNT(*) FROM boxes"),
            "bad_images": one("SELECT COUNT(*) FROM bad_images"),
        }


__all__ = [
    "MIGRATIONS", "Database", "ImageRow", "Iteration", "Migration", "Store", "Tag", "TagMember", "now",
]
