"""The project's SQLite store: images, classes, tags, labels, iterations, stages, scores, embeddings.

One file per project (``alloop.db``), WAL mode, foreign keys on. The store owns its tables and
applies named forward migrations when opened; it never drops a user's labels. Every public
write method runs in one transaction, and :meth:`Store.transaction` lets the loop group several
writes (a stage's results and the record that the stage finished) into one atomic unit.
All SQL is parameterised.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from alloop.boxes import Box, ImageAnnotation
from alloop.errors import StoreError

SCHEMA_NAME = "alloop"

# Named forward migrations, applied in order and recorded in schema_migrations.
# Never edit a released migration: append a new one.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,              -- posix path relative to the image root
            sha256 TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            added_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'ok'         -- ok | missing | changed
        );
        CREATE INDEX images_sha ON images(sha256);
        CREATE TABLE bad_images (
            path TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            seen_at TEXT NOT NULL
        );
        CREATE TABLE classes (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE
        );
        CREATE TABLE tags (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            iteration INTEGER NOT NULL,
            method TEXT NOT NULL,
            created_at TEXT NOT NULL,
            export_dir TEXT,
            options_json TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE tag_members (
            tag_id INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
            image_id INTEGER NOT NULL REFERENCES images(id),
            pick_order INTEGER NOT NULL,
            distance REAL,
            score REAL,
            PRIMARY KEY (tag_id, image_id)
        );
        CREATE TABLE labels (
            image_id INTEGER PRIMARY KEY REFERENCES images(id),
            split TEXT NOT NULL CHECK (split IN ('train', 'val')),
            iteration INTEGER NOT NULL,
            source TEXT NOT NULL,
            labeled_at TEXT NOT NULL
        );
        CREATE TABLE boxes (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES labels(image_id),
            class_id INTEGER NOT NULL REFERENCES classes(id),
            x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
            attributes_json TEXT NOT NULL DEFAULT '[]'
        );
        CREATE INDEX boxes_image ON boxes(image_id);
        -- Earlier versions of an image's labels, kept when a later import corrects them.
        CREATE TABLE label_revisions (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id),
            boxes_json TEXT NOT NULL,
            source TEXT NOT NULL,
            replaced_at TEXT NOT NULL
        );
        CREATE TABLE iterations (
            n INTEGER PRIMARY KEY,
            status TEXT NOT NULL,                    -- running | done
            started_at TEXT NOT NULL,
            finished_at TEXT,
            method TEXT,
            score_spec TEXT,
            n_labeled INTEGER,
            n_train INTEGER,
            n_val INTEGER,
            map50 REAL,
            map REAL,
            checkpoint TEXT,
            metrics_json TEXT NOT NULL DEFAULT '{}',
            timings_json TEXT NOT NULL DEFAULT '{}',
            config_json TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE stages (
            iteration INTEGER NOT NULL,
            stage TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            seconds REAL,
            info_json TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (iteration, stage)
        );
        CREATE TABLE scores (
            iteration INTEGER NOT NULL,
            image_id INTEGER NOT NULL REFERENCES images(id),
            name TEXT NOT NULL,
            value REAL NOT NULL,
            PRIMARY KEY (iteration, name, image_id)
        );
        CREATE TABLE embedding_index (
            sha256 TEXT NOT NULL,
            embedder_key TEXT NOT NULL,
            shard TEXT NOT NULL,                     -- file name under artifacts/embeddings/<key>/
            row INTEGER NOT NULL,
            PRIMARY KEY (embedder_key, sha256)
        );
        """,
    ),
]


