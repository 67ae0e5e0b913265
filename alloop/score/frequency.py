"""Object frequency: prefer images with many objects of many classes (Lightly's ``object_frequency``).

Per image, among boxes with score ≥ ``confidence_threshold``: per predicted class the first box counts
1 and each further box ``frequency_penalty`` (0.25); the image's sum is min-max scaled over the pool
into [``min_score``, 1] = [0.9, 1] (lightly 1.1–1.4 ``_object_frequency``, defaults 0.25 and 0.9).

Lightly counts whatever boxes it is given; alloop's trainer keeps boxes down to a low threshold for the
uncertainty scores, so only confident boxes count here, or every image would look crowded.

An image with no confident box counts 0 objects and is scaled like any other: it gets 0.9 whenever some
image in the pool has a confident box. When every image has the same count (an all-empty pool
included) every image gets 1.0, as Lightly's ``np.interp`` over a zero-width range does; the ranking
is a tie either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alloop.boxes import Detections
from alloop.score.registry import ScoreInputs, image_score

FREQUENCY_PENALTY = 0.25
MIN_SCORE = 0.9


def object_count(
    det: Detections, *, confidence_threshold: float, frequency_penalty: float = FREQUENCY_PENALTY
) -> float:
    """Σ over classes present of 1 + (n_class − 1)·penalty, counting boxes with score ≥ threshold."""
    keep = np.asarray(det.scores) >= confidence_threshold
    _, per_class = np.unique(np.asarray(det.labels)[keep], return_counts=True)
    return float(np.sum(1.0 + (per_class - 1) * frequency_penalty))


def object_frequency(
    detections: Sequence[Detections],
    *,
    confidence_threshold: float = 0.5,
    frequency_penalty: float = FREQUENCY_PENALTY,
    min_score: float = MIN_SCORE,
) -> np.ndarray:
    """(n_images,) float32: object counts min-max scaled over the pool into [min_score, 1] (Lightly)."""
    counts = np.array(
        [
            object_count(d, confidence_threshold=confidence_threshold, frequency_penalty=frequency_penalty)
            for d in detections
        ],
        np.float64,
    )
    if counts.size == 0:
        return np.zeros(0, np.float32)
    lo, hi = counts.min(), counts.max()
    if hi == lo:  # Lightly's np.interp over (lo, lo) returns the upper end for every image
        return np.ones(counts.size, np.float32)
    return (min_score + (1.0 - min_score) * (counts - lo) / (hi - lo)).astype(np.float32)


@image_score("object_frequency")
def _object_frequency_score(inputs: ScoreInputs) -> np.ndarray:
    return object_frequency(inputs.detections, confidence_threshold=inputs.confidence_threshold)


__all__ = ["FREQUENCY_PENALTY", "MIN_SCORE", "object_count", "object_frequency"]
