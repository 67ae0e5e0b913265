"""torchvision classification models as feature networks, with weights from a name or a local file.

Weights are one of:
- ``None`` (or the string ``"none"``): random init. Allowed, but logged as a warning: random
  features give poor embeddings.
- a torchvision weights name (``"IMAGENET1K_V1"``, ``"DEFAULT"``, ``"ResNet18_Weights.IMAGENET1K_V1"``):
  loaded from the torch hub cache only. alloop never downloads; a file missing from the cache is an
  :class:`EmbedError` naming the file to put there.
- a local file: a classification state dict for the arch (as torchvision publishes them), or an
  alloop ``ssl_backbone.pth`` (``{"arch", "state_dict", ...}``).

The feature network is the model with its classifier head replaced by identity, so its output is
the model's own globally average-pooled last feature map (resnet18: 512, mobilenet_v2: 1280,
mobilenet_v3_small: 576, efficientnet_b0: 1280).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from alloop.embed.stream import file_sha256
from alloop.errors import EmbedError

log = logging.getLogger(__name__)

_HEAD_ATTRS = ("fc", "classifier", "heads", "head")
_WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")


def classification_archs() -> list[str]:
    """Names torchvision can build as classification models (``torchvision.models.get_model``)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_arch(arch: str) -> None:
    """Raise EmbedError unless ``arch`` is a torchvision classification model name."""
    known = classification_archs()
    if arch not in known:
        close = [a for a in known if a.split("_")[0] == arch.split("_")[0]][:8] or known[:8]
        raise EmbedError(
            f"unknown torchvision classification arch '{arch}'; e.g. {', '.join(close)} "
            "(all: torchvision.models.list_models(module=torchvision.models))"
        )


def is_weights_file(weights: str) -> bool:
    """Whether a ``weights`` value names a local file rather than a torchvision weights name."""
    return (
        os.sep in weights
        or "/" in weights
        or weights.lower().endswith(_WEIGHT_FILE_SUFFIXES)
        or Path(weights).expanduser().exists()
    )


