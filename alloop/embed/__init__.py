"""Embedder plugins, found through the ``alloop.embedders`` entry-point group.

Built-in embedders (``ssl``, ``backbone``, ``detector``) are registered in alloop's own
pyproject.toml and loaded the same way as third-party ones, so there is one code path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alloop import plugins
from alloop.embed.base import Embedder
from alloop.errors import EmbedError

GROUP = "alloop.embedders"


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
    """An embedder instance from its name and its options table (unknown options are a ConfigError)."""
    from alloop.trainers.base import config_from_mapping

    cls = load_embedder(name)
    where = where or f"alloop.toml [embedder.options] (embedder {name})"
    config = config_from_mapping(cls.Config, dict(options), where=where)
    return cls(config, Path(work_dir), device)


__all__ = ["GROUP", "Embedder", "available_embedders", "build_embedder", "load_embedder"]
