"""The detectors a project has trained: one per iteration, with its checkpoint and held-out mAP.

:func:`list_models` reads them from the store (the ``iterations`` table the loop fills in its
train and evaluate stages); :func:`choose_model` picks the one ``predict`` and ``export-model``
use: the iteration asked for, or the best by held-out mAP@0.5.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alloop.errors import ProjectError, TrainerError
from alloop.project import Project


@dataclass(frozen=True)
class ModelInfo:
    """One iteration's detector as the store records it."""

    iteration: int
    status: str  # running | done
    checkpoint: Path | None  # absolute path, None when the iteration trained nothing
    size_bytes: int | None  # None when the file is missing
    map50: float | None  # held-out mAP@0.5 (COCO, pycocotools), None when not measured
    map: float | None  # held-out mAP@[.5:.95]
    n_labeled: int | None
    n_train: int | None
    n_val: int | None

    @property
    def available(self) -> bool:
        """True when the checkpoint file is on disk."""
        return self.size_bytes is not None


@dataclass(frozen=True)
class ChosenModel:
    """The detector to use and why it was chosen (said on screen)."""

    model: ModelInfo
    reason: str
    best: int | None  # the iteration with the best held-out mAP@0.5, if any was measured


def list_models(project: Project) -> tuple[ModelInfo, ...]:
    """Every iteration after init, in order, with its checkpoint (or None) and metrics."""
    out = []
    for it in project.store.iterations():
        if it.n == 0:
            continue  # init trains nothing
        path = project.root / it.checkpoint if it.checkpoint else None
        size = path.stat().st_size if path is not None and path.is_file() else None
        out.append(ModelInfo(it.n, it.status, path, size, it.map50, it.map, it.n_labeled, it.n_train, it.n_val))
    return tuple(out)


def project_models(project_dir: Path) -> tuple[tuple[ModelInfo, ...], int | None]:
    """Every iteration's model and the best one, read without taking the project lock."""
    with Project.open(Path(project_dir), lock=False) as project:
        models = list_models(project)
    return models, best_iteration(models)


def best_iteration(models: Sequence[ModelInfo]) -> int | None:
    """The available model with the highest held-out mAP@0.5 (ties: higher mAP@[.5:.95], then later)."""
    measured = [m for m in models if m.available and m.map50 is not None]
    if not measured:
        return None
    return max(measured, key=lambda m: (m.map50, m.map if m.map is not None else -1.0, m.iteration)).iteration


def choose_model(project: Project, iteration: int | None = None) -> ChosenModel:
    """The model of ``iteration``, or by default the best by held-out mAP@0.5 (else the latest).

    ProjectError when there is no such iteration, it trained no checkpoint, or the file is gone.
    """
    models = list_models(project)
    best = best_iteration(models)
    root = project.root
    if not any(m.checkpoint is not None for m in models):
        raise ProjectError(
            f"{root}: no trained detector yet; label the first batch and run `alloop step {root} --labels FILE`"
        )
    if iteration is not None:
        model = next((m for m in models if m.iteration == iteration), None)
        if model is None:
            known = ", ".join(str(m.iteration) for m in models if m.checkpoint) or "none"
            raise ProjectError(f"{root}: no iteration {iteration}; iterations with a model: {known} (--iteration N)")
        reason = f"iteration {iteration} (asked for)"
    elif best is not None:
        model = next(m for m in models if m.iteration == best)
        reason = f"iteration {best}: the best held-out mAP@0.5 ({model.map50:.3f})"
    else:
        model = [m for m in models if m.checkpoint is not None][-1]
        reason = f"iteration {model.iteration}: the latest (no held-out mAP measured to choose by)"
    if model.checkpoint is None:
        with_ckpt = ", ".join(str(m.iteration) for m in models if m.checkpoint) or "none"
        raise ProjectError(
            f"{root}: iteration {model.iteration} has no checkpoint (its training did not finish); "
            f"choose one of {with_ckpt} with --iteration, or rerun `alloop step {root}` to finish it"
        )
    if not model.available:
        raise ProjectError(
            f"{model.checkpoint}: checkpoint of iteration {model.iteration} is missing; restore it, "
            "or choose another iteration with --iteration (see `alloop status --models`)"
        )
    if project.config.trainer == "torchvision" and not zipfile.is_zipfile(model.checkpoint):
        # torch.save writes a zip archive; anything else is a torn or foreign file, and torch's own
        # message for it is a page long.
        raise TrainerError(
            f"{model.checkpoint}: checkpoint of iteration {model.iteration} is corrupt (not a PyTorch archive: "
            "truncated or overwritten?); rerun training for it, or choose another iteration with --iteration"
        )
    return ChosenModel(model, reason, best)


__all__ = ["ChosenModel", "ModelInfo", "best_iteration", "choose_model", "list_models", "project_models"]