def weights_identity(arch: str, weights: str | None) -> str:
    """What identifies the weights in a cache key: 'random', the full enum name, or the file's sha256."""
    if weights is None:
        return "random"
    if is_weights_file(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise EmbedError(
                f"weights file {path} does not exist; set weights to an existing .pth file or a torchvision weights name"
            )
        return "sha256:" + file_sha256(path)
    return str(_weights_enum(arch, weights))


def load_classifier(
    arch: str, weights: str | None, *, warn_random: bool = True, init_seed: int = 0
) -> nn.Module:
    """The full torchvision classification model ``arch`` with ``weights`` loaded, on the CPU, in eval mode.

    The random init is drawn from ``init_seed`` (the caller's RNG is left alone), so random weights
    are the same on every run and an embedding cache key for them stays valid.
    """
    check_arch(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return _load_classifier(arch, weights, warn_random=warn_random)


def _load_classifier(arch: str, weights: str | None, *, warn_random: bool) -> nn.Module:
    if weights is None:
        if warn_random:
            log.warning(
                "embedder weights are random (weights = none) for %s: the embeddings will be poor; "
                "use ImageNet weights or a local .pth file",
                arch,
            )
        model = torchvision.models.get_model(arch, weights=None)
    elif is_weights_file(weights):
        model = torchvision.models.get_model(arch, weights=None)
        _load_file(model, arch, Path(weights).expanduser())
    else:
        enum = _weights_enum(arch, weights)
        cached = hub_cache_file(enum)
        if not cached.is_file():
            raise EmbedError(
                f"weights {enum} for {arch} are not in the torch hub cache and alloop never downloads: "
                f"copy {cached.name} (from {enum.url}) to {cached}, or set weights to a local .pth file"
            )
        model = torchvision.models.get_model(arch, weights=enum)  # reads the cached file, no download
    return model.eval()


def hub_cache_file(enum: torchvision.models.WeightsEnum) -> Path:
    """Where torch.hub keeps (and torchvision looks for) the file of a torchvision weights entry."""
    filename = os.path.basename(urlparse(enum.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _weights_enum(arch: str, name: str) -> torchvision.models.WeightsEnum:
    check_arch(arch)
    enum_cls = torchvision.models.get_model_weights(arch)
    member = name
    if "." in name:
        cls_name, member = name.rsplit(".", 1)
        if cls_name != enum_cls.__name__:
            raise EmbedError(
                f"weights '{name}' are not for arch '{arch}' (its weights are {enum_cls.__name__}.*); "
                "set arch to match, or use one of its weights"
            )
    try:
        return enum_cls[member]
    except KeyError:
        names = ", ".join(enum_cls.__members__)
        raise EmbedError(
            f"unknown weights '{name}' for {arch}; torchvision has {names}, or give a local .pth file"
        ) from None


def _load_file(model: nn.Module, arch: str, path: Path) -> None:
    if not path.is_file():
        raise EmbedError(
            f"weights file {path} does not exist; "
            "set weights to an existing .pth file or a torchvision weights name"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean the same to the user
        raise EmbedError(f"{path}: cannot read weights file ({exc})".replace("\n", " ")) from exc
    state = obj
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        saved_arch = obj.get("arch")
        if saved_arch is not None and saved_arch != arch:
            raise EmbedError(
                f"{path} holds weights for arch '{saved_arch}', not '{arch}'; set arch = \"{saved_arch}\""
            )
        state = obj["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EmbedError(
            f"{path} is not a state dict of tensors for {arch}; expected torchvision's classification weights"
        )
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    head_prefixes = tuple(f"{attr}." for attr in _HEAD_ATTRS if hasattr(model, attr))
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even when not strict
        # A classifier for another number of classes is fine: embeddings never use the head.
        body_state = {k: v for k, v in state.items() if not k.startswith(head_prefixes)}
        try:
            result = model.load_state_dict(body_state, strict=False)
        except RuntimeError:
            first = str(exc).splitlines()[1:2] or [str(exc)]
            raise EmbedError(f"{path} does not fit arch {arch}: {first[0].strip()}") from exc
    # Files from older torchvision lack BatchNorm's num_batches_tracked counters: harmless.
    missing = [
        k
        for k in result.missing_keys
        if not k.startswith(head_prefixes) and not k.endswith("num_batches_tracked")
    ]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise EmbedError(
            f"{path} does not fit arch {arch}: missing {missing[:3]} unexpected {unexpected[:3]}; "
            "is it the state dict of another model?"
        )


class ClassifierFeatures(nn.Module):
    """A classification model whose head is replaced by identity: images -> globally pooled features.

    The head is swapped in place on ``model`` (no copy); ``self.model.state_dict()`` is then the
    classification state dict without the head's parameters.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        name = type(model).__name__
        if name in ("VGG", "AlexNet"):  # their "avgpool" keeps 7x7 (6x6) cells for the FC layers
            model.avgpool = nn.AdaptiveAvgPool2d(1)
            model.classifier = nn.Identity()
        elif name == "SqueezeNet":  # its classifier is a conv; keep the map before it, pooled
            model.classifier = nn.AdaptiveAvgPool2d(1)
        else:
            for attr in _HEAD_ATTRS:
                if isinstance(getattr(model, attr, None), nn.Module):
                    setattr(model, attr, nn.Identity())
                    break
            else:
                raise EmbedError(f"cannot find the classifier head of {name} to drop; use another arch")
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if isinstance(out, tuple):  # GoogLeNet/Inception return (logits, aux...) in train mode
            out = out[0]
        if out.ndim == 4:
            out = out.mean(dim=(2, 3))
        return out.flatten(1)

    def feature_dim(self, image_size: int) -> int:
        """The feature dimension at ``image_size`` (one dummy forward, in eval mode)."""
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                param = next(self.parameters())
                dummy = torch.zeros((1, 3, image_size, image_size), device=param.device, dtype=param.dtype)
                return int(self(dummy).shape[1])
        except RuntimeError as exc:
            raise EmbedError(
                f"{type(self.model).__name__} cannot run at image_size {image_size} ({exc}); "
                "use a larger image_size"
            ) from exc
        finally:
            self.train(was_training)
