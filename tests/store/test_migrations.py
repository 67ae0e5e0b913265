"""Named migrations from specs/schema/: each in its own transaction with its record, in order, once."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from alloop.errors import StoreError
from alloop.store import MIGRATIONS, Store
from alloop.store.migrations import Migration, apply, load, statements

SPECS = Path(__file__).resolve().parents[2] / "specs" / "schema"


def _names(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_the_shipped_migrations_are_the_files_in_specs():
    assert [m.name + ".sql" for m in MIGRATIONS] == sorted(p.name for p in SPECS.glob("*.sql"))
    for m in MIGRATIONS:
        assert m.sql == (SPECS / f"{m.name}.sql").read_text(encoding="utf-8")


def test_migrations_are_recorded_and_idempotent(tmp_path):
    path = tmp_path / "alloop.db"
    Store(path, create=True).close()
    with Store(path) as s:
        assert _names(s.conn) == [m.name for m in MIGRATIONS]
        assert all(r[0] for r in s.conn.execute("SELECT applied_at FROM schema_migrations"))


def test_store_from_newer_alloop_is_refused(tmp_path):
    path = tmp_path / "alloop.db"
    Store(path, create=True).close()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO schema_migrations VALUES ('9999_future', 'x')")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer alloop.*9999_future.*upgrade alloop"):
        Store(path)


def test_a_failing_migration_leaves_nothing_of_itself(tmp_path):
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    good = Migration("0001_a", "CREATE TABLE a (x INTEGER);")
    bad = Migration("0002_b", "CREATE TABLE b (x INTEGER);\nCREATE TABLE a (y INTEGER);")
    with pytest.raises(StoreError, match="specs/schema/0002_b.sql failed.*already exists.*nothing of it"):
        apply(conn, [good, bad], where=tmp_path / "x.db", applied_at="t")
    assert _names(conn) == ["0001_a"] and _tables(conn) == {"schema_migrations", "a"}
    assert not conn.in_transaction
    fixed = Migration("0002_b", "CREATE TABLE b (x INTEGER);")
    assert apply(conn, [good, fixed], where=tmp_path / "x.db", applied_at="t") == ["0002_b"]
    assert apply(conn, [good, fixed], where=tmp_path / "x.db", applied_at="t") == []


def test_an_old_store_is_brought_forward_on_open_even_by_two_openers_at_once(tmp_path):
    path = tmp_path / "alloop.db"
    conn = sqlite3.connect(path, isolation_level=None)
    apply(conn, MIGRATIONS[:1], where=path, applied_at="t")
    conn.close()
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def open_store() -> None:
        start.wait()
        try:
            Store(path).close()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store(path) as s:
        assert _names(s.conn) == [m.name for m in MIGRATIONS]


def test_statements_split_where_sqlite_says_a_statement_ends():
    sql = """-- a comment; with a semicolon
    CREATE TABLE t (x TEXT DEFAULT 'a;b');  -- trailing; comment
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 'c;d'; END;
    -- closing comment
    """
    got = statements(sql, where="f.sql")
    assert len(got) == 2 and got[1].startswith("-- trailing") and got[1].endswith("END;")
    with pytest.raises(StoreError, match="f.sql: SQL after the last complete statement.*CREATE INDEX"):
        statements("CREATE TABLE t (x);\nCREATE INDEX i ON t(x)", where="f.sql")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["0001_a.sql", "0003_c.sql"], "0003_c.sql: expected number 0002"),
        (["0001_a.sql", "0001_b.sql"], "0001_b.sql: expected number 0002"),
        (["0001_A.sql"], "0001_A.sql: a schema file is named NNNN_lowercase_name.sql"),
        ([], "no schema files found"),
    ],
)
def test_schema_files_are_numbered_without_gaps(tmp_path, files, message):
    for name in files:
        (tmp_path / name).write_text("SELECT 1;")
    (tmp_path / "README.md").write_text("not a migration")
    with pytest.raises(StoreError, match=message):
        load(tmp_path)


def test_load_reads_names_and_sql_in_order(tmp_path):
    (tmp_path / "0002_b.sql").write_text("CREATE TABLE b (x);")
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x);")
    assert load(tmp_path) == [Migration("0001_a", "CREATE TABLE a (x);"), Migration("0002_b", "CREATE TABLE b (x);")]