def now() -> str:
    """UTC timestamp in ISO 8601, second precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class ImageRow:
    """One registered image."""

    id: int
    path: str
    sha256: str
    width: int
    height: int
    state: str


@dataclass(frozen=True)
class Tag:
    """A named set of images, e.g. the batch a selection picked."""

    id: int
    name: str
    iteration: int
    method: str
    created_at: str
    export_dir: str | None
    options: Mapping[str, Any]
    size: int


@dataclass(frozen=True)
class TagMember:
    """One image of a tag with what chose it."""

    image_id: int
    path: str
    pick_order: int
    distance: float | None
    score: float | None


@dataclass(frozen=True)
class Iteration:
    """One turn of the loop (0 is init)."""

    n: int
    status: str
    started_at: str
    finished_at: str | None
    method: str | None
    score_spec: str | None
    n_labeled: int | None
    n_train: int | None
    n_val: int | None
    map50: float | None
    map: float | None
    checkpoint: str | None
    metrics: Mapping[str, Any]
    timings: Mapping[str, float]
    config: Mapping[str, Any]


class Store:
    """The SQLite store of one project. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(f"{self.path}: store not found; run `alloop init` to create a project")
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            self._depth = 0
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path}: the store is unreadable ({exc}); restore a backup from "
                f"{self.path.parent / 'artifacts' / 'backups'} (see `alloop doctor`)"
            ) from exc

    # -- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Store:
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
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.conn.execute("ROLLBACK")
            raise
        else:
            self._depth -= 1
            if self._depth == 0:
                self.conn.execute("COMMIT")

    def _migrate(self) -> None:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        applied = {r[0] for r in self.conn.execute("SELECT name FROM schema_migrations")}
        known = {name for name, _ in MIGRATIONS}
        if applied - known:
            raise StoreError(
                f"{self.path}: written by a newer alloop (migrations {sorted(applied - known)}); upgrade alloop"
            )
        for name, sql in MIGRATIONS:
            if name in applied:
                continue
            # executescript commits implicitly, so wrap the migration in its own BEGIN/COMMIT.
            self.conn.executescript(
                f"BEGIN IMMEDIATE;\n{sql}\nINSERT INTO schema_migrations VALUES ('{name}', '{now()}');\nCOMMIT;"
            )

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
        finally:
            dst.close()
        tmp.replace(target)

    # -- images -----------------------------------------------------------------------------

    def add_images(self, rows: Iterable[tuple[str, str, int, int]]) -> int:
        """Register (path, sha256, width, height) rows; already known paths are left alone."""
        added = 0
        with self.transaction() as c:
            ts = now()
            for path, sha, w, h in rows:
                cur = c.execute(
                    "INSERT OR IGNORE INTO images (path, sha256, width, height, added_at) VALUES (?, ?, ?, ?, ?)",
                    (path, sha, w, h, ts),
                )
                added += cur.rowcount
        return added

    def record_bad_images(self, rows: Iterable[tuple[str, str]]) -> None:
        """Remember images that could not be read, with why."""
        with self.transaction() as c:
            ts = now()
            c.executemany(
                "INSERT OR REPLACE INTO bad_images (path, reason, seen_at) VALUES (?, ?, ?)",
                [(p, r, ts) for p, r in rows],
            )

    def bad_images(self) -> list[tuple[str, str]]:
        """(path, reason) of every image that could not be read."""
        return [(r[0], r[1]) for r in self.conn.execute("SELECT path, reason FROM bad_images ORDER BY path")]

    def images(self) -> list[ImageRow]:
        """Every registered image, by id."""
        return [ImageRow(**dict(r)) for r in self.conn.execute(
            "SELECT id, path, sha256, width, height, state FROM images ORDER BY id"
        )]

    def image_by_path(self) -> dict[str, ImageRow]:
        """Registered images keyed by their relative path."""
        return {r.path: r for r in self.images()}

    def set_image_state(self, image_id: int, state: str, sha256: str | None = None) -> None:
        """Mark an image ok/missing/changed (and update its hash when given)."""
        with self.transaction() as c:
            if sha256 is None:
                c.execute("UPDATE images SET state = ? WHERE id = ?", (state, image_id))
            else:
                c.execute("UPDATE images SET state = ?, sha256 = ? WHERE id = ?", (state, sha256, image_id))

    # -- classes ----------------------------------------------------------------------------

    def classes(self) -> list[str]:
        """Class names in id order (the order the detector uses)."""
        return [r[0] for r in self.conn.execute("SELECT name FROM classes ORDER BY id")]

    def add_classes(self, names: Sequence[str]) -> None:
        """Append class names that are not known yet, keeping existing ids."""
        with self.transaction() as c:
            for name in names:
                c.execute("INSERT OR IGNORE INTO classes (name) VALUES (?)", (name,))

    # -- tags -------------------------------------------------------------------------------

    def create_tag(
        self,
        name: str,
        *,
        iteration: int,
        method: str,
        members: Sequence[tuple[int, float | None, float | None]],
        options: Mapping[str, Any] | None = None,
    ) -> int:
        """Create tag ``name`` with members (image_id, distance, score) in pick order."""
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO tags (name, iteration, method, created_at, options_json) VALUES (?, ?, ?, ?, ?)",
                (name, iteration, method, now(), json.dumps(dict(options or {}), default=str)),
            )
            tag_id = int(cur.lastrowid)
            c.executemany(
                "INSERT INTO tag_members (tag_id, image_id, pick_order, distance, score) VALUES (?, ?, ?, ?, ?)",
                [
                    (tag_id, int(i), order, _finite_or_none(d), _finite_or_none(s))
                    for order, (i, d, s) in enumerate(members)
                ],
            )
        return tag_id

    def delete_tag(self, name: str) -> None:
        """Remove a tag (its members go with it; images and labels stay)."""
        with self.transaction() as c:
            c.execute("DELETE FROM tags WHERE name = ?", (name,))

    def set_tag_export_dir(self, name: str, export_dir: str) -> None:
        """Remember where a tag's batch was exported."""
        with self.transaction() as c:
            c.execute("UPDATE tags SET export_dir = ? WHERE name = ?", (export_dir, name))

    def tags(self) -> list[Tag]:
        """Every tag, oldest first, with its size."""
        rows = self.conn.execute(
            """SELECT t.*, (SELECT COUNT(*) FROM tag_members m WHERE m.tag_id = t.id) AS size
               FROM tags t ORDER BY t.iteration, t.id"""
        )
        return [
            Tag(
                id=r["id"], name=r["name"], iteration=r["iteration"], method=r["method"],
                created_at=r["created_at"], export_dir=r["export_dir"],
                options=json.loads(r["options_json"]), size=r["size"],
            )
            for r in rows
        ]

    def tag(self, name: str) -> Tag | None:
        """The tag called ``name``, or None."""
        return next((t for t in self.tags() if t.name == name), None)

    def tag_members(self, name: str) -> list[TagMember]:
        """Members of tag ``name`` in pick order."""
        rows = self.conn.execute(
            """SELECT m.image_id, i.path, m.pick_order, m.distance, m.score
               FROM tag_members m JOIN tags t ON t.id = m.tag_id JOIN images i ON i.id = m.image_id
               WHERE t.name = ? ORDER BY m.pick_order""",
            (name,),
        )
        return [TagMember(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def queued_ids(self) -> set[int]:
        """Images picked by some selection tag and not labeled yet: waiting for the annotator."""
        return {
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT image_id FROM tag_members WHERE image_id NOT IN (SELECT image_id FROM labels)"
            )
        }

    # -- labels -----------------------------------------------------------------------------

    def labeled_ids(self, split: str | None = None) -> set[int]:
        """Ids of labeled images (optionally of one split)."""
        if split is None:
            return {r[0] for r in self.conn.execute("SELECT image_id FROM labels")}
        return {r[0] for r in self.conn.execute("SELECT image_id FROM labels WHERE split = ?", (split,))}

    def write_labels(
        self,
        annotations: Sequence[tuple[int, ImageAnnotation, str]],
        *,
        iteration: int,
        source: str,
    ) -> dict[str, int]:
        """Store labels given as (image_id, annotation, split); corrections keep the old version.

        Returns counts: new, corrected, unchanged. Class names must already be known.
        """
        class_ids = {r[1]: r[0] for r in self.conn.execute("SELECT id, name FROM classes")}
        counts = {"new": 0, "corrected": 0, "unchanged": 0}
        with self.transaction() as c:
            ts = now()
            for image_id, ann, split in annotations:
                existing = c.execute("SELECT split FROM labels WHERE image_id = ?", (image_id,)).fetchone()
                if existing is not None:
                    old = self._boxes_of(image_id)
                    if _same_boxes(old, ann.boxes):
                        counts["unchanged"] += 1
                        continue
                    c.execute(
                        "INSERT INTO label_revisions (image_id, boxes_json, source, replaced_at) VALUES (?, ?, ?, ?)",
                        (image_id, json.dumps([_box_json(b) for b in old]), source, ts),
                    )
                    c.execute("DELETE FROM boxes WHERE image_id = ?", (image_id,))
                    c.execute(
                        "UPDATE labels SET source = ?, labeled_at = ? WHERE image_id = ?", (source, ts, image_id)
                    )
                    counts["corrected"] += 1
                else:
                    c.execute(
                        "INSERT INTO labels (image_id, split, iteration, source, labeled_at) VALUES (?, ?, ?, ?, ?)",
                        (image_id, split, iteration, source, ts),
                    )
                    counts["new"] += 1
                c.executemany(
                    "INSERT INTO boxes (image_id, class_id, x0, y0, x1, y1, attributes_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (image_id, class_ids[b.label], b.x0, b.y0, b.x1, b.y1, json.dumps(list(b.attributes)))
                        for b in ann.boxes
                    ],
                )
        return counts

    def _boxes_of(self, image_id: int) -> list[Box]:
        rows = self.conn.execute(
            """SELECT b.x0, b.y0, b.x1, b.y1, c.name, b.attributes_json FROM boxes b
               JOIN classes c ON c.id = b.class_id WHERE b.image_id = ? ORDER BY b.id""",
            (image_id,),
        )
        return [_box(r) for r in rows]

    def annotations(
        self, split: str | None = None, *, available: bool = False
    ) -> list[tuple[ImageRow, ImageAnnotation, str]]:
        """Labeled images with their boxes and split, by image id (one query for all boxes).

        ``available``: only images whose file is there (state ``ok``): what training and evaluation can
        read. A labeled image set aside as missing keeps its labels and comes back when its file does.
        """
        images = {r.id: r for r in self.images()}
        where = " WHERE l.split = ?" if split else ""
        args: tuple = (split,) if split else ()
        boxes: dict[int, list[Box]] = {}
        for r in self.conn.execute(
            f"""SELECT b.image_id, b.x0, b.y0, b.x1, b.y1, c.name, b.attributes_json FROM boxes b
                JOIN classes c ON c.id = b.class_id JOIN labels l ON l.image_id = b.image_id{where}
                ORDER BY b.image_id, b.id""",  # noqa: S608 - a fixed clause; the value is a parameter
            args,
        ):
            boxes.setdefault(r[0], []).append(_box(r[1:]))
        out = []
        query = "SELECT image_id, split FROM labels l" + where + " ORDER BY image_id"
        for image_id, sp in self.conn.execute(query, args).fetchall():
            row = images[image_id]
            if available and row.state != "ok":
                continue
            out.append((row, ImageAnnotation(row.path, row.width, row.height, tuple(boxes.get(image_id, ()))), sp))
        return out

    def label_iterations(self) -> dict[int, int]:
        """image_id -> the iteration whose import labeled it."""
        return {r[0]: r[1] for r in self.conn.execute("SELECT image_id, iteration FROM labels")}

    def label_revisions(self) -> int:
        """How many earlier label versions are kept."""
        return int(self.conn.execute("SELECT COUNT(*) FROM label_revisions").fetchone()[0])

    # -- iterations and stages --------------------------------------------------------------

    def start_iteration(self, n: int, *, method: str | None, score_spec: str | None, config: Mapping) -> None:
        """Open iteration ``n`` (status running) unless it exists."""
        with self.transaction() as c:
            c.execute(
                """INSERT OR IGNORE INTO iterations (n, status, started_at, method, score_spec, config_json)
                   VALUES (?, 'running', ?, ?, ?, ?)""",
                (n, now(), method, score_spec, json.dumps(dict(config), default=str)),
            )

    def update_iteration(self, n: int, **fields: Any) -> None:
        """Set columns of iteration ``n``; mappings go to the *_json columns."""
        allowed = {
            "status", "finished_at", "method", "score_spec", "n_labeled", "n_train", "n_val",
            "map50", "map", "checkpoint", "metrics", "timings", "config",
        }
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown iteration fields {sorted(bad)}")
        sets, values = [], []
        for key, value in fields.items():
            if key in ("metrics", "timings", "config"):
                key, value = f"{key}_json", json.dumps(value, default=_json_default)
            sets.append(f"{key} = ?")
            values.append(value)
        with self.transaction() as c:
            c.execute(f"UPDATE iterations SET {', '.join(sets)} WHERE n = ?", (*values, n))

    def iterations(self) -> list[Iteration]:
        """Every iteration, in order."""
        out = []
        for r in self.conn.execute("SELECT * FROM iterations ORDER BY n"):
            out.append(
                Iteration(
                    n=r["n"], status=r["status"], started_at=r["started_at"], finished_at=r["finished_at"],
                    method=r["method"], score_spec=r["score_spec"], n_labeled=r["n_labeled"],
                    n_train=r["n_train"], n_val=r["n_val"], map50=r["map50"], map=r["map"],
                    checkpoint=r["checkpoint"], metrics=json.loads(r["metrics_json"]),
                    timings=json.loads(r["timings_json"]), config=json.loads(r["config_json"]),
                )
            )
        return out

    def iteration(self, n: int) -> Iteration | None:
        """Iteration ``n`` or None."""
        return next((it for it in self.iterations() if it.n == n), None)

    def delete_iteration(self, n: int) -> None:
        """Forget iteration ``n``'s stages, scores, tag and record — never its labels."""
        with self.transaction() as c:
            c.execute("DELETE FROM stages WHERE iteration = ?", (n,))
            c.execute("DELETE FROM scores WHERE iteration = ?", (n,))
            c.execute("DELETE FROM tags WHERE iteration = ? AND iteration > 0", (n,))
            c.execute("DELETE FROM iterations WHERE n = ?", (n,))

    def finish_stage(self, iteration: int, stage: str, *, seconds: float, info: Mapping | None = None) -> None:
        """Record that ``stage`` of ``iteration`` completed (call inside the stage's transaction)."""
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO stages (iteration, stage, finished_at, seconds, info_json) VALUES (?, ?, ?, ?, ?)",
                (iteration, stage, now(), seconds, json.dumps(dict(info or {}), default=_json_default)),
            )

    def stages(self, iteration: int) -> dict[str, dict[str, Any]]:
        """Finished stages of ``iteration``: name -> {finished_at, seconds, info}."""
        return {
            r[0]: {"finished_at": r[1], "seconds": r[2], "info": json.loads(r[3])}
            for r in self.conn.execute(
                "SELECT stage, finished_at, seconds, info_json FROM stages WHERE iteration = ?", (iteration,)
            )
        }

    # -- scores -----------------------------------------------------------------------------

    def write_scores(self, iteration: int, name: str, image_ids: Sequence[int], values: np.ndarray) -> None:
        """Store one named score for many images of ``iteration`` (replacing earlier values)."""
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO scores (iteration, image_id, name, value) VALUES (?, ?, ?, ?)",
                [(iteration, int(i), name, float(v)) for i, v in zip(image_ids, values)],
            )

    def scores(self, iteration: int, name: str) -> dict[int, float]:
        """image_id -> value of score ``name`` in ``iteration``."""
        return {
            r[0]: r[1]
            for r in self.conn.execute(
                "SELECT image_id, value FROM scores WHERE iteration = ? AND name = ?", (iteration, name)
            )
        }

    def score_names(self, iteration: int) -> list[str]:
        """Names of the scores stored for ``iteration``."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT name FROM scores WHERE iteration = ? ORDER BY name", (iteration,)
        )]

    # -- embeddings -------------------------------------------------------------------------

    def embedding_rows(self, key: str) -> dict[str, tuple[str, int]]:
        """sha256 -> (shard file, row) of every cached embedding under ``key``."""
        return {
            r[0]: (r[1], r[2])
            for r in self.conn.execute(
                "SELECT sha256, shard, row FROM embedding_index WHERE embedder_key = ?", (key,)
            )
        }

    def add_embedding_rows(self, key: str, shard: str, shas: Sequence[str]) -> None:
        """Index a new shard: its i-th row is the embedding of shas[i]."""
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO embedding_index (sha256, embedder_key, shard, row) VALUES (?, ?, ?, ?)",
                [(s, key, shard, i) for i, s in enumerate(shas)],
            )

    # -- summaries --------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Pool, labeled, train/val, queued, bad and box counts."""
        one = lambda q: int(self.conn.execute(q).fetchone()[0])  # noqa: E731
        return {
            "images": one("SELECT COUNT(*) FROM images"),
            "labeled": one("SELECT COUNT(*) FROM labels"),
            "train": one("SELECT COUNT(*) FROM labels WHERE split = 'train'"),
            "val": one("SELECT COUNT(*) FROM labels WHERE split = 'val'"),
            "queued": len(self.queued_ids()),
            "boxes": one("SELECT COUNT(*) FROM boxes"),
            "bad_images": one("SELECT COUNT(*) FROM bad_images"),
        }


def _box(r: Sequence[Any]) -> Box:
    """A stored box from its row ``(x0, y0, x1, y1, class name, attributes_json)``."""
    return Box(r[0], r[1], r[2], r[3], r[4], None, tuple(tuple(a) for a in json.loads(r[5])))


def _finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _box_json(b: Box) -> dict[str, Any]:
    return {"x0": b.x0, "y0": b.y0, "x1": b.x1, "y1": b.y1, "label": b.label, "attributes": list(b.attributes)}


def _same_boxes(a: Sequence[Box], b: Sequence[Box]) -> bool:
    key = lambda box: (box.label, round(box.x0, 3), round(box.y0, 3), round(box.x1, 3), round(box.y1, 3))  # noqa: E731
    return sorted(map(key, a)) == sorted(map(key, b))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
