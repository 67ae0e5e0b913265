"""Plugins found through entry-point groups: trainers (``alloop.trainers``) and embedders (``alloop.embedders``).

Built-in plugins are registered in alloop's own pyproject.toml and loaded exactly like third-party
ones (as simonw/llm does), so there is one code path to test.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from alloop.errors import AlloopError


def installed(group: str) -> dict[str, str]:
    """Plugin names in ``group`` mapped to their ``module:Class`` entry point."""
    return {ep.name: ep.value for ep in entry_points(group=group)}


def load(group: str, name: str, *, kind: str, error: type[AlloopError]) -> type:
    """The class registered as ``name`` in ``group``; an unknown name lists what is installed."""
    for ep in entry_points(group=group):
        if ep.name == name:
            try:
                return ep.load()
            except Exception as exc:  # a broken plugin must not read as "unknown"
                raise error(f"{kind} '{name}' ({ep.value}) failed to load: {exc}") from exc
    known = ", ".join(sorted(installed(group))) or "none"
    raise error(
        f"unknown {kind} '{name}'; installed {kind}s: {known}. "
        f"Install a plugin package that registers one under the '{group}' entry-point group"
    )
