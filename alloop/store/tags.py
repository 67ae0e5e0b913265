"""The tags' tables: named image sets (each selection's batch) and their members in pick order."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alloop.store.connection import Database, now

INIT_TAG = "initial-selection"


def tag_name(iteration: int) -> str:
    """The tag of the batch selected in ``iteration`` (here so `alloop status` needs no loop import)."""
    return INIT_TAG if iteration == 0 else f"iteration-{iteration}"


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


_TAGS = """SELECT t.id, t.name, t.iteration, t.method, t.created_at, t.export_dir, t.options_json,
                  (SELECT COUNT(*) FROM tag_members m WHERE m.tag_id = t.id) AS size
           FROM tags t"""
# Picked by some selection and not labeled yet: waiting for the annotator.
_QUEUED = "FROM tag_members m WHERE NOT EXISTS (SELECT 1 FROM labels l WHERE l.image_id = m.image_id)"


class TagTables(Database):
    """``tags`` and ``tag_members``."""

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
                (
                    (tag_id, int(i), order, _finite_or_none(d), _finite_or_none(s))
                    for order, (i, d, s) in enumerate(members)
                ),
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
        return [_tag(r) for r in self.conn.execute(_TAGS + " ORDER BY t.iteration, t.id")]

    def tag(self, name: str) -> Tag | None:
        """The tag called ``name``, or None."""
        row = self.conn.execute(_TAGS + " WHERE t.name = ?", (name,)).fetchone()
        return None if row is None else _tag(row)

    def tag_members(self, name: str) -> list[TagMember]:
        """Members of tag ``name`` in pick order."""
        rows = self.conn.execute(
            """SELECT m.image_id, i.path, m.pick_order, m.distance, m.score
               FROM tags t JOIN tag_members m ON m.tag_id = t.id JOIN images i ON i.id = m.image_id
               WHERE t.name = ? ORDER BY m.pick_order""",
            (name,),
        )
        return [TagMember(*r) for r in rows]

    def queued_ids(self) -> set[int]:
        """Images picked by some selection tag and not labeled yet: waiting for the annotator."""
        return {r[0] for r in self.conn.execute("SELECT DISTINCT m.image_id " + _QUEUED)}

    def queued_count(self) -> int:
        """How many images wait for the annotator (one indexed COUNT, no rows loaded)."""
        return int(self.conn.execute("SELECT COUNT(DISTINCT m.image_id) " + _QUEUED).fetchone()[0])


def _tag(r: Sequence[Any]) -> Tag:
    return Tag(id=r[0], name=r[1], iteration=r[2], method=r[3], created_at=r[4], export_dir=r[5],
               options=json.loads(r[6]), size=r[7])


def _finite_or_none(x: float | None) -> float | None:
    """NaN and infinities are stored as NULL, never as a poisoned float."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
