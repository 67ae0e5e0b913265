"""Named forward migrations: the SQL files of ``specs/schema/``, applied in order when a store opens.

Each file ``NNNN_name.sql`` is one migration called ``NNNN_name``. On open, every migration not yet
in the ``schema_migrations`` table runs in its own transaction together with the row that records
it (as sqlite-utils and simonw/llm do), so a store is always at a whole number of migrations. A
store that records a migration this alloop does not know was written by a newer alloop and is
refused. Never edit a released file: add the next number.

The files live in ``specs/schema/`` so they read without Python; ``alloop/store/schema`` is a
symbolic link to that folder, which setuptools copies into the wheel as package data
(pyproject.toml), so an installed alloop and a source checkout read the same files through
``importlib.resources``. Why a link: one copy of the SQL (a copy inside the package would drift);
setuptools ``data-files`` install outside the package where nothing can find them; mapping a package
onto ``specs/schema`` needs an ``__init__.py`` there or every package listed by hand. Git keeps the
link and every platform alloop runs on (it locks with fcntl) follows it.
"""

from __future__ import annotations

import re
import sqlite3
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from alloop.errors import StoreError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

SCHEMA_DIR: Traversable = resources.files("alloop.store") / "schema"
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class Migration(NamedTuple):
    """One schema change: its name (the file name without ``.sql``) and its SQL."""

    name: str
    sql: str


def load(directory: Traversable = SCHEMA_DIR) -> list[Migration]:
    """The migrations in ``directory``, numbered 0001, 0002, … without gaps."""
    files = sorted((f for f in directory.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    out = []
    for expected, f in enumerate(files, start=1):
        match = _FILE.match(f.name)
        if not match:
            raise StoreError(f"{directory}/{f.name}: a schema file is named NNNN_lowercase_name.sql; rename it")
        if int(match.group(1)) != expected:
            raise StoreError(f"{directory}/{f.name}: expected number {expected:04d} next (no gaps, no repeats)")
        out.append(Migration(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")))
    if not out:
        raise StoreError(f"{directory}: no schema files found; the alloop installation is incomplete, reinstall it")
    return out


def statements(sql: str, *, where: str) -> list[str]:
    """Split a SQL file into single statements (SQLite decides where each one is complete)."""
    out, start = [], 0
    for i, ch in enumerate(sql):
        if ch == ";" and sqlite3.complete_statement(sql[start : i + 1]):
            out.append(sql[start : i + 1].strip())
            start = i + 1
    rest = [line for line in sql[start:].splitlines() if line.strip() and not line.strip().startswith("--")]
    if rest:
        raise StoreError(f"{where}: SQL after the last complete statement ({rest[0].strip()!r}); end it with ';'")
    return out


def apply(conn: sqlite3.Connection, migrations: list[Migration], *, where: Path, applied_at: str) -> list[str]:
    """Apply the migrations ``conn`` lacks, each in its own transaction; return their names."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    applied = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
    newer = applied - {m.name for m in migrations}
    if newer:
        raise StoreError(f"{where}: written by a newer alloop (migrations {sorted(newer)}); upgrade alloop")
    done = []
    for m in migrations:
        if m.name in applied:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while this one waited for the write lock.
            if conn.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (m.name,)).fetchone() is None:
                for statement in statements(m.sql, where=f"specs/schema/{m.name}.sql"):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (m.name, applied_at))
                done.append(m.name)
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreError(
                    f"{where}: schema migration specs/schema/{m.name}.sql failed ({exc}); nothing of it was "
                    "applied and the store is as it was; report this with `alloop doctor` output"
                ) from exc
            raise
        conn.execute("COMMIT")
    return done


MIGRATIONS: list[Migration] = load()
