"""The torchvision trainer's checkpoint files: what they hold, writing them safely, reading them back.

``best.pt`` and ``last.pt`` are ``torch.save`` dicts with ``format`` = ``"alloop-torchvision-1"``,
``model`` (state dict), ``config`` (``dataclasses.asdict`` of :class:`TorchvisionConfig`),
``classes``, ``epoch`` and ``metric`` (validation mAP@[.5:.95] or None); ``last.pt`` adds the
optimizer, scheduler and scaler states, the :class:`~alloop.trainers.torchvision.engine.TrainState`
fields, ``history``, ``stopped``, ``fingerprint`` and ``seed``. :func:`load_detector` rebuilds the
model from one without reading any other file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from alloop.atomic import atomic_path
from alloop.device import resolve_device
from alloop.errors import TrainerError
from alloop.trainers.base import Example
from alloop.trainers.torchvision.config import RUNTIME_FIELDS, TorchvisionConfig
from alloop.trainers.torchvision.models import build_detector, load_detector_state

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "alloop-torchvision-1"


def checkpoint(model: torch.nn.Module, cfg: TorchvisionConfig, classes: Sequence[str], epoch: int,
               metric: float | None) -> dict[str, Any]:
    """The dict ``best.pt`` holds (``last.pt`` adds the run's state to it)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "config": dataclasses.asdict(cfg),
        "classes": list(classes),
        "epoch": epoch,
        "metric": metric,
    }


def save(path: Path, obj: Mapping[str, Any]) -> None:
    """Write atomically (fsynced): a crash leaves the previous file or the new one, never a torn one.

    A disk with less room than the tensors' bytes is refused before writing (a DiskFullError).
    """
    with atomic_path(path, size=_tensor_bytes(obj)) as tmp:
        torch.save(dict(obj), tmp)


def _tensor_bytes(obj: Any) -> int:
    """The bytes of the tensor storages in ``obj`` (each once): what torch.save writes, less the pickle."""
    storages: dict[int, int] = {}

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(obj)
    return sum(storages.values())


def _read(path: Path, what: str, if_missing: str, if_unreadable: str) -> Any:
    """``torch.load`` (tensors and plain data only) with one-line errors that say what to do."""
    if not path.is_file():
        raise TrainerError(f"{what} {path} does not exist; {if_missing}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean the same to the user
        raise TrainerError(f"{what} {path} is not readable ({exc}); {if_unreadable}") from exc


def load_checkpoint(path: Path, device: str) -> tuple[torch.nn.Module, tuple[str, ...], TorchvisionConfig]:
    """Rebuild the model of an alloop checkpoint (eval mode, on ``device``), its classes and config."""
    ckpt = _read(path, "checkpoint", "train first or fix the path", "retrain to replace it")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainerError(f"{path} is not an alloop torchvision checkpoint (format {CHECKPOINT_FORMAT})")
    # Options added since the file was written take their defaults; dropped ones are ignored.
    known = {f.name for f in dataclasses.fields(TorchvisionConfig)}
    config = TorchvisionConfig(**{k: v for k, v in ckpt["config"].items() if k in known})
    classes = tuple(ckpt["classes"])
    model = build_detector(
        config.model, len(classes) + 1, weights=config.weights, backbone_weights=config.backbone_weights,
        trainable_backbone_layers=config.trainable_backbone_layers, load_weights=False,
        **config.frcnn_kwargs(),
    )
    model.load_state_dict(ckpt["model"])
    return model.eval().to(device), classes, config


def load_detector(checkpoint: Path, device: str = "cpu") -> torch.nn.Module:
    """The FasterRCNN of an alloop checkpoint, in eval mode on ``device``; reads no other file."""
    model, _, _ = load_checkpoint(Path(checkpoint), resolve_device(device))
    return model


def init_from_checkpoint(model: torch.nn.Module, path: Path, classes: tuple[str, ...]) -> bool:
    """Fine-tune start: weights from a previous checkpoint (not its optimizer). True if the box
    predictor was left new because the checkpoint has other classes."""
    ckpt = _read(path, "resume_from checkpoint", "fix the path", "retrain the previous iteration")
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


def unfinished_state(last_path: Path, fingerprint: str) -> dict | None:
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


def fingerprint(cfg: TorchvisionConfig, classes: Sequence[str], train: Sequence[Example],
                val: Sequence[Example], seed: int, resume_from: Path | None) -> str:
    """Identity of a run: what it trains on and how. Only a run with the same identity continues."""

    def rows(examples: Sequence[Example]) -> list:
        return [
            [str(ex.path), ex.annotation.width, ex.annotation.height,
             [[b.x0, b.y0, b.x1, b.y1, b.label] for b in ex.annotation.boxes]]
            for ex in examples
        ]

    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUNTIME_FIELDS}
    blob = json.dumps(
        {"config": settings, "classes": list(classes), "seed": seed,
         "resume_from": str(resume_from) if resume_from is not None else None,
         "train": rows(train), "val": rows(val)},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


__all__ = [
    "CHECKPOINT_FORMAT",
    "checkpoint",
    "fingerprint",
    "init_from_checkpoint",
    "load_checkpoint",
    "load_detector",
    "save",
    "unfinished_state",
]
