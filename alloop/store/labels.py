"""The labels' tables: classes, labels (one row per labeled image), boxes and earlier label versions.

A labeled image with no boxes is a label too ("nothing to find here"). A correction keeps the old
boxes in ``label_revisions``; nothing here ever deletes a label.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from alloop.boxes import Box, ImageAnnotation
from alloop.store.connection import Database, id_list, now
from alloop.store.images import ImageRow

# One row per box, and one row with NULL box columns for a labeled image without boxes.
_LABELED = """
    SELECT i.id, i.path, i.sha256, i.width, i.height, i.state, l.split,
           b.x0, b.y0, b.x1, b.y1, c.name, b.attributes_json
    FROM labels l JOIN images i ON i.id = l.image_id
    LEFT JOIN boxes b ON b.image_id = l.image_id LEFT JOIN classes c ON c.id = b.class_id
"""
_LABELED_ALL = _LABELED + " ORDER BY l.image_id, b.id"
_LABELED_SPLIT = _LABELED + " WHERE l.split = ? ORDER BY l.image_id, b.id"


class LabelTables(Database):
    """``classes``, ``labels``, ``boxes`` and ``label_revisions``."""

    def classes(self) -> list[str]:
        """Class names in id order (the order the detector uses)."""
        return [r[0] for r in self.conn.execute("SELECT name FROM classes ORDER BY id")]

    def add_classes(self, names: Sequence[str]) -> None:
        """Append class names that are not known yet, keeping existing ids."""
        with self.transaction() as c:
            c.executemany("INSERT OR IGNORE INTO classes (name) VALUES (?)", ((name,) for name in names))

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

        Returns counts: new, corrected, unchanged. Class names must already be known. An image
        listed twice ends with its last annotation, as if written one after the other.
        """
        class_ids = {r[1]: r[0] for r in self.conn.execute("SELECT id, name FROM classes")}
        counts = {"new": 0, "corrected": 0, "unchanged": 0}
        with self.transaction() as c:
            ts = now()
            ids = id_list(image_id for image_id, _, _ in annotations)
            split_of = {r[0]: r[1] for r in c.execute(
                "SELECT image_id, split FROM labels WHERE image_id IN (SELECT value FROM json_each(?))", (ids,))}
            current = self._boxes_of(ids)
            revisions: list[tuple] = []
            corrected: dict[int, tuple] = {}
            new: list[tuple] = []
            box_rows: dict[int, list[tuple]] = {}
            for image_id, ann, split in annotations:
                if image_id in split_of:
                    old = current.get(image_id, [])
                    if _same_boxes(old, ann.boxes):
                        counts["unchanged"] += 1
                        continue
                    revisions.append((image_id, json.dumps([_box_json(b) for b in old]), source, ts))
                    corrected[image_id] = (source, ts, image_id)
                    counts["corrected"] += 1
                else:
                    new.append((image_id, split, iteration, source, ts))
                    split_of[image_id] = split
                    counts["new"] += 1
                current[image_id] = list(ann.boxes)
                box_rows[image_id] = [
                    (image_id, class_ids[b.label], b.x0, b.y0, b.x1, b.y1, json.dumps(list(b.attributes)))
                    for b in ann.boxes
                ]
            c.executemany(
                "INSERT INTO label_revisions (image_id, boxes_json, source, replaced_at) VALUES (?, ?, ?, ?)",
                revisions,
            )
            c.executemany("DELETE FROM boxes WHERE image_id = ?", ((i,) for i in corrected))
            c.executemany("UPDATE labels SET source = ?, labeled_at = ? WHERE image_id = ?", corrected.values())
            c.executemany(
                "INSERT INTO labels (image_id, split, iteration, source, labeled_at) VALUES (?, ?, ?, ?, ?)", new
            )
            c.executemany(
                "INSERT INTO boxes (image_id, class_id, x0, y0, x1, y1, attributes_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row for rows in box_rows.values() for row in rows),
            )
        return counts

    def _boxes_of(self, ids: str) -> dict[int, list[Box]]:
        """Stored boxes of the images in ``ids`` (an :func:`id_list`), in insertion order."""
        out: dict[int, list[Box]] = {}
        for r in self.conn.execute(
            """SELECT b.image_id, b.x0, b.y0, b.x1, b.y1, c.name, b.attributes_json FROM boxes b
               JOIN classes c ON c.id = b.class_id
               WHERE b.image_id IN (SELECT value FROM json_each(?)) ORDER BY b.image_id, b.id""",
            (ids,),
        ):
            out.setdefault(r[0], []).append(_box(r[1:]))
        return out

    def annotations(
        self, split: str | None = None, *, available: bool = False
    ) -> list[tuple[ImageRow, ImageAnnotation, str]]:
        """Labeled images with their boxes and split, by image id (one query for everything).

        ``available``: only images whose file is there (state ``ok``): what training and evaluation can
        read. A labeled image set aside as missing keeps its labels and comes back when its file does.
        """
        rows = self.conn.execute(_LABELED_ALL) if split is None else self.conn.execute(_LABELED_SPLIT, (split,))
        out: list[tuple[ImageRow, ImageAnnotation, str]] = []
        image: ImageRow | None = None
        boxes: list[Box] = []
        split_of_image = ""
        for r in rows:
            if image is None or r[0] != image.id:
                if image is not None:
                    out.append((image, ImageAnnotation(image.path, image.width, image.height, tuple(boxes)),
                                split_of_image))
                image, boxes, split_of_image = ImageRow(*r[:6]), [], r[6]
            if r[7] is not None:
                boxes.append(_box(r[7:]))
        if image is not None:
            out.append((image, ImageAnnotation(image.path, image.width, image.height, tuple(boxes)), split_of_image))
        return [x for x in out if x[0].state == "ok"] if available else out

    def label_iterations(self) -> dict[int, int]:
        """image_id -> the iteration whose import labeled it."""
        return {r[0]: r[1] for r in self.conn.execute("SELECT image_id, iteration FROM labels")}

    def label_revisions(self) -> int:
        """How many earlier label versions are kept."""
        return int(self.conn.execute("SELECT COUNT(*) FROM label_revisions").fetchone()[0])


def _box(r: Sequence[Any]) -> Box:
    """A stored box from its row ``(x0, y0, x1, y1, class name, attributes_json)``."""
    # Most boxes have no attributes: skip the JSON parser for them (a third of annotations()' time).
    attributes = () if r[5] == "[]" else tuple(tuple(a) for a in json.loads(r[5]))
    return Box(r[0], r[1], r[2], r[3], r[4], None, attributes)


def _box_json(b: Box) -> dict[str, Any]:
    return {"x0": b.x0, "y0": b.y0, "x1": b.x1, "y1": b.y1, "label": b.label, "attributes": list(b.attributes)}


def _same_boxes(a: Iterable[Box], b: Iterable[Box]) -> bool:
    """The same boxes in any order, coordinates to 1/1000 of a pixel."""
    def key(box: Box) -> tuple:
        return box.label, round(box.x0, 3), round(box.y0, 3), round(box.x1, 3), round(box.y1, 3)

    return sorted(map(key, a)) == sorted(map(key, b))
