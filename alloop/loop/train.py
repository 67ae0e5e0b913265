"""A step's train stage: fine-tune the project's trainer on every labeled training image."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alloop import images as imagelib
from alloop.boxes import ImageAnnotation
from alloop.config import ProjectConfig
from alloop.errors import ProjectError
from alloop.loop.records import TrainInfo
from alloop.loop.runner import Record, Turn
from alloop.project import Project
from alloop.store import ImageRow
from alloop.trainers import Example, config_from_mapping, load_trainer

log = logging.getLogger("alloop")


@dataclass(frozen=True)
class LabeledSet:
    """The labeled images a step trains and evaluates on (those whose file is missing wait, labels kept)."""

    train: tuple[tuple[ImageRow, ImageAnnotation], ...]
    val: tuple[tuple[ImageRow, ImageAnnotation], ...]

    @classmethod
    def of(cls, project: Project) -> LabeledSet:
        """The project's labeled images now, split into train and held-out."""
        store = project.store
        return cls(tuple((r, a) for r, a, _ in store.annotations("train", available=True)),
                   tuple((r, a) for r, a, _ in store.annotations("val", available=True)))


def build_trainer(project: Project, classes: Sequence[str], device: str) -> Any:
    """The project's configured trainer plugin, built for ``classes`` on ``device``."""
    cfg = project.config
    cls = load_trainer(cfg.trainer)
    config = config_from_mapping(cls.Config, cfg.trainer_options, where=f"alloop.toml [trainer.options] (trainer {cfg.trainer})")
    return cls(config, list(classes), device)


def with_box_features(config: ProjectConfig) -> ProjectConfig:
    """``config`` whose trainer records each predicted box's features, when the trainer can and the user
    has not said otherwise (``box_features`` under [trainer.options]); else ``config`` unchanged."""
    fields = getattr(load_trainer(config.trainer).Config, "__dataclass_fields__", {})
    if "box_features" not in fields or "box_features" in config.trainer_options:
        return config
    return config.with_changes(trainer_options={**config.trainer_options, "box_features": True})


def train_model(turn: Turn, trainer: Any, data: LabeledSet, record: Record) -> TrainInfo:
    """Train from the previous iteration's checkpoint (or the configured weights) and store the new one."""
    project, it, store = turn.project, turn.iteration, turn.store
    if not data.train:
        raise ProjectError(f"{project.root}: no labeled training images yet; import labels with --labels FILE")
    resume_from = previous_checkpoint(project, it)
    result = trainer.train(
        [_example(project, r, a) for r, a in data.train],
        [_example(project, r, a) for r, a in data.val],
        project.checkpoint_dir(it),
        resume_from=resume_from,
        seed=project.config.seed + it,
        progress=turn.progress,
    )
    checkpoint = project.relpath(result.checkpoint)
    info = TrainInfo(checkpoint=checkpoint, epochs=result.epochs, steps=result.steps, best_metric=result.best_metric,
                     history=tuple(result.history), resumed_from=str(resume_from) if resume_from else None)
    with store.transaction():
        store.update_iteration(it, checkpoint=checkpoint, n_train=len(data.train), n_val=len(data.val))
        record(info)
    return info


def previous_checkpoint(project: Project, iteration: int) -> Path | None:
    """The checkpoint of the latest earlier iteration that trained; None (with a warning) when its file is gone."""
    for prev in reversed(project.store.iterations()):
        if prev.n < iteration and prev.checkpoint:
            path = project.root / prev.checkpoint
            if path.exists():
                return path
            log.warning("checkpoint of iteration %d is missing (%s); training from the configured weights", prev.n, path)
            return None
    return None


def _example(project: Project, row: ImageRow, ann: ImageAnnotation) -> Example:
    return Example(path=imagelib.resolve_in_root(project.image_root, row.path), annotation=ann)
