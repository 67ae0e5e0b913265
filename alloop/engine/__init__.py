"""Where the pool's model passes run: ``local`` (this process, the default) or ``ray`` (a cluster).

Selected by ``--engine`` / ``--ray-address`` or alloop.toml's ``[engine]``. Both stream results as
chunks keyed by the image's position in the request; the loop stores each chunk through the same
code (the embedding cache, the predictions file), so the numbers and the resume rules do not depend
on the engine. The Ray engine's module imports Ray only when it is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from alloop.engine.base import EmbedChunk, EmbedderSpec, Engine, PredictChunk, TrainerSpec, predictions
from alloop.engine.local import LocalEngine
from alloop.errors import ConfigError

if TYPE_CHECKING:
    from alloop.config import ProjectConfig

ENGINES = ("local", "ray")


def build_engine(name: str, *, address: str | None = None, workers: int = 0) -> Engine:
    """The engine called ``name``; an unknown name says which exist."""
    if name == "local":
        return LocalEngine()
    if name == "ray":
        from alloop.engine.ray import RayEngine

        return RayEngine(address, workers)
    raise ConfigError(f"--engine {name}: unknown; engines: {', '.join(ENGINES)}")


def project_engine(config: ProjectConfig) -> Engine:
    """The engine a project's [engine] names (``--engine`` / ``--ray-address`` set it for one command)."""
    return build_engine(config.engine, address=config.ray_address, workers=config.engine_workers)


def trainer_spec(config: ProjectConfig, classes: Sequence[str]) -> TrainerSpec:
    """The project's trainer plugin as a picklable spec, for ``classes``."""
    return TrainerSpec(config.trainer, dict(config.trainer_options), tuple(classes), config.device)


__all__ = ["ENGINES", "EmbedChunk", "EmbedderSpec", "Engine", "LocalEngine", "PredictChunk", "TrainerSpec",
           "build_engine", "predictions", "project_engine", "trainer_spec"]
