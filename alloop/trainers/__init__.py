"""Trainer plugins, found through the ``alloop.trainers`` entry-point group.

Built-in trainers are registered in alloop's own pyproject.toml and loaded the same way as
third-party ones, so there is one code path.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from alloop.errors import TrainerError
from alloop.trainers.base import Example, Trainer, TrainResult, config_from_mapping

GROUP = "alloop.trainers"


def available_trainers() -> dict[str, str]:
    """Installed trainer names mapped to their ``module:Class`` entry point."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def load_trainer(name: str) -> type:
    """The trainer class registered as ``name``; an unknown name lists what is installed."""
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            try:
                return ep.load()
            except Exception as exc:  # a broken plugin must not read as "unknown"
                raise TrainerError(f"trainer '{name}' ({ep.value}) failed to load: {exc}") from exc
    known = ", ".join(sorted(available_trainers())) or "none"
    raise TrainerError(
        f"unknown trainer '{name}'; installed trainers: {known}. "
        f"Install a plugin package that registers one under the '{GROUP}' entry-point group"
    )


__all__ = ["GROUP", "Example", "TrainResult", "Trainer", "available_trainers", "config_from_mapping", "load_trainer"]
