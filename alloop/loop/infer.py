"""A step's infer stage: the new model's predictions on the unlabeled pool, saved for scores and exports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alloop.loop.records import InferInfo
from alloop.loop.runner import Record, Turn
from alloop.predictions import save_predictions
from alloop.score import needs_flipped
from alloop.store import ImageRow


def predict_pool(turn: Turn, trainer: Any, checkpoint: Path, rows: Sequence[ImageRow], num_classes: int,
                 score: str, record: Record) -> InferInfo:
    """Predict ``rows`` (and their mirror images when ``score`` compares flips) into the predictions file.

    Empty ``rows`` write an empty file: a simulation of a method that uses no scores skips the pool.
    """
    project, it = turn.project, turn.iteration
    paths = [project.image_root / r.path for r in rows]
    dets = trainer.predict(checkpoint, paths, progress=turn.progress) if paths else []
    flipped = None
    if needs_flipped([score]):
        flipped = trainer.predict(checkpoint, paths, hflip=True, progress=turn.progress) if paths else []
    save_predictions(project.predictions_file(it), [r.id for r in rows], dets, num_classes=num_classes,
                     flipped=flipped)
    info = InferInfo(images=len(paths), boxes=int(sum(len(d) for d in dets)),
                     file=project.relpath(project.predictions_file(it)))
    record(info)
    return info
