"""A step's score stage: uncertainty scores of the predicted pool, stored per image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alloop.loop.records import EvaluateInfo, ScoreInfo
from alloop.loop.runner import Record, Turn
from alloop.predictions import load_packed
from alloop.score import needs_flipped, score_images

# Scores computed every step besides the one selection uses, so the report and a later
# `alloop select --score` can compare them without re-running inference.
REPORT_SCORES = ("least_confidence:max", "entropy:max", "margin:max", "entropy:mean", "objectness_least_confidence:mean",
                 "proposal_entropy", "detection_entropy", "dcus")


def quality_of(evaluated: EvaluateInfo, classes: Sequence[str]) -> np.ndarray | None:
    """(C,) the held-out class qualities the evaluate stage measured, in class order; None without any."""
    if not evaluated.class_quality:
        return None
    return np.array([evaluated.class_quality.get(c, 0.0) for c in classes], np.float64)


def score_pool(turn: Turn, score: str, class_quality: np.ndarray | None, record: Record) -> ScoreInfo:
    """Compute ``score`` and the report's scores from the iteration's predictions (flip scores need flips).

    ``class_quality``: per class, from the held-out images (the ``dcus`` score weighs hard classes up).
    """
    store, it = turn.store, turn.iteration
    ids, dets, flipped = load_packed(turn.project.predictions_file(it))  # flat arrays, no object per image
    specs = list(dict.fromkeys([score, *REPORT_SCORES]))
    if flipped is None:
        specs = [s for s in specs if not needs_flipped([s])]
    values = (score_images(dets, specs, flipped=flipped, class_quality=class_quality) if len(ids)
              else {s: np.zeros(0) for s in specs})
    info = ScoreInfo(scores=tuple(specs), images=len(ids))
    with store.transaction():
        for spec, v in values.items():
            store.write_scores(it, spec, ids.tolist(), v)
        record(info)
    return info
