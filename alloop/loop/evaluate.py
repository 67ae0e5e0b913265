"""A step's evaluate stage: mAP of the new model on the held-out labeled images."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alloop.evaluate import evaluate
from alloop.loop.records import EvaluateInfo
from alloop.loop.runner import Record, Turn
from alloop.loop.train import LabeledSet
from alloop.score.difficulty import class_quality

log = logging.getLogger("alloop")


def evaluate_model(turn: Turn, trainer: Any, checkpoint: Path, data: LabeledSet, classes: Sequence[str],
                   record: Record) -> EvaluateInfo:
    """Predict the held-out images and store mAP@0.5, mAP@[.5:.95] and per-class AP on the iteration."""
    store, it, cfg = turn.store, turn.iteration, turn.project.config
    if not data.val:
        # With val_fraction = 0 (simulate measures on its own test split) that is the choice made,
        # not something to warn about (issue 19).
        (log.info if cfg.val_fraction == 0 else log.warning)(
            "no held-out labeled images (val_fraction=%s): mAP is not measured", cfg.val_fraction)
        info = EvaluateInfo(n_val=0)
        with store.transaction():
            store.update_iteration(it, n_labeled=len(store.labeled_ids()))
            record(info)
        return info
    preds = trainer.predict(checkpoint, [turn.project.image_root / r.path for r, _ in data.val],
                            progress=turn.progress)
    truth = [a for _, a in data.val]
    m = evaluate(truth, preds, classes)
    quality = class_quality(truth, preds, classes)
    info = EvaluateInfo(map50=m.map50, map=m.map, per_class_ap50=m.per_class_ap50, per_class_ap=m.per_class_ap,
                        n_val_images=m.n_images, n_val_boxes=m.n_boxes,
                        class_quality={c: round(float(q), 6) for c, q in zip(classes, quality)})
    with store.transaction():
        store.update_iteration(it, map50=_nan_none(m.map50), map=_nan_none(m.map), metrics=info.to_json(),
                               n_labeled=len(store.labeled_ids()), n_train=len(data.train), n_val=len(data.val))
        record(info)
    return info


def _nan_none(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
