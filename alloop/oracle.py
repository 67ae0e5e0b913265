"""A ground-truth annotator for demos and simulations: it "labels" a batch by copying known boxes.

It writes exactly what a labeling tool would hand back — a COCO JSON file with the batch's
images — so the loop under test takes the same import path a real user's labels take.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from alloop import atomic
from alloop.errors import LabelError


class GroundTruthOracle:
    """Answers labeling requests from a COCO ground-truth file whose file_names match the project's."""

    def __init__(self, ground_truth: Path) -> None:
        self.path = Path(ground_truth)
        try:
            coco = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise LabelError(f"{self.path}: cannot read the ground truth ({exc})") from exc
        self.categories = coco["categories"]
        self.images = {img["file_name"]: img for img in coco["images"]}
        self.annotations: dict[int, list[dict]] = {}
        for ann in coco["annotations"]:
            self.annotations.setdefault(ann["image_id"], []).append(ann)

    def label(self, file_names: Sequence[str], out: Path) -> Path:
        """Write the ground truth of ``file_names`` as a COCO file at ``out``."""
        missing = [f for f in file_names if f not in self.images]
        if missing:
            raise LabelError(f"{self.path}: no ground truth for {missing[:3]}; is it the right file?")
        images = [self.images[f] for f in file_names]
        ids = {img["id"] for img in images}
        anns = [a for i in sorted(ids) for a in self.annotations.get(i, [])]
        atomic.write_json(out, {"images": images, "annotations": anns, "categories": self.categories})
        return out
