"""Shared by the TAO trainer's tests: the fake launcher (tests/data/tao/fake_tao.py) as a module."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parents[2] / "data" / "tao" / "fake_tao.py"


@pytest.fixture(scope="session")
def fake_tao():
    """The fake launcher's functions (its spec parser, its KITTI reader) for direct calls."""
    spec = importlib.util.spec_from_file_location("fake_tao", FAKE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
