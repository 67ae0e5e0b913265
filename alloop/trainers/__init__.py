"""Trainer plugins, found through the ``alloop.trainers`` entry-point group.

Built-in trainers are registered in alloop's own pyproject.toml and loaded the same way as
third-party ones, so there is one code path.
"""

from __future__ import annotations

from alloop import plugins
from alloop.errors import TrainerError
from alloop.trainers.base import Example, Trainer, TrainResult, config_from_mapping

GROUP = "alloop.trainers"


def available_trainers() -> dict[str, str]:
    """Installed trainer names mapped to their ``module:Class`` entry point."""
    return plugins.installed(GROUP)


def load_trainer(name: str) -> type:
    """The trainer class registered as ``name``; an unknown name lists what is installed."""
    return plugins.load(GROUP, name, kind="trainer", error=TrainerError)


__all__ = ["GROUP", "Example", "TrainResult", "Trainer", "available_trainers", "config_from_mapping", "load_trainer"]
