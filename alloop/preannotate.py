"""Which of the model's boxes a labeler sees as pre-annotations: a score threshold and a cap per image.

One rule for every place boxes are offered to a labeler (batch exports, ``alloop labelstudio push``,
the ML backend behind ``alloop serve``): an early model sends many low-score boxes, and each one
costs a click to delete, so only boxes at or above ``threshold`` are kept, highest score first, at
most ``max_boxes`` of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alloop.boxes import Box, Detections, detections_to_boxes
from alloop.errors import ConfigError

DEFAULT_THRESHOLD = 0.5
DEFAULT_MAX_BOXES = 30


@dataclass(frozen=True)
class Preannotation:
    """Score threshold in [0, 1] and the most boxes per image (≥ 1)."""

    threshold: float = DEFAULT_THRESHOLD
    max_boxes: int = DEFAULT_MAX_BOXES

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not 0.0 <= float(self.threshold) <= 1.0:
            raise ConfigError(f"pre-annotation threshold must be a score in [0, 1], got {self.threshold!r}; "
                              "e.g. --preannotation-threshold 0.5")
        if isinstance(self.max_boxes, bool) or not isinstance(self.max_boxes, int) or self.max_boxes < 1:
            raise ConfigError(f"pre-annotation max boxes must be a whole number ≥ 1, got {self.max_boxes!r}; "
                              "e.g. --preannotation-max-boxes 30")


def preannotation_boxes(det: Detections, classes: Sequence[str], rule: Preannotation = Preannotation()) -> tuple[Box, ...]:
    """The boxes of ``det`` a labeler should see: score ≥ threshold, best first, at most max_boxes."""
    kept = det.above(rule.threshold)
    order = np.argsort(-kept.scores, kind="stable")[: rule.max_boxes]
    boxes = detections_to_boxes(kept, list(classes))
    return tuple(boxes[int(i)] for i in order)


__all__ = ["DEFAULT_MAX_BOXES", "DEFAULT_THRESHOLD", "Preannotation", "preannotation_boxes"]
