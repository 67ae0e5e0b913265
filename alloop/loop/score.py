"""A step's score stage: uncertainty scores of the predicted pool, stored per image."""

from __future__ import annotations

import numpy as np

from alloop.loop.records import ScoreInfo
from alloop.loop.runner import Record, Turn
from alloop.predictions import load_predictions
from alloop.score import needs_flipped, score_images

# Scores computed every step besides the one selection uses, so the report and a later
# `alloop select --score` can compare them without re-running inference.
REPORT_SCORES = ("least_confidence:max", "entropy:max", "margin:max", "entropy:mean", "objectness_least_confidence:mean",
                 "proposal_entropy", "detection_entropy")


def score_pool(turn: Turn, score: str, record: Record) -> ScoreInfo:
    """Compute ``score`` and the report's scores from the iteration's predictions (flip scores need flips)."""
    store, it = turn.store, turn.iteration
    ids, dets, flipped = load_predictions(turn.project.predictions_file(it))
    specs = list(dict.fromkeys([score, *REPORT_SCORES]))
    if flipped is None:
        specs = [s for s in specs if not needs_flipped([s])]
    values = score_images(dets, specs, flipped=flipped) if len(ids) else {s: np.zeros(0) for s in specs}
    info = ScoreInfo(scores=tuple(specs), images=len(ids))
    with store.transaction():
        for spec, v in values.items():
            store.write_scores(it, spec, ids.tolist(), v)
        record(info)
    return info
