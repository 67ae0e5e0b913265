"""Pick the torch device: ``auto`` means CUDA when present, else the CPU."""

from __future__ import annotations

from alloop.errors import ConfigError


def resolve_device(name: str) -> str:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a concrete torch device string; CUDA asked but absent is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: no CUDA device is available here; use --device auto or cpu")
        if ":" in name:
            index = name.split(":", 1)[1]
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise ConfigError(
                    f"--device {name}: there are {torch.cuda.device_count()} CUDA devices; use cuda:0..cuda:N-1"
                )
        return name
    raise ConfigError(f"--device {name}: unknown device; use auto, cpu, cuda or cuda:N")
