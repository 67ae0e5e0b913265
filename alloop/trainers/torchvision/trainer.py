"""The torchvision trainer behind alloop's Trainer protocol: ``train`` reads top to bottom.

A run builds the detector, continues ``last.pt`` of the same run or starts (from ``resume_from``
or the configured weights), then per epoch: :func:`~engine.train_one_epoch`, :func:`~engine.validate`
(mAP@[.5:.95] picks ``best.pt``), save, and stop early when the mAP stalls.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from alloop.boxes import Detections
from alloop.device import resolve_device
from alloop.errors import ConfigError, TrainerError
from alloop.trainers.base import Example, TrainResult
from alloop.trainers.options import config_from_mapping
from alloop.trainers.torchvision import checkpoints as ckpt
from alloop.trainers.torchvision.config import TorchvisionConfig
from alloop.trainers.torchvision.data import ExampleImages, collate, example_targets
from alloop.trainers.torchvision.engine import (
    TrainState,
    derive_seed,
    jitter_sizes,
    lr_factor,
    make_optimizer,
    num_workers,
    predict_images,
    train_one_epoch,
    validate,
)
from alloop.trainers.torchvision.models import build_detector

log = logging.getLogger(__name__)

WHERE = "alloop.toml [trainer.options] (trainer torchvision)"


class TorchvisionTrainer:
    """torchvision Faster R-CNN behind alloop's Trainer protocol."""

    name: ClassVar[str] = "torchvision"
    Config: ClassVar[type] = TorchvisionConfig

    def __init__(
        self, config: TorchvisionConfig | Mapping[str, Any], classes: Sequence[str], device: str = "auto"
    ) -> None:
        if isinstance(config, Mapping):
            config = config_from_mapping(TorchvisionConfig, config, where=WHERE)
        if not isinstance(config, TorchvisionConfig):
            raise ConfigError(f"torchvision trainer: expected a TorchvisionConfig, got {type(config).__name__}")
        classes = tuple(classes)
        if not classes or not all(isinstance(c, str) and c for c in classes):
            raise ConfigError(f"torchvision trainer: classes must be non-empty names, got {list(classes)}")
        if len(set(classes)) != len(classes):
            raise ConfigError(f"torchvision trainer: duplicate class names in {list(classes)}")
        self.config = config
        self.classes = classes
        self.device = resolve_device(device)

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
        """Fine-tune on ``train``, validating on ``val`` each epoch; continue an unfinished run in
        ``out_dir``. ``resume_from``: a previous checkpoint whose weights (not optimizer) start the run."""
        cfg = self.config
        train, val = list(train), list(val)
        if not train:
            raise TrainerError("no training images: label some images first")
        train_targets = example_targets(train, self.classes)
        example_targets(val, self.classes)  # same checks, before any work
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
        fingerprint = ckpt.fingerprint(cfg, self.classes, train, val, seed, resume_from)
        previous = ckpt.unfinished_state(last_path, fingerprint)
        if previous is not None and _finished(TrainState.from_checkpoint(previous), previous.get("stopped"), cfg):
            log.info("%s: this run is already complete (%s epochs)", out_dir, previous["epoch"])
            return _result(best_path, last_path, TrainState.from_checkpoint(previous), previous)

        torch.manual_seed(seed)
        model, extra = self._start_model(previous, resume_from, out_dir)
        extra.update(n_train=len(train), n_val=len(val), last=str(last_path))
        run = _Optimization.start(cfg, model, len(train), previous)
        loader_rng, aug_rng = torch.Generator(), torch.Generator()
        loader = self._loader(train, train_targets, loader_rng, model)
        base_size = model.transform.min_size[-1]
        train_sizes = jitter_sizes(base_size, cfg.scale_jitter) if cfg.augment else (base_size,)
        stopped: str | None = None
        for epoch in range(run.state.epoch + 1, cfg.epochs + 1):
            # Every random stream restarts from (seed, epoch): an interrupted run that continues
            # here draws exactly what the uninterrupted run would have drawn.
            torch.manual_seed(derive_seed(seed, epoch, 0))
            loader_rng.manual_seed(derive_seed(seed, epoch, 1))
            aug_rng.manual_seed(derive_seed(seed, epoch, 2))
            entry, metric = self._epoch(model, run, loader, val, epoch, train_sizes,
                                        aug_rng if cfg.augment else None, progress)
            run.history.append(entry)

            if run.state.record(epoch, metric) or run.state.best_metric is None:
                # Until a finite val mAP exists (no val set, or no boxes in it) the latest weights are "best".
                ckpt.save(best_path, ckpt.checkpoint(model, cfg, self.classes, epoch, metric))
            stopped = _stop_reason(run.state, cfg)
            last = ckpt.checkpoint(model, cfg, self.classes, epoch, metric)
            last.update(run.as_dict(), stopped=stopped, fingerprint=fingerprint, seed=seed)
            ckpt.save(last_path, last)
            if progress:
                tqdm.write(_epoch_line(epoch, cfg.epochs, entry))
            if stopped is not None:
                log.info("%s: stopped after epoch %d (%s)", out_dir, epoch, stopped)
                break

        result = _result(best_path, last_path, run.state, {"history": run.history, "stopped": stopped})
        return dataclasses.replace(result, extra={**extra, **result.extra})

    def _epoch(
        self,
        model: torch.nn.Module,
        run: _Optimization,
        loader: torch.utils.data.DataLoader,
        val: Sequence[Example],
        epoch: int,
        train_sizes: tuple[int, ...],
        aug_rng: torch.Generator | None,
        progress: bool,
    ) -> tuple[dict[str, float], float | None]:
        """Train one epoch (scale jitter on), validate; the history entry and the mAP@[.5:.95] (None: not measured)."""
        cfg = self.config
        started = time.perf_counter()
        base_sizes = model.transform.min_size
        model.transform.min_size = train_sizes
        bar = tqdm(total=len(loader), desc=f"train {epoch}/{cfg.epochs}", disable=None if progress else True,
                   leave=False)
        try:
            losses = train_one_epoch(model, run.optimizer, run.scheduler, run.scaler, loader, cfg, run.state,
                                     aug_rng=aug_rng, bar=bar)
        finally:
            bar.close()
            model.transform.min_size = base_sizes
        entry = {"epoch": float(epoch), "steps": float(run.state.steps), "lr": run.optimizer.param_groups[0]["lr"],
                 **losses}
        metric = None
        if val:
            metrics = validate(model, val, self.classes, cfg, progress=progress)
            entry.update(metrics.as_dict("val_"))
            metric = None if math.isnan(metrics.map) else metrics.map
        entry["time_s"] = time.perf_counter() - started
        return entry, metric

    def _start_model(
        self, previous: dict | None, resume_from: Path | None, out_dir: Path
    ) -> tuple[torch.nn.Module, dict[str, Any]]:
        """The detector on the device, with the weights the run starts from, and what to report of them."""
        cfg = self.config
        model = build_detector(
            cfg.model, len(self.classes) + 1, weights=cfg.weights, backbone_weights=cfg.backbone_weights,
            trainable_backbone_layers=cfg.trainable_backbone_layers,
            load_weights=previous is None and resume_from is None, **cfg.frcnn_kwargs(),
        )
        extra: dict[str, Any] = {}
        if previous is not None:
            model.load_state_dict(previous["model"])
            log.info("%s: continuing the unfinished run after epoch %d", out_dir, previous["epoch"])
            extra["continued_after_epoch"] = previous["epoch"]
        elif resume_from is not None:
            extra["resumed_from"] = str(resume_from)
            extra["new_box_predictor"] = ckpt.init_from_checkpoint(model, Path(resume_from), self.classes)
        return model.to(torch.device(self.device)), extra

    def _loader(
        self, train: Sequence[Example], targets: Sequence[Any], rng: torch.Generator, model: torch.nn.Module
    ) -> torch.utils.data.DataLoader:
        device = next(model.parameters()).device
        workers = num_workers(self.config, device)
        return torch.utils.data.DataLoader(
            ExampleImages(train, targets), batch_size=self.config.batch_size, shuffle=True, generator=rng,
            num_workers=workers, persistent_workers=workers > 0, collate_fn=collate,
            pin_memory=device.type == "cuda",
        )

    def predict(
        self,
        checkpoint: Path,
        images: Sequence[Path],
        *,
        score_threshold: float | None = None,
        hflip: bool = False,
        progress: bool = True,
    ) -> list[Detections]:
        """Detections per image (original pixels) with full class distributions and objectness.

        ``score_threshold`` None uses the config's (0.05 by default: low, so uncertain boxes are
        kept for scoring). ``hflip`` runs on mirrored images and maps the boxes back.
        """
        model, classes, _ = ckpt.load_checkpoint(Path(checkpoint), self.device)
        if tuple(classes) != self.classes:
            raise TrainerError(
                f"{checkpoint} was trained for classes {list(classes)}, not {list(self.classes)}; "
                "retrain, or predict with the project the checkpoint belongs to"
            )
        threshold = self.config.score_threshold if score_threshold is None else float(score_threshold)
        return predict_images(model, list(images), None, self.config, score_threshold=threshold, hflip=hflip,
                              progress=progress, desc="predict")


