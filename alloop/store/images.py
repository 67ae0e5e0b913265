"""The image pool's tables: registered images (path, content hash, size, state) and unreadable files."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import starmap
from typing import NamedTuple

from alloop.store.connection import Database, id_list, now


class ImageRow(NamedTuple):
    """One registered image (a named tuple: a million of them build in 60% of a frozen dataclass's time)."""

    id: int
    path: str
    sha256: str
    width: int
    height: int
    state: str

_IMAGES = "SELECT id, path, sha256, width, height, state FROM images"
_BY_IDS = "id IN (SELECT value FROM json_each(?))"


class ImageTables(Database):
    """``images`` and ``bad_images``.

    The whole pool's rows are read once and kept (a read of a million rows takes seconds, and a step
    needs them in several stages): :meth:`images` without ids serves them from memory until the
    ``images`` table changes, through this store's writes or another connection's (SQLite's
    ``data_version``).
    """

    _image_writes = 0  # this connection's writes to ``images``: a change the data_version does not show
    _pool: tuple[tuple[int, int], list[ImageRow]] | None = None

    def add_images(self, rows: Iterable[tuple[str, str, int, int]]) -> int:
        """Register (path, sha256, width, height) rows; already known paths are left alone."""
        with self.transaction() as c:
            ts = now()
            self._image_writes += 1
            cur = c.executemany(
                "INSERT OR IGNORE INTO images (path, sha256, width, height, added_at) VALUES (?, ?, ?, ?, ?)",
                ((path, sha, w, h, ts) for path, sha, w, h in rows),
            )
            # executemany's rowcount is the sum over the rows: those inserted, not those ignored.
            return max(cur.rowcount, 0)

    def record_bad_images(self, rows: Iterable[tuple[str, str]]) -> None:
        """Remember images that could not be read, with why."""
        with self.transaction() as c:
            ts = now()
            c.executemany(
                "INSERT OR REPLACE INTO bad_images (path, reason, seen_at) VALUES (?, ?, ?)",
                ((p, r, ts) for p, r in rows),
            )

    def forget_bad_images(self, paths: Iterable[str]) -> None:
        """Drop the bad-image rows of paths that a new scan found fixed or gone."""
        with self.transaction() as c:
            c.executemany("DELETE FROM bad_images WHERE path = ?", ((p,) for p in paths))

    def bad_images(self) -> list[tuple[str, str]]:
        """(path, reason) of every image that could not be read."""
        return [(r[0], r[1]) for r in self.conn.execute("SELECT path, reason FROM bad_images ORDER BY path")]

    def images(self, ids: Iterable[int] | None = None, *, state: str | None = None) -> list[ImageRow]:
        """Registered images by id: every one, or only those in ``ids`` and/or in ``state`` (one query)."""
        if ids is None:
            rows = self._all_images()
            return list(rows) if state is None else [r for r in rows if r.state == state]
        where, args = [_BY_IDS], [id_list(ids)]
        if state is not None:
            where.append("state = ?")
            args.append(state)
        # Only the fixed clauses above are joined in; every value is a parameter.
        sql = _IMAGES + " WHERE " + " AND ".join(where) + " ORDER BY id"
        return list(starmap(ImageRow, self.conn.execute(sql, args)))

    def _all_images(self) -> list[ImageRow]:
        """Every row, from memory while the table is unchanged (callers get copies of the list)."""
        key = (self.conn.execute("PRAGMA data_version").fetchone()[0], self._image_writes)
        if self._pool is None or self._pool[0] != key:
            self._pool = (key, list(starmap(ImageRow, self.conn.execute(_IMAGES + " ORDER BY id"))))
        return self._pool[1]

    def image_by_path(self) -> dict[str, ImageRow]:
        """Registered images keyed by their relative path."""
        return {r.path: r for r in self._all_images()}

    def set_image_state(self, image_id: int, state: str, sha256: str | None = None) -> None:
        """Mark an image ok/missing/changed (and update its hash when given)."""
        with self.transaction() as c:
            self._image_writes += 1
            if sha256 is None:
                c.execute("UPDATE images SET state = ? WHERE id = ?", (state, image_id))
            else:
                c.execute("UPDATE images SET state = ?, sha256 = ? WHERE id = ?", (state, sha256, image_id))
