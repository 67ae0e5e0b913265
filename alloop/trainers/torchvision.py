"""The built-in trainer: torchvision Faster R-CNN, fine-tuned on the labeled images.

``train`` fine-tunes (SGD or AdamW, linear warmup then cosine/step decay, optional AMP on CUDA,
hflip + scale-jitter augmentation), measures validation mAP after every epoch with :mod:`alloop.evaluate`,
keeps ``best.pt`` and ``last.pt`` in ``out_dir`` and stops early when the mAP stalls. A run that
was interrupted continues from ``last.pt`` when ``train`` is called again with the same data and
settings. ``predict`` returns, per box, the full softmax over background + classes and the RPN
objectness of its proposal: what alloop's uncertainty scores need.

Checkpoints (``best.pt``, ``last.pt``) are ``torch.save`` dicts with ``format`` =
``"alloop-torchvision-1"``, ``model`` (state dict), ``config`` (``dataclasses.asdict`` of
:class:`TorchvisionConfig`), ``classes``, ``epoch`` and ``metric`` (validation mAP@[.5:.95] or
None); ``last.pt`` adds the optimizer, scheduler and loop state. :func:`load_detector` rebuilds
the model from one without reading any other file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from alloop.boxes import Detections
from alloop.errors import ConfigError, TrainerError
from alloop.evaluate import evaluate
from alloop.trainers.base import Example, TrainResult, config_from_mapping
from alloop.trainers.detection_data import ExampleImages, PathImages, collate, example_targets, hflip
from alloop.trainers.detection_model import (
    MODELS,
    build_detector,
    detect,
    hflip_boxes,
    is_weights_file,
    load_detector_state,
    weights_enum_member,
)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "alloop-torchvision-1"
OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("cosine", "step", "constant")
DEFAULT_LR = {"sgd": 0.01, "adamw": 1e-4}
WARMUP_START_FACTOR = 1e-3  # warmup ramps the lr linearly from lr * this to lr (torchvision's value)
# Config fields that do not change what a run computes, so a run may resume under new values.
_RUNTIME_FIELDS = ("epochs", "max_steps", "early_stopping_patience", "num_workers", "amp")


@dataclass(frozen=True)
class TorchvisionConfig:
    """Settings of the torchvision Faster R-CNN trainer (``[trainer.torchvision]`` in alloop.toml)."""

    # Detector architecture: one of MODELS (fasterrcnn_mobilenet_v3_large_320_fpn,
    # fasterrcnn_mobilenet_v3_large_fpn, fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2,
    # fasterrcnn_mobilenet_v2_fpn — MobileNetV2 + FPN, for the offline ImageNet MobileNetV2 file).
    model: str = "fasterrcnn_mobilenet_v3_large_320_fpn"
    # Whole-detector starting weights: None (or "none"), a torchvision weights name of the model
    # ("DEFAULT", "COCO_V1"; read from the torch hub cache, never downloaded) or a local .pth file
    # (a torchvision or alloop detector checkpoint; its box predictor is replaced for the classes).
    weights: str | None = None
    # Backbone-only starting weights (ignored parts: the classifier head): None, a torchvision
    # classification weights name ("DEFAULT", "IMAGENET1K_V1") or a local .pth classification
    # state dict, plain or {"arch": "<torchvision arch>", "state_dict": ...}. Not with ``weights``.
    backbone_weights: str | None = None
    # Backbone stages left trainable on top of pretrained weights (None: 3, torchvision's default;
    # 0 freezes the backbone). From scratch every stage trains.
    trainable_backbone_layers: int | None = None
    # Shorter image side / cap on the longer side fed to the network (None: the model's default,
    # 320/640 for the mobile models, 800/1333 for the others).
    min_size: int | None = None
    max_size: int | None = None
    epochs: int = 20  # passes over the training images (fewer if early stopping or max_steps stop it)
    batch_size: int = 4  # images per step, also for inference
    optimizer: str = "sgd"  # "sgd" (momentum, the torchvision recipe) or "adamw"
    lr: float | None = None  # peak learning rate (None: 0.01 for sgd at batch 4, 1e-4 for adamw)
    momentum: float = 0.9  # sgd only
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"  # after warmup: "cosine" to 0, "step" (x0.1 at 2/3 and 8/9), "constant"
    warmup_steps: int = 100  # linear warmup steps (at most a fifth of the run)
    grad_clip_norm: float | None = 10.0  # clip the gradient norm (None: no clipping)
    augment: bool = True  # random horizontal flip and scale jitter while training
    scale_jitter: tuple[float, float] = (0.8, 1.2)  # min_size is scaled by a factor in this range
    score_threshold: float = 0.05  # predict/validation keep boxes scoring above this (low: for scoring)
    nms_threshold: float = 0.5  # IoU of class-aware NMS on the final boxes
    detections_per_img: int = 100  # at most this many boxes per image
    early_stopping_patience: int | None = 5  # stop after this many epochs without a better val mAP
    # Mixed precision, CUDA only. Off by default: on an H100 it gave the mobile models no speed-up
    # at 320 px and cost 5-14 s in the first epoch (cuDNN choosing fp16 kernels per image size);
    # the resnet50 models trained ~15% faster with it.
    amp: bool = False
    # Image-loading processes (None: 4 on CUDA, where decoding would starve the GPU; 0 on CPU,
    # where the model dominates and loading in the training process is enough).
    num_workers: int | None = None
    # Speed knobs (torchvision's defaults are 2000/2000/512; these train ~3x faster on CPU).
    rpn_pre_nms_top_n_train: int = 500
    rpn_post_nms_top_n_train: int = 500
    box_batch_size_per_image: int = 128
    # RPN proposals kept at inference (None: the model's default, 150 for the mobile models).
    rpn_pre_nms_top_n_test: int | None = None
    rpn_post_nms_top_n_test: int | None = None
    max_steps: int | None = None  # stop after this many optimizer steps in all (tests, demos)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"unknown model '{self.model}'; available models: {', '.join(MODELS)}")
        spec = MODELS[self.model]
        for name in ("weights", "backbone_weights"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a name, a file path or none, got {value!r}")
            if value is not None and value.strip().lower() in ("", "none", "null"):
                value = None
            object.__setattr__(self, name, value)
        if self.weights is not None and not is_weights_file(self.weights):
            if spec.detector_weights is None:
                raise ConfigError(
                    f"weights = '{self.weights}': {self.model} has no torchvision detector weights; "
                    "use backbone_weights, a local .pth file, or none"
                )
            weights_enum_member(spec.detector_weights, self.weights, option="weights")
        if self.backbone_weights is not None and not is_weights_file(self.backbone_weights):
            weights_enum_member(spec.backbone_weights, self.backbone_weights, option="backbone_weights")
        if self.weights is not None and self.backbone_weights is not None:
            raise ConfigError("set either weights (whole detector) or backbone_weights, not both")
        if isinstance(self.scale_jitter, list):
            object.__setattr__(self, "scale_jitter", tuple(self.scale_jitter))

        _check_int(self, "trainable_backbone_layers", 0, spec.max_trainable_layers, optional=True)
        for name in ("min_size", "max_size", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test",
                     "max_steps"):
            _check_int(self, name, 1, optional=True)
        for name in ("epochs", "batch_size", "detections_per_img", "rpn_pre_nms_top_n_train",
                     "rpn_post_nms_top_n_train", "box_batch_size_per_image"):
            _check_int(self, name, 1)
        _check_int(self, "warmup_steps", 0)
        _check_int(self, "num_workers", 0, optional=True)
        _check_int(self, "early_stopping_patience", 1, optional=True)
        if self.min_size is not None and self.max_size is not None and self.max_size < self.min_size:
            raise ConfigError(f"max_size ({self.max_size}) must be at least min_size ({self.min_size})")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer '{self.optimizer}'; use one of {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"unknown lr_schedule '{self.lr_schedule}'; use one of {', '.join(LR_SCHEDULES)}"
            )
        _check_float(self, "lr", 0.0, math.inf, optional=True, open_low=True)
        _check_float(self, "momentum", 0.0, 1.0, open_high=True)
        _check_float(self, "weight_decay", 0.0, math.inf)
        _check_float(self, "grad_clip_norm", 0.0, math.inf, optional=True, open_low=True)
        _check_float(self, "score_threshold", 0.0, 1.0, open_high=True)
        _check_float(self, "nms_threshold", 0.0, 1.0, open_low=True)
        jitter = self.scale_jitter
        if (
            not isinstance(jitter, tuple)
            or len(jitter) != 2
            or not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in jitter)
            or not 0 < jitter[0] <= jitter[1]
        ):
            raise ConfigError(
                f"scale_jitter must be two factors 0 < low <= high, e.g. [0.8, 1.2]; got {jitter!r}"
            )
        for name in ("augment", "amp"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def effective_lr(self) -> float:
        """The peak learning rate: ``lr``, or the optimizer's default."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]


