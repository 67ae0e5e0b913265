"""The report's per-class table: labeled and predicted boxes, held-out AP now and before."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


from alloop.boxes import Detections, ImageAnnotation
from alloop.loop.batch import PREDICTED_CLASS_THRESHOLD
from alloop.loop.records import EvaluateInfo
from alloop.predictions import PredictionsById
from alloop.store import ImageRow, Iteration


@dataclass(frozen=True)
class ClassRow:
    """Per class: labeled boxes, predicted boxes, held-out AP now and in the previous measurement."""

    name: str
    labeled: int
    predicted: int
    ap50: float | None
    ap: float | None
    previous_ap50: float | None


def class_rows(
    iteration: int,
    classes: Sequence[str],
    annotations: Sequence[tuple[ImageRow, ImageAnnotation, str]],
    labeled: set[int],
    detections: PredictionsById | Mapping[int, Detections],  # {} without predictions
    record: Iteration,
    previous: Iteration | None,
    notes: dict[str, str],
) -> tuple[ClassRow, ...]:
    """One row per known class as of ``iteration``: labeled boxes, confident predictions, held-out AP."""
    labeled_boxes = dict.fromkeys(classes, 0)
    for row, ann, _ in annotations:
        if row.id in labeled:
            for box in ann.boxes:
                labeled_boxes[box.label] = labeled_boxes.get(box.label, 0) + 1
    predicted = dict.fromkeys(labeled_boxes, 0)
    if detections and classes:
        counts = detections.class_counts(PREDICTED_CLASS_THRESHOLD, len(classes))  # the flat arrays, one pass
        predicted.update({c: int(v) for c, v in zip(classes, counts)})
    # An iteration's metrics are its evaluate stage's info.
    measured = EvaluateInfo.from_json(record.metrics)
    ap50 = measured.per_class_ap50 or {}
    ap = measured.per_class_ap or {}
    prev50 = (EvaluateInfo.from_json(previous.metrics).per_class_ap50 or {}) if previous else {}
    if not labeled_boxes:
        notes["classes"] = "No classes known yet: they come with the first label file."
    if not ap50:
        notes["per-class-ap"] = (
            "No per-class AP yet: there is no trained model at iteration 0."
            if iteration == 0
            else "No per-class AP: nothing was held out for evaluation in this iteration."
        )
    return tuple(
        ClassRow(name, labeled_boxes[name], predicted.get(name, 0), finite(number(ap50.get(name))),
                 finite(number(ap.get(name))), finite(number(prev50.get(name))))
        for name in labeled_boxes
    )


def finite(x: float | None) -> float | None:
    """``x`` as a float, None when missing or not finite (the report shows a dash)."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def number(x: Any) -> float | None:
    """``x`` as a float, None when it is not a number (stored metrics of older projects)."""
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None
