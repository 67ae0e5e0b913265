"""The trainer seam: a small protocol every detector plugin implements.

A trainer turns labeled examples into a checkpoint file and a checkpoint into per-box class
distributions on new images. Everything else (which images, which split, when) is the loop's job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from alloop.boxes import Detections, ImageAnnotation
from alloop.trainers.options import config_from_mapping


@dataclass(frozen=True)
class Example:
    """One labeled image for training or validation: its absolute path and its boxes."""

    path: Path
    annotation: ImageAnnotation


@dataclass(frozen=True)
class TrainResult:
    """What a training run left behind."""

    checkpoint: Path  # the checkpoint to predict with / resume from next iteration (the best one)
    epochs: int
    steps: int
    best_metric: float | None = None  # validation mAP@[.5:.95] of ``checkpoint`` when measured
    history: tuple[Mapping[str, float], ...] = ()  # one entry per epoch: loss, val metrics, lr...
    extra: Mapping[str, Any] = field(default_factory=dict)


# A progress callback a trainer may call: (stage, done, total, info).
Progress = Callable[[str, int, int, Mapping[str, float]], None]


@runtime_checkable
class Trainer(Protocol):
    """A detector plugin. Instances are built as ``TrainerClass(config, classes, device)``."""

    name: ClassVar[str]
    Config: ClassVar[type]  # a dataclass; built from alloop.toml's [trainer.options] table (alloop.trainers.options)

    def train(
        self,
        train: Sequence[Example],
        val: Sequence[Example],
        out_dir: Path,
        *,
        resume_from: Path | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> TrainResult:
        """Fine-tune on ``train`` (validating on ``val``), starting from ``resume_from`` when given."""
        ...

    def predict(
        self,
        checkpoint: Path,
        images: Sequence[Path],
        *,
        score_threshold: float = 0.05,
        hflip: bool = False,
        progress: bool = True,
    ) -> list[Detections]:
        """Detections per image in original-image pixels. ``hflip``: run on the mirrored image and
        map the boxes back to the original frame (for test-time-augmentation consistency)."""
        ...


__all__ = ["Example", "Progress", "TrainResult", "Trainer", "config_from_mapping"]
