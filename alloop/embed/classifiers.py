"""torchvision classification models as feature networks, with weights from a name or a local file.

Weights are one of:
- ``None`` (or the string ``"none"``): random init. Allowed, but logged as a warning: random
  features give poor embeddings.
- a torchvision weights name (``"IMAGENET1K_V1"``, ``"DEFAULT"``, ``"ResNet18_Weights.IMAGENET1K_V1"``):
  loaded from the torch hub cache only. alloop never downloads; a file missing from the cache is an
  :class:`EmbedError` naming the file to put there.
- a local file: a classification state dict for the arch (as torchvision publishes them), or an
  alloop ``ssl_backbone.pth`` (``{"arch", "state_dict", ...}``).

Names and files are resolved by :mod:`alloop.weights`, as for the torchvision trainer.

The feature network is the model with its classifier head replaced by identity, so its output is
the model's own globally average-pooled last feature map (resnet18: 512, mobilenet_v2: 1280,
mobilenet_v3_small: 576, efficientnet_b0: 1280).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torchvision
from torch import nn

from alloop.embed.stream import file_sha256
from alloop.errors import EmbedError
from alloop.weights import (
    EMBEDDER_SETTING,
    HEAD_ATTRS,
    cached_weights_file,
    hub_cache_path,
    is_weights_file,
    load_classifier_state,
    read_state_dict,
    weights_enum_member,
)

log = logging.getLogger(__name__)

# The one rule, under the names this module has always offered.
hub_cache_file = hub_cache_path


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
        path = cached_weights_file(enum, option="weights", setting=EMBEDDER_SETTING, error=EmbedError)
        if path == hub_cache_path(enum):
            model = torchvision.models.get_model(arch, weights=enum)  # reads the cached file, no download
        else:  # the same file from the offline weights package: torchvision would look in the hub cache only
            model = torchvision.models.get_model(arch, weights=None)
            _load_file(model, arch, path)
    return model.eval()


def _weights_enum(arch: str, name: str) -> torchvision.models.WeightsEnum:
    check_arch(arch)
    enum_cls = torchvision.models.get_model_weights(arch)
    return weights_enum_member(enum_cls, name, option="weights", model=f"arch '{arch}'", error=EmbedError)


def _load_file(model: nn.Module, arch: str, path: Path) -> None:
    state, file_arch = read_state_dict(path, what="weights", error=EmbedError)
    load_classifier_state(
        model, state, arch=arch, source=str(path), option="weights", file_arch=file_arch, error=EmbedError
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
            for attr in HEAD_ATTRS:
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