def _check_int(cfg: Any, name: str, low: int, high: int | None = None, *, optional: bool = False) -> None:
    value = getattr(cfg, name)
    if value is None and optional:
        return
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if not is_int or value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be an integer {bound}{' or none' if optional else ''}, got {value!r}")


def _check_float(
    cfg: Any, name: str, low: float, high: float, *, optional: bool = False,
    open_low: bool = False, open_high: bool = False,
) -> None:
    value = getattr(cfg, name)
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if open_low else value >= low) and (value < high if open_high else value <= high)
    if not ok:
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        or_none = " or none" if optional else ""
        raise ConfigError(f"{name} must be a number in {interval}{or_none}, got {value!r}")


def resolve_device(name: str) -> str:
    """"auto" → "cuda" when available else "cpu"; "cpu", "cuda", "cuda:N" are checked."""
    name = str(name).strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise TrainerError(
                f"device '{name}' was asked for but CUDA is not available; use --device cpu or auto"
            )
        if ":" in name and int(name[5:]) >= torch.cuda.device_count():
            raise TrainerError(
                f"device '{name}' does not exist: {torch.cuda.device_count()} CUDA device(s); use cuda:0..."
            )
        return name
    raise ConfigError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N")


def load_detector(checkpoint: Path, device: str = "cpu") -> torch.nn.Module:
    """The FasterRCNN of an alloop checkpoint, in eval mode on ``device``; reads no other file."""
    model, _, _ = _load_checkpoint(Path(checkpoint), resolve_device(device))
    return model


