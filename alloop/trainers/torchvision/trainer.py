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
        device = torch.device(self.device)
        model = build_detector(
            cfg.model, len(self.classes) + 1, weights=cfg.weights, backbone_weights=cfg.backbone_weights,
            trainable_backbone_layers=cfg.trainable_backbone_layers,
            load_weights=previous is None and resume_from is None, **cfg.frcnn_kwargs(),
        )
        extra: dict[str, Any] = {"n_train": len(train), "n_val": len(val), "last": str(last_path)}
        if previous is not None:
            model.load_state_dict(previous["model"])
            log.info("%s: continuing the unfinished run after epoch %d", out_dir, previous["epoch"])
            extra["continued_after_epoch"] = previous["epoch"]
        elif resume_from is not None:
            extra["resumed_from"] = str(resume_from)
            extra["new_box_predictor"] = ckpt.init_from_checkpoint(model, Path(resume_from), self.classes)
        model.to(device)

        optimizer = make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
        total_steps = cfg.epochs * math.ceil(len(train) / cfg.batch_size)
        if cfg.max_steps is not None:
            total_steps = min(total_steps, cfg.max_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, total_steps))
        scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
        state, history = TrainState(), []
        if previous is not None:  # else a best.pt left by another run is overwritten after the first epoch
            optimizer.load_state_dict(previous["optimizer"])
            scheduler.load_state_dict(previous["scheduler"])
            scaler.load_state_dict(previous["scaler"])
            state, history = TrainState.from_checkpoint(previous), list(previous["history"])

        loader_rng, aug_rng = torch.Generator(), torch.Generator()
        workers = num_workers(cfg, device)
        loader = torch.utils.data.DataLoader(
            ExampleImages(train, train_targets), batch_size=cfg.batch_size, shuffle=True, generator=loader_rng,
            num_workers=workers, persistent_workers=workers > 0, collate_fn=collate,
            pin_memory=device.type == "cuda",
        )
        base_size = model.transform.min_size[-1]
        train_sizes = jitter_sizes(base_size, cfg.scale_jitter) if cfg.augment else (base_size,)
        stopped: str | None = None
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            # Every random stream restarts from (seed, epoch): an interrupted run that continues
            # here draws exactly what the uninterrupted run would have drawn.
            torch.manual_seed(derive_seed(seed, epoch, 0))
            loader_rng.manual_seed(derive_seed(seed, epoch, 1))
            aug_rng.manual_seed(derive_seed(seed, epoch, 2))
            started = time.perf_counter()
            model.transform.min_size = train_sizes
            bar = tqdm(total=len(loader), desc=f"train {epoch}/{cfg.epochs}", disable=None if progress else True,
                       leave=False)
            try:
                losses = train_one_epoch(model, optimizer, scheduler, scaler, loader, cfg, state,
                                         aug_rng=aug_rng if cfg.augment else None, bar=bar)
            finally:
                bar.close()
                model.transform.min_size = (base_size,)
            entry = {"epoch": float(epoch), "steps": float(state.steps), "lr": optimizer.param_groups[0]["lr"],
                     **losses}
            metric = None
            if val:
                metrics = validate(model, val, self.classes, cfg, progress=progress)
                entry.update(metrics.as_dict("val_"))
                metric = None if math.isnan(metrics.map) else metrics.map
            entry["time_s"] = time.perf_counter() - started
            history.append(entry)

            if state.record(epoch, metric) or state.best_metric is None:
                # Until a finite val mAP exists (no val set, or no boxes in it) the latest weights are "best".
                ckpt.save(best_path, ckpt.checkpoint(model, cfg, self.classes, epoch, metric))
            if cfg.max_steps is not None and state.steps >= cfg.max_steps:
                stopped = "max_steps"
            elif cfg.early_stopping_patience is not None and state.bad_epochs >= cfg.early_stopping_patience:
                stopped = "early_stopping"
            last = ckpt.checkpoint(model, cfg, self.classes, epoch, metric)
            last.update(state.as_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        scaler=scaler.state_dict(), history=history, stopped=stopped, fingerprint=fingerprint,
                        seed=seed)
            ckpt.save(last_path, last)
            if progress:
                tqdm.write(_epoch_line(epoch, cfg.epochs, entry))
            if stopped is not None:
                log.info("%s: stopped after epoch %d (%s)", out_dir, epoch, stopped)
                break

        result = _result(best_path, last_path, state, {"history": history, "stopped": stopped})
        return dataclasses.replace(result, extra={**extra, **result.extra})

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
