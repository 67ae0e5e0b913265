"""Device choice: one rule, one error type, wherever the device comes from."""

from __future__ import annotations

import pytest
import torch

from alloop.device import is_device_name, resolve_device, torch_device
from alloop.errors import ConfigError


@pytest.mark.parametrize("name", ["auto", "CPU", " cuda ", "cuda:0", "cuda:12"])
def test_accepted_spellings(name):
    assert is_device_name(name)


@pytest.mark.parametrize("name", ["tpu", "cuda:", "cuda:x", "gpu", "", None, 0])
def test_refused_spellings(name):
    assert not is_device_name(name)


def test_resolve_and_torch_device_agree():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected and resolve_device(" CPU ") == "cpu"
    assert torch_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"^device 'tpu' is unknown; use auto, cpu, cuda or cuda:N \(--device, or device in alloop.toml \[project\]\)$"):
        torch_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_without_cuda_says_what_to_use():
    with pytest.raises(ConfigError, match=r"^device 'cuda:1' asked for but no CUDA device is available here; use auto or cpu"):
        resolve_device("cuda:1")
