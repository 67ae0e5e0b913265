"""A step's infer stage: the new model's predictions on the unlabeled pool, saved for scores and exports.

Resumable at image granularity: the pool is predicted in chunks of :data:`CHUNK_IMAGES`, each saved
atomically (with the model's identity) as soon as it is done, so a step stopped mid-inference (a
crash, kill -9, Ctrl-C) predicts only the images it had not finished when rerun. Once every image is
predicted the chunks are merged into the one predictions file the readers know and removed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from alloop.engine import predictions, project_engine, trainer_spec
from alloop.loop.records import InferInfo
from alloop.loop.runner import Record, Turn
from alloop.predictions import PredictionChunks, chunks_dir, model_identity
from alloop.score import needs_flipped
from alloop.store import ImageRow

log = logging.getLogger("alloop")

# Images per trainer call and per saved chunk: what a crash can cost at most. Each call loads the
# checkpoint once, so much smaller chunks would spend their time loading the model.
CHUNK_IMAGES = 4096


def predict_pool(turn: Turn, trainer: Any, checkpoint: Path, rows: Sequence[ImageRow], num_classes: int,
                 score: str, record: Record, *, chunk_images: int = CHUNK_IMAGES) -> InferInfo:
    """Predict ``rows`` (and their mirror images when ``score`` compares flips) into the predictions file,
    skipping the images this checkpoint already predicted in an earlier, stopped run.

    Empty ``rows`` write an empty file: a simulation of a method that uses no scores skips the pool.
    """
    project, it = turn.project, turn.iteration
    out = project.predictions_file(it)
    flip = needs_flipped([score])
    chunks = PredictionChunks(chunks_dir(out), model_identity(checkpoint) if rows else "", flip)
    done = chunks.done_ids()
    todo = [r for r in rows if r.id not in done]
    if len(todo) < len(rows):
        log.info("infer resumes: %d of %d images already predicted by this model", len(rows) - len(todo), len(rows))
    # The project's engine runs the trainer's predict: in this process, or on a Ray cluster (alloop/engine/).
    engine, spec = project_engine(project.config), trainer_spec(project.config, turn.store.classes())
    root = project.image_root  # a property that resolves the path: once, not per image
    with tqdm(total=len(rows), initial=len(rows) - len(todo), desc="infer", unit="img",
              disable=None if turn.progress else True) as bar:
        try:
            for start in range(0, len(todo), chunk_images):
                part = todo[start:start + chunk_images]
                paths = [root / r.path for r in part]
                dets = predictions(engine, trainer, spec, checkpoint, paths)
                flipped = predictions(engine, trainer, spec, checkpoint, paths, hflip=True) if flip else None
                chunks.write([r.id for r in part], dets, num_classes=num_classes, flipped=flipped)
                bar.update(len(part))
        finally:
            engine.close()
    boxes = chunks.merge([r.id for r in rows], out, num_classes=num_classes)
    info = InferInfo(images=len(rows), boxes=boxes, file=project.relpath(out))
    record(info)
    chunks.clear()  # after the stage is recorded: a crash before that merges again from the chunks
    return info
