"""The trainer seam: a small protocol every detector plugin implements.

A trainer turns labeled examples into a checkpoint file and a checkpoint into per-box class
distributions on new images. Everything else (which images, which split, when) is the loop's job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from alloop.boxes import Detections, ImageAnnotation
from alloop.errors import ConfigError


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
    Config: ClassVar[type]  # a dataclass; built from alloop.toml's [trainer.<name>] table

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


def config_from_mapping(config_cls: type, values: Mapping[str, Any], *, where: str) -> Any:
    """Build a config dataclass from a TOML table; unknown keys are an error naming the known ones."""
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {', '.join(unknown)}; known options are {', '.join(sorted(known))}"
        )
    # TOML has no null, so "none" stands for None in alloop.toml and on the command line.
    values = {k: (None if isinstance(v, str) and v.strip().lower() == "none" else v) for k, v in values.items()}
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
