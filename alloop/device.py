"""Pick the torch device: ``auto`` means CUDA when present, else the CPU. The one place that decides.

Every caller (the loop, the trainers, the selection strategies, ``load_detector``) resolves its
device here, so a bad value gets the same one-line :class:`ConfigError` wherever it comes from.
"""

from __future__ import annotations

from typing import Any

from alloop.errors import ConfigError

# Where a user sets the device, for the messages.
_WHERE = "--device, or device in alloop.toml [project]"


def is_device_name(value: Any) -> bool:
    """Whether ``value`` spells a device alloop accepts (any case): auto, cpu, cuda or cuda:N.

    Only the spelling: whether CUDA is there is :func:`resolve_device`'s question, asked when the
    device is used (a config written on a GPU machine still loads on a laptop).
    """
    if not isinstance(value, str):
        return False
    name = value.strip().lower()
    return name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())


def resolve_device(name: str) -> str:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' (any case) -> a concrete torch device string.

    CUDA asked for but absent, or a CUDA index past the last device, is a ConfigError.
    """
    import torch

    if not is_device_name(name):
        raise ConfigError(f"device '{name}' is unknown; use auto, cpu, cuda or cuda:N ({_WHERE})")
    device = name.strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for but no CUDA device is available here; use auto or cpu ({_WHERE})")
    count = torch.cuda.device_count()
    if ":" in device and int(device[5:]) >= count:
        raise ConfigError(
            f"device '{name}' does not exist: there are {count} CUDA device(s), cuda:0..cuda:{count - 1} ({_WHERE})"
        )
    return device


def torch_device(name: str) -> Any:
    """:func:`resolve_device`, as a ``torch.device``."""
    import torch

    return torch.device(resolve_device(name))


__all__ = ["is_device_name", "resolve_device", "torch_device"]