def _epoch_line(epoch: int, epochs: int, entry: Mapping[str, float]) -> str:
    """One line per epoch, every metric named as in the step summary (mAP@0.5, mAP@[.5:.95])."""
    line = f"epoch {epoch}/{epochs}: loss {entry.get('loss', float('nan')):.3f}"
    map50, map_ = entry.get("val_map50"), entry.get("val_map")
    if map_ is None or math.isnan(map_):
        return line + ", validation mAP not measured (no held-out boxes)"
    shown_50 = "n/a" if map50 is None or math.isnan(map50) else f"{map50:.3f}"
    return line + f", validation mAP@0.5 {shown_50}, mAP@[.5:.95] {map_:.3f}"


@dataclass
class _Optimization:
    """The optimizer, lr schedule and AMP scaler of a run, with its state and history: what last.pt keeps."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    state: TrainState
    history: list[dict[str, float]]

    @classmethod
    def start(
        cls, cfg: TorchvisionConfig, model: torch.nn.Module, n_train: int, previous: dict | None
    ) -> _Optimization:
        """A new optimization, or the one ``previous`` (an unfinished last.pt) stopped in."""
        optimizer = make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
        total_steps = cfg.epochs * math.ceil(n_train / cfg.batch_size)
        if cfg.max_steps is not None:
            total_steps = min(total_steps, cfg.max_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, total_steps))
        device = next(model.parameters()).device
        scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
        if previous is None:  # a best.pt left by another run is overwritten after the first epoch
            return cls(optimizer, scheduler, scaler, TrainState(), [])
        optimizer.load_state_dict(previous["optimizer"])
        scheduler.load_state_dict(previous["scheduler"])
        scaler.load_state_dict(previous["scaler"])
        return cls(optimizer, scheduler, scaler, TrainState.from_checkpoint(previous), list(previous["history"]))

    def as_dict(self) -> dict[str, Any]:
        """The fields last.pt stores (its format is unchanged since alloop-torchvision-1)."""
        return {
            **self.state.as_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
        }


def _stop_reason(state: TrainState, cfg: TorchvisionConfig) -> str | None:
    if cfg.max_steps is not None and state.steps >= cfg.max_steps:
        return "max_steps"
    if cfg.early_stopping_patience is not None and state.bad_epochs >= cfg.early_stopping_patience:
        return "early_stopping"
    return None


def _finished(state: TrainState, stopped: str | None, cfg: TorchvisionConfig) -> bool:
    if stopped == "early_stopping":
        return True
    if cfg.max_steps is not None and state.steps >= cfg.max_steps:
        return True
    return state.epoch >= cfg.epochs


def _result(best_path: Path, last_path: Path, state: TrainState, run: Mapping[str, Any]) -> TrainResult:
    return TrainResult(
        checkpoint=best_path if best_path.exists() else last_path,
        epochs=int(state.epoch),
        steps=int(state.steps),
        best_metric=state.best_metric,
        history=tuple(dict(h) for h in run["history"]),
        extra={"stopped": run.get("stopped"), "best_epoch": state.best_epoch, "last": str(last_path)},
    )


__all__ = ["TorchvisionTrainer"]
