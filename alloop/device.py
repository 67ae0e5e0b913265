"""Pick the torch device: ``auto`` means CUDA when present, else the CPU. The one place that decides.

Every caller (the loop, the trainers, the selection strategies, ``load_detector``) resolves its
device here, so a bad value gets the same one-line :class:`ConfigError` wherever it comes from.
"""

from __future__ import annotations

from typing import Any

from alloop.errors import ConfigError

# Where a user sets the device, for the messages.
_WHERE = "--device, or device in alloop.toml [project]"


def resolve_device(name: str) -> str:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' (any case) -> a concrete torch device string.

    CUDA asked for but absent, or a CUDA index past the last device, is a ConfigError.
    """
    import torch

    device = str(name).strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device '{name}' asked for but no CUDA device is available here; use auto or cpu ({_WHERE})"
            )
        count = torch.cuda.device_count()
        if ":" in device and int(device[5:]) >= count:
            raise ConfigError(
                f"device '{name}' does not exist: there are {count} CUDA device(s), cuda:0..cuda:{count - 1} "
                f"({_WHERE})"
            )
        return device
    raise ConfigError(f"device '{name}' is unknown; use auto, cpu, cuda or cuda:N ({_WHERE})")


def torch_device(name: str) -> Any:
    """:func:`resolve_device`, as a ``torch.device``."""
    import torch

    return torch.device(resolve_device(name))


__all__ = ["resolve_device", "torch_device"]
