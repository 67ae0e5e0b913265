"""One epoch of training and one pass of inference, shaped like torchvision's references/detection engine.

:func:`train_one_epoch` and :func:`validate` are the two plain functions of torchvision's
``engine.py`` (``train_one_epoch``, ``evaluate``); :class:`TrainState` is what a run carries from
one epoch to the next and what ``last.pt`` stores so an interrupted run continues.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from alloop.boxes import Detections
from alloop.errors import TrainerError
from alloop.evaluate import Metrics, evaluate
from alloop.trainers.base import Example
from alloop.trainers.torchvision.config import TorchvisionConfig
from alloop.trainers.torchvision.data import PathImages, collate, hflip
from alloop.trainers.torchvision.detect import detect, hflip_boxes

WARMUP_START_FACTOR = 1e-3  # warmup ramps the lr linearly from lr * this to lr (torchvision's value)


@dataclass
class TrainState:
    """Where a run stands after an epoch; its fields are stored in ``last.pt`` under the same names."""

    epoch: int = 0  # epochs done
    steps: int = 0  # optimizer steps done
    best_metric: float | None = None  # best validation mAP@[.5:.95] so far
    best_epoch: int | None = None
    bad_epochs: int = 0  # epochs since the best one (early stopping)

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> TrainState:
        """The state stored in a ``last.pt``."""
        return cls(**{k: ckpt[k] for k in ("epoch", "steps", "best_metric", "best_epoch", "bad_epochs")})

    def as_dict(self) -> dict[str, Any]:
        """The fields, for ``last.pt``."""
        return asdict(self)

    def record(self, epoch: int, metric: float | None) -> bool:
        """Count ``epoch`` done with validation ``metric``; True if it is the best so far."""
        self.epoch = epoch
        improved = metric is not None and (self.best_metric is None or metric > self.best_metric)
        if improved:
            self.best_metric, self.best_epoch, self.bad_epochs = metric, epoch, 0
        elif metric is not None:
            self.bad_epochs += 1
        return improved


def make_optimizer(cfg: TorchvisionConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """SGD with momentum (torchvision's detection recipe) or AdamW."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.effective_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.effective_lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TorchvisionConfig, total_steps: int) -> Callable[[int], float]:
    """lr multiplier per step: linear warmup, then cosine to 0, two x0.1 steps, or constant."""
    warmup = min(cfg.warmup_steps, total_steps // 5)
    schedule = cfg.lr_schedule

    def factor(step: int) -> float:
        if step < warmup:
            return WARMUP_START_FACTOR + (1 - WARMUP_START_FACTOR) * step / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if schedule == "step":
            return 0.1 ** ((progress >= 2 / 3) + (progress >= 8 / 9))
        return 1.0

    return factor


def train_one_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    loader: torch.utils.data.DataLoader,
    cfg: TorchvisionConfig,
    state: TrainState,
    *,
    aug_rng: torch.Generator | None,
    bar: tqdm,
) -> dict[str, float]:
    """One pass over ``loader`` (or until ``cfg.max_steps``), counting ``state.steps``; the mean losses."""
    model.train()
    device = next(model.parameters()).device
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sums: dict[str, float] = {}
    n = 0
    for images, targets in loader:
        images, targets = _to_device(images, targets, device, aug_rng)
        with torch.autocast(device.type, enabled=scaler.is_enabled()):
            losses = model(images, targets)
            loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise TrainerError(
                f"training diverged at step {state.steps + 1} (loss {loss.item()}); lower lr (now "
                f"{cfg.effective_lr:g}) or set grad_clip_norm in alloop.toml [trainer.options]"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip_norm)
        scaler.step(optimizer)
        scaler.update()
        with warnings.catch_warnings():
            # With AMP the scaler skips steps whose gradients overflowed; the schedule goes on.
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            scheduler.step()
        state.steps += 1
        n += 1
        sums["loss"] = sums.get("loss", 0.0) + loss.item()
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + value.item()
        bar.update(1)
        bar.set_postfix(loss=f"{sums['loss'] / n:.3f}")
        if cfg.max_steps is not None and state.steps >= cfg.max_steps:
            break
    return {k: v / max(n, 1) for k, v in sums.items()}


def validate(
    model: torch.nn.Module, val: Sequence[Example], classes: Sequence[str], cfg: TorchvisionConfig,
    *, progress: bool,
) -> Metrics:
    """mAP of ``model`` on the held-out examples (:func:`alloop.evaluate.evaluate`, pycocotools)."""
    sizes = [(ex.annotation.width, ex.annotation.height) for ex in val]
    preds = predict_images(
        model, [ex.path for ex in val], sizes, cfg, score_threshold=cfg.score_threshold, hflip=False,
        progress=progress, desc="validate",
    )
    return evaluate([ex.annotation for ex in val], preds, classes, max_detections=cfg.detections_per_img)


def predict_images(
    model: torch.nn.Module,
    paths: Sequence[Path],
    sizes: Sequence[tuple[int, int]] | None,
    cfg: TorchvisionConfig,
    *,
    score_threshold: float,
    hflip: bool,
    progress: bool,
    desc: str,
) -> list[Detections]:
    """Detections per image (original pixels) with full class distributions and RPN objectness."""
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(
        PathImages(paths, sizes), batch_size=cfg.batch_size, shuffle=False, num_workers=num_workers(cfg, device),
        collate_fn=collate, pin_memory=device.type == "cuda",
    )
    was_training = model.training
    model.eval()
    out: list[Detections] = []
    try:
        bar = tqdm(total=len(paths), desc=desc, disable=None if progress else True, leave=False)
        with torch.inference_mode(), bar:
            for (batch,) in loader:
                images = [img.to(device, non_blocking=True).float().div_(255) for img in batch]
                if hflip:
                    images = [img.flip(-1) for img in images]
                with torch.autocast(device.type, enabled=cfg.amp and device.type == "cuda"):
                    results = detect(
                        model, images, score_threshold=score_threshold, nms_threshold=cfg.nms_threshold,
                        detections_per_img=cfg.detections_per_img,
                    )
                for img, res in zip(images, results):
                    boxes = hflip_boxes(res["boxes"], img.shape[-1]) if hflip else res["boxes"]
                    out.append(_detections(boxes, res, cfg.box_features))
                bar.update(len(batch))
    finally:
        model.train(was_training)
    return out


def _detections(boxes: torch.Tensor, res: dict[str, torch.Tensor], features: bool) -> Detections:
    def f32(t: torch.Tensor) -> np.ndarray:
        return t.float().cpu().numpy().astype(np.float32)

    return Detections(
        boxes=f32(boxes),
        labels=(res["labels"] - 1).cpu().numpy().astype(np.int64),
        scores=f32(res["scores"]),
        probs=f32(res["probs"]),
        objectness=f32(res["objectness"]),
        proposal_objectness=f32(res["proposal_objectness"]),
        proposal_foreground=f32(res["proposal_foreground"]),
        features=f32(res["features"]) if features and "features" in res else None,
    )


def num_workers(cfg: TorchvisionConfig, device: torch.device) -> int:
    """Image-loading processes: the config's, else 4 on CUDA and 0 on CPU."""
    if cfg.num_workers is not None:
        return cfg.num_workers
    return min(4, os.cpu_count() or 1) if device.type == "cuda" else 0


def derive_seed(seed: int, epoch: int, stream: int) -> int:
    """A seed for one random stream of one epoch."""
    return (seed * 1_000_003 + epoch * 7_919 + stream) % (2**63 - 1)


def jitter_sizes(base: int, factors: tuple[float, float]) -> tuple[int, ...]:
    """Training min-sizes for scale jitter (torchvision draws one per image)."""
    low, high = factors
    return tuple(sorted({max(16, round(base * f)) for f in np.linspace(low, high, 5)}))


def _to_device(
    images: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]], device: torch.device,
    aug_rng: torch.Generator | None,
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """uint8 images → float [0, 1] on ``device``; a random half mirrored when augmenting."""
    out_images, out_targets = [], []
    for image, target in zip(images, targets):
        if aug_rng is not None and torch.rand((), generator=aug_rng).item() < 0.5:
            image, target = hflip(image, target)
        out_images.append(image.to(device, non_blocking=True).float().div_(255))
        out_targets.append({k: v.to(device) for k, v in target.items()})
    return out_images, out_targets


__all__ = [
    "TrainState",
    "derive_seed",
    "jitter_sizes",
    "lr_factor",
    "make_optimizer",
    "num_workers",
    "predict_images",
    "train_one_epoch",
    "validate",
]