class TorchvisionTrainer:
    """torchvision Faster R-CNN behind alloop's Trainer protocol."""

    name: ClassVar[str] = "torchvision"
    Config: ClassVar[type] = TorchvisionConfig

    def __init__(
        self, config: TorchvisionConfig | Mapping[str, Any], classes: Sequence[str], device: str = "auto"
    ) -> None:
        if isinstance(config, Mapping):
            config = config_from_mapping(TorchvisionConfig, config, where="[trainer.torchvision]")
        if not isinstance(config, TorchvisionConfig):
            raise ConfigError(
                f"torchvision trainer: expected a TorchvisionConfig, got {type(config).__name__}"
            )
        classes = tuple(classes)
        if not classes or not all(isinstance(c, str) and c for c in classes):
            raise ConfigError(f"torchvision trainer: classes must be non-empty names, got {list(classes)}")
        if len(set(classes)) != len(classes):
            raise ConfigError(f"torchvision trainer: duplicate class names in {list(classes)}")
        self.config = config
        self.classes = classes
        self.device = resolve_device(device)

    # -- training ------------------------------------------------------------------------------

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
        fingerprint = _fingerprint(cfg, self.classes, train, val, seed, resume_from)

        state = self._unfinished_state(last_path, fingerprint)
        if state is not None and _finished(state, cfg):
            log.info("%s: this run is already complete (%s epochs)", out_dir, state["epoch"])
            return _result(best_path, last_path, state)

        torch.manual_seed(seed)
        device = torch.device(self.device)
        model = build_detector(
            cfg.model, len(self.classes) + 1, weights=cfg.weights, backbone_weights=cfg.backbone_weights,
            trainable_backbone_layers=cfg.trainable_backbone_layers,
            load_weights=state is None and resume_from is None, **_frcnn_kwargs(cfg),
        )
        extra: dict[str, Any] = {"n_train": len(train), "n_val": len(val), "last": str(last_path)}
        if state is not None:
            model.load_state_dict(state["model"])
            log.info("%s: continuing the unfinished run after epoch %d", out_dir, state["epoch"])
            extra["continued_after_epoch"] = state["epoch"]
        elif resume_from is not None:
            extra["resumed_from"] = str(resume_from)
            extra["new_box_predictor"] = _init_from_checkpoint(model, Path(resume_from), self.classes)
        model.to(device)

        optimizer = _optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        total_steps = cfg.epochs * steps_per_epoch
        if cfg.max_steps is not None:
            total_steps = min(total_steps, cfg.max_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg, total_steps))
        use_amp = cfg.amp and device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            loop = {k: state[k] for k in ("epoch", "steps", "best_metric", "best_epoch", "bad_epochs")}
            history = list(state["history"])
        else:  # a best.pt left by another run is overwritten after the first epoch
            loop = {"epoch": 0, "steps": 0, "best_metric": None, "best_epoch": None, "bad_epochs": 0}
            history = []

        loader_rng = torch.Generator()
        aug_rng = torch.Generator()
        workers = _num_workers(cfg, device)
        loader = torch.utils.data.DataLoader(
            ExampleImages(train, train_targets), batch_size=cfg.batch_size, shuffle=True,
            generator=loader_rng,
            num_workers=workers, persistent_workers=workers > 0, collate_fn=collate,
            pin_memory=device.type == "cuda",
        )
        base_size = model.transform.min_size[-1]
        train_sizes = _jitter_sizes(base_size, cfg.scale_jitter) if cfg.augment else (base_size,)
        stopped: str | None = None
        for epoch in range(loop["epoch"] + 1, cfg.epochs + 1):
            # Every random stream restarts from (seed, epoch): an interrupted run that continues
            # here draws exactly what the uninterrupted run would have drawn.
            torch.manual_seed(_derive(seed, epoch, 0))
            loader_rng.manual_seed(_derive(seed, epoch, 1))
            aug_rng.manual_seed(_derive(seed, epoch, 2))
            started = time.perf_counter()
            model.transform.min_size = train_sizes
            bar = tqdm(
                total=len(loader), desc=f"train {epoch}/{cfg.epochs}", disable=None if progress else True, leave=False
            )
            try:
                means, stopped = _train_one_epoch(
                    model, loader, optimizer, scheduler, scaler, loop, cfg, device,
                    aug_rng if cfg.augment else None, bar,
                )
            finally:
                bar.close()
                model.transform.min_size = (base_size,)

            entry = {
                "epoch": float(epoch), "steps": float(loop["steps"]), "lr": optimizer.param_groups[0]["lr"]
            }
            entry.update(means)
            metric = None
            if val:
                metrics = self._validate(model, val, progress)
                entry.update(metrics.as_dict("val_"))
                metric = None if math.isnan(metrics.map) else metrics.map
            entry["time_s"] = time.perf_counter() - started
            history.append(entry)
            loop["epoch"] = epoch

            improved = metric is not None and (loop["best_metric"] is None or metric > loop["best_metric"])
            if improved:
                loop["best_metric"], loop["best_epoch"], loop["bad_epochs"] = metric, epoch, 0
            elif metric is not None:
                loop["bad_epochs"] += 1
            if improved or loop["best_metric"] is None:
                # Until a finite val mAP exists (no val set, or no boxes in it) the latest weights are "best".
                _save(best_path, _checkpoint(model, cfg, self.classes, epoch, metric))
            if (
                stopped is None
                and cfg.early_stopping_patience is not None
                and loop["bad_epochs"] >= cfg.early_stopping_patience
            ):
                stopped = "early_stopping"
            last = _checkpoint(model, cfg, self.classes, epoch, metric)
            last.update(
                loop,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict(),
                history=history,
                stopped=stopped,
                fingerprint=fingerprint,
                seed=seed,
            )
            _save(last_path, last)
            if progress:
                shown = f"val mAP {metric:.3f}" if metric is not None else "no val mAP"
                tqdm.write(f"epoch {epoch}/{cfg.epochs}: loss {entry.get('loss', float('nan')):.3f}, {shown}")
            if stopped is not None:
                log.info("%s: stopped after epoch %d (%s)", out_dir, epoch, stopped)
                break

        final = {**loop, "history": history, "stopped": stopped}
        result = _result(best_path, last_path, final)
        return dataclasses.replace(result, extra={**extra, **result.extra})

    def _unfinished_state(self, last_path: Path, fingerprint: str) -> dict | None:
        """last.pt of this same run (same data, settings, seed), or None to start afresh."""
        if not last_path.is_file():
            return None
        try:
            state = torch.load(last_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a torn or foreign file: start over rather than fail
            log.warning("%s is unreadable (%s); starting a new run", last_path, exc)
            return None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            log.warning("%s is not an alloop torchvision checkpoint; starting a new run", last_path)
            return None
        if state.get("fingerprint") != fingerprint:
            log.info("%s is from a run with other data or settings; starting a new run", last_path)
            return None
        return state

    def _validate(self, model: torch.nn.Module, val: Sequence[Example], progress: bool):
        sizes = [(ex.annotation.width, ex.annotation.height) for ex in val]
        preds = self._predict_model(
            model, [ex.path for ex in val], sizes, score_threshold=self.config.score_threshold, hflip=False,
            progress=progress, desc="validate",
        )
        return evaluate([ex.annotation for ex in val], preds, self.classes,
                        max_detections=self.config.detections_per_img)

    # -- inference -----------------------------------------------------------------------------

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
        model, classes, _ = _load_checkpoint(Path(checkpoint), self.device)
        if tuple(classes) != self.classes:
            raise TrainerError(
                f"{checkpoint} was trained for classes {list(classes)}, not {list(self.classes)}; "
                "retrain, or predict with the project the checkpoint belongs to"
            )
        threshold = self.config.score_threshold if score_threshold is None else float(score_threshold)
        return self._predict_model(model, list(images), None, score_threshold=threshold, hflip=hflip,
                                   progress=progress, desc="predict")

    def _predict_model(
        self,
        model: torch.nn.Module,
        paths: Sequence[Path],
        sizes: Sequence[tuple[int, int]] | None,
        *,
        score_threshold: float,
        hflip: bool,
        progress: bool,
        desc: str,
    ) -> list[Detections]:
        cfg = self.config
        device = next(model.parameters()).device
        use_amp = cfg.amp and device.type == "cuda"
        loader = torch.utils.data.DataLoader(
            PathImages(paths, sizes), batch_size=cfg.batch_size, shuffle=False,
            num_workers=_num_workers(cfg, device),
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
                    with torch.autocast(device.type, enabled=use_amp):
                        results = detect(
                            model, images, score_threshold=score_threshold, nms_threshold=cfg.nms_threshold,
                            detections_per_img=cfg.detections_per_img,
                        )
                    for img, res in zip(images, results):
                        boxes = hflip_boxes(res["boxes"], img.shape[-1]) if hflip else res["boxes"]
                        out.append(
                            Detections(
                                boxes=boxes.float().cpu().numpy().astype(np.float32),
                                labels=(res["labels"] - 1).cpu().numpy().astype(np.int64),
                                scores=res["scores"].float().cpu().numpy().astype(np.float32),
                                probs=res["probs"].float().cpu().numpy().astype(np.float32),
                                objectness=res["objectness"].float().cpu().numpy().astype(np.float32),
                                proposal_objectness=res["proposal_objectness"].cpu().numpy().astype(np.float32),
                                proposal_foreground=res["proposal_foreground"].cpu().numpy().astype(np.float32),
                            )
                        )
                    bar.update(len(batch))
        finally:
            model.train(was_training)
        return out


# -- helpers ---------------------------------------------------------------------------------------


def _optimizer(cfg: TorchvisionConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """SGD with momentum (torchvision's detection recipe) or AdamW."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.effective_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(params, lr=cfg.effective_lr, weight_decay=cfg.weight_decay)


def _train_one_epoch(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    loop: dict[str, Any],
    cfg: TorchvisionConfig,
    device: torch.device,
    aug_rng: torch.Generator | None,
    bar: tqdm,
) -> tuple[dict[str, float], str | None]:
    """One pass over ``loader``; counts ``loop["steps"]``. Returns the mean losses and
    "max_steps" when that cap was reached (else None)."""
    model.train()
    use_amp = scaler.is_enabled()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sums: dict[str, float] = {}
    n = 0
    for images, targets in loader:
        images, targets = _to_device(images, targets, device, aug_rng)
        with torch.autocast(device.type, enabled=use_amp):
            losses = model(images, targets)
            loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise TrainerError(
                f"training diverged at step {loop['steps'] + 1} (loss {loss.item()}); "
                f"lower lr (now {cfg.effective_lr:g}) or set grad_clip_norm"
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
        loop["steps"] += 1
        n += 1
        sums["loss"] = sums.get("loss", 0.0) + loss.item()
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + value.item()
        bar.update(1)
        bar.set_postfix(loss=f"{sums['loss'] / n:.3f}")
        if cfg.max_steps is not None and loop["steps"] >= cfg.max_steps:
            return {k: v / n for k, v in sums.items()}, "max_steps"
    return {k: v / max(n, 1) for k, v in sums.items()}, None


def _frcnn_kwargs(cfg: TorchvisionConfig) -> dict[str, Any]:
    """FasterRCNN keyword arguments from the config (None: the model's default)."""
    return {
        "min_size": cfg.min_size,
        "max_size": cfg.max_size,
        "rpn_pre_nms_top_n_train": cfg.rpn_pre_nms_top_n_train,
        "rpn_post_nms_top_n_train": cfg.rpn_post_nms_top_n_train,
        "rpn_pre_nms_top_n_test": cfg.rpn_pre_nms_top_n_test,
        "rpn_post_nms_top_n_test": cfg.rpn_post_nms_top_n_test,
        "box_batch_size_per_image": cfg.box_batch_size_per_image,
        "box_score_thresh": cfg.score_threshold,
        "box_nms_thresh": cfg.nms_threshold,
        "box_detections_per_img": cfg.detections_per_img,
    }


def _load_checkpoint(path: Path, device: str) -> tuple[torch.nn.Module, tuple[str, ...], TorchvisionConfig]:
    """Rebuild the model of an alloop checkpoint (eval mode, on ``device``)."""
    if not path.is_file():
        raise TrainerError(f"checkpoint {path} does not exist; train first or fix the path")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainerError(f"checkpoint {path} is not readable ({exc}); retrain to replace it") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainerError(f"{path} is not an alloop torchvision checkpoint (format {CHECKPOINT_FORMAT})")
    known = {f.name for f in fields(TorchvisionConfig)}
    stored = {k: v for k, v in ckpt["config"].items() if k in known}
    config = TorchvisionConfig(**stored)
    classes = tuple(ckpt["classes"])
    model = build_detector(
        config.model, len(classes) + 1, weights=config.weights, backbone_weights=config.backbone_weights,
        trainable_backbone_layers=config.trainable_backbone_layers, load_weights=False,
        **_frcnn_kwargs(config),
    )
    model.load_state_dict(ckpt["model"])
    return model.eval().to(device), classes, config


def _init_from_checkpoint(model: torch.nn.Module, path: Path, classes: tuple[str, ...]) -> bool:
    """Fine-tune start: weights from a previous checkpoint (not its optimizer). True if the box
    predictor was left new because the checkpoint has other classes."""
    if not path.is_file():
        raise TrainerError(f"resume_from checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainerError(f"resume_from checkpoint {path} is not readable ({exc})") from exc
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise TrainerError(f"resume_from checkpoint {path} holds no state dict")
    stored_classes = ckpt.get("classes") if isinstance(ckpt, dict) else None
    same_classes = stored_classes is None or tuple(stored_classes) == classes
    if not same_classes:
        log.warning(
            "%s has classes %s, not %s: the box predictor starts anew", path, stored_classes, list(classes)
        )
    return load_detector_state(model, state, source=str(path), same_classes=same_classes)


def _checkpoint(model: torch.nn.Module, cfg: TorchvisionConfig, classes: Sequence[str], epoch: int,
                metric: float | None) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "config": dataclasses.asdict(cfg),
        "classes": list(classes),
        "epoch": epoch,
        "metric": metric,
    }


def _save(path: Path, obj: dict[str, Any]) -> None:
    """Write atomically: a crash leaves the previous file or the new one, never a torn one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _finished(state: Mapping[str, Any], cfg: TorchvisionConfig) -> bool:
    if state.get("stopped") == "early_stopping":
        return True
    if cfg.max_steps is not None and state["steps"] >= cfg.max_steps:
        return True
    return state["epoch"] >= cfg.epochs


def _result(best_path: Path, last_path: Path, state: Mapping[str, Any]) -> TrainResult:
    return TrainResult(
        checkpoint=best_path if best_path.exists() else last_path,
        epochs=int(state["epoch"]),
        steps=int(state["steps"]),
        best_metric=state["best_metric"],
        history=tuple(dict(h) for h in state["history"]),
        extra={
            "stopped": state.get("stopped"), "best_epoch": state.get("best_epoch"), "last": str(last_path)
        },
    )


def _fingerprint(cfg: TorchvisionConfig, classes: Sequence[str], train: Sequence[Example],
                 val: Sequence[Example], seed: int, resume_from: Path | None) -> str:
    """Identity of a run: what it trains on and how. Only a run with the same identity continues."""

    def rows(examples: Sequence[Example]) -> list:
        return [
            [str(ex.path), ex.annotation.width, ex.annotation.height,
             [[b.x0, b.y0, b.x1, b.y1, b.label] for b in ex.annotation.boxes]]
            for ex in examples
        ]

    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _RUNTIME_FIELDS}
    blob = json.dumps(
        {"config": settings, "classes": list(classes), "seed": seed,
         "resume_from": str(resume_from) if resume_from is not None else None,
         "train": rows(train), "val": rows(val)},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _num_workers(cfg: TorchvisionConfig, device: torch.device) -> int:
    if cfg.num_workers is not None:
        return cfg.num_workers
    return min(4, os.cpu_count() or 1) if device.type == "cuda" else 0


def _derive(seed: int, epoch: int, stream: int) -> int:
    """A seed for one random stream of one epoch."""
    return (seed * 1_000_003 + epoch * 7_919 + stream) % (2**63 - 1)


def _jitter_sizes(base: int, factors: tuple[float, float]) -> tuple[int, ...]:
    """Training min-sizes for scale jitter (torchvision draws one per image)."""
    low, high = factors
    return tuple(sorted({max(16, round(base * f)) for f in np.linspace(low, high, 5)}))


def _lr_factor(cfg: TorchvisionConfig, total_steps: int):
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


def _to_device(images, targets, device: torch.device, aug_rng: torch.Generator | None):
    """uint8 images → float [0, 1] on ``device``; a random half mirrored when augmenting."""
    out_images, out_targets = [], []
    for image, target in zip(images, targets):
        if aug_rng is not None and torch.rand((), generator=aug_rng).item() < 0.5:
            image, target = hflip(image, target)
        out_images.append(image.to(device, non_blocking=True).float().div_(255))
        out_targets.append({k: v.to(device) for k, v in target.items()})
    return out_images, out_targets


__all__ = [
    "CHECKPOINT_FORMAT",
    "MODELS",
    "TorchvisionConfig",
    "TorchvisionTrainer",
    "load_detector",
    "resolve_device",
]
