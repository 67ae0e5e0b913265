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
from alloop.predictions import PackedDetections
from alloop.score.registry import ScoreInputs, image_score
from alloop.score.segments import offsets_of, reduce_images

FREQUENCY_PENALTY = 0.25
MIN_SCORE = 0.9


def object_count(
    det: Detections, *, confidence_threshold: float, frequency_penalty: float = FREQUENCY_PENALTY
) -> float:
    """Σ over classes present of 1 + (n_class − 1)·penalty, counting boxes with score ≥ threshold."""
    keep = np.asarray(det.scores) >= confidence_threshold
    _, per_class = np.unique(np.asarray(det.labels)[keep], return_counts=True)
    return float(np.sum(1.0 + (per_class - 1) * frequency_penalty))


def object_counts(
    detections: Sequence[Detections], *, confidence_threshold: float, frequency_penalty: float = FREQUENCY_PENALTY
) -> np.ndarray:
    """(n_images,) :func:`object_count` of every image at once, from the pool's flat box arrays."""
    packed = PackedDetections.of(detections)
    keep = np.asarray(packed.scores) >= confidence_threshold
    image, labels = packed.image_of_box()[keep], np.asarray(packed.labels, np.int64)[keep]
    if not len(image):
        return np.zeros(len(packed), np.float64)
    # One key per (image, class), sorted by image then class: each image's classes in np.unique's order.
    low = int(labels.min())
    span = int(labels.max()) - low + 1
    keys, per_class = np.unique(image * span + (labels - low), return_counts=True)
    values = 1.0 + (per_class - 1) * frequency_penalty
    return reduce_images(values, offsets_of(keys // span, len(packed)), lambda m: m.sum(axis=1))


def object_frequency(
    detections: Sequence[Detections],
    *,
    confidence_threshold: float = 0.5,
    frequency_penalty: float = FREQUENCY_PENALTY,
    min_score: float = MIN_SCORE,
) -> np.ndarray:
    """(n_images,) float32: object counts min-max scaled over the pool into [min_score, 1] (Lightly)."""
    counts = object_counts(detections, confidence_threshold=confidence_threshold,
                           frequency_penalty=frequency_penalty)
    if counts.size == 0:
        return np.zeros(0, np.float32)
    lo, hi = counts.min(), counts.max()
    if hi == lo:  # Lightly's np.interp over (lo, lo) returns the upper end for every image
        return np.ones(counts.size, np.float32)
    return (min_score + (1.0 - min_score) * (counts - lo) / (hi - lo)).astype(np.float32)


@image_score("object_frequency")
def _object_frequency_score(inputs: ScoreInputs) -> np.ndarray:
    return object_frequency(inputs.detections, confidence_threshold=inputs.confidence_threshold)


__all__ = ["FREQUENCY_PENALTY", "MIN_SCORE", "object_count", "object_counts", "object_frequency"]
