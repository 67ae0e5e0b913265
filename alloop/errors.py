"""One error family for everything a user can get wrong.

Every message is a single line that names the file (or flag) at fault and says how to fix it;
the CLI prints it as-is and exits non-zero. Raising one of these must leave the store unchanged.
"""

from __future__ import annotations


class AlloopError(Exception):
    """Base class: a user-facing, one-line, actionable error."""

    exit_code = 1


class ProjectError(AlloopError):
    """The project directory is missing, not an alloop project, locked, or in the wrong state."""


class ConfigError(AlloopError):
    """alloop.toml or a command-line option has a bad value."""


class ImageError(AlloopError):
    """An image folder or image file cannot be used."""


class LabelError(AlloopError):
    """A label file is malformed, refers to unknown images or classes, or has invalid boxes."""


class SelectionError(AlloopError):
    """A selection request is impossible (bad k, NaN embeddings, mismatched lengths...)."""


class TrainerError(AlloopError):
    """A trainer plugin is unknown, misconfigured, or failed."""


class EmbedError(AlloopError):
    """An embedder is unknown, misconfigured, or failed."""


class StoreError(AlloopError):
    """The SQLite store is corrupt, from a newer alloop, or otherwise unusable."""


class DiskFullError(AlloopError):
    """A write failed because the disk (or the user's quota) is full; nothing half-written is left."""


class LockError(ProjectError):
    """Another alloop process holds the project lock."""
