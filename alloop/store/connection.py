"""The open SQLite file: pragmas, migrations on open, transactions, integrity check and backup.

Every table group of the store (images, labels, tags, iterations, scores, embeddings) subclasses
:class:`Database`, so each writes through the same connection and the same transaction depth.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from alloop import atomic
from alloop.errors import StoreError
from alloop.store.migrations import MIGRATIONS, apply

_D = TypeVar("_D", bound="Database")


def now() -> str:
    """UTC timestamp in ISO 8601, second precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class Database:
    """One project's SQLite file, opened in WAL mode with foreign keys on and migrated."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(f"{self.path}: store not found; run `alloop init` to create a project")
        self._depth = 0
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the store ({exc}); check the path and its permissions") from exc
        try:
            # Rows stay plain tuples: the table groups read columns by position, and sqlite3.Row would
            # cost 40% more on a million-image read.
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            apply(self.conn, MIGRATIONS, where=self.path, applied_at=now())
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            full = atomic.disk_full(exc, self.path)  # creating or migrating it: not a damaged store
            if full is not None:
                raise full from exc
            raise StoreError(
                f"{self.path}: the store is unreadable ({exc}); restore a backup from "
                f"{self.path.parent / 'artifacts' / 'backups'} (see `alloop doctor`)"
            ) from exc
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self: _D) -> _D:  # noqa: PYI019 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside happen together or not at all (nested calls join the outer one)."""
        if self._depth == 0:
            self.conn.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield self.conn
            if self._depth == 1:
                self.conn.execute("COMMIT")
        except BaseException as exc:
            self._depth -= 1
            if self._depth == 0:
                if self.conn.in_transaction:  # a failed COMMIT (disk full) leaves it open
                    self.conn.execute("ROLLBACK")
                full = atomic.disk_full(exc, self.path) if isinstance(exc, sqlite3.Error) else None
                if full is not None:
                    raise full from exc
            raise
        else:
            self._depth -= 1

    def integrity_check(self) -> str:
        """SQLite's own integrity check: 'ok' or the problems found."""
        return "; ".join(r[0] for r in self.conn.execute("PRAGMA integrity_check"))

    def backup_to(self, target: Path) -> None:
        """A consistent copy of the whole store (SQLite's online backup), even while in use."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        dst = sqlite3.connect(tmp)
        try:
            self.conn.backup(dst)
        except sqlite3.Error as exc:
            dst.close()
            tmp.unlink(missing_ok=True)
            full = atomic.disk_full(exc, target)
            if full is None:
                raise
            raise full from exc
        finally:
            dst.close()
        tmp.replace(target)


def id_list(ids: Iterable[int]) -> str:
    """Ids as one JSON parameter for ``IN (SELECT value FROM json_each(?))``: any count, one query."""
    return json.dumps([int(i) for i in ids])


def json_default(obj: Any) -> Any:
    """json.dumps fallback for what the loop records: numpy scalars, paths, anything else as text."""
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return str(obj)
