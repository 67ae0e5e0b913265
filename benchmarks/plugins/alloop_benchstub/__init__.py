"""``thumb``: a stub embedder for benchmarks/scale_bench.py, registered like any third-party embedder.

Each image is decoded at reduced size (JPEG draft mode, no full decode), shrunk to 8x8 grey levels
and L2-normalised: 64 numbers that do follow the image's content, at ~0.2 ms an image on one core,
so a pool of a million images embeds in minutes and the benchmark measures alloop's orchestration
(reading the files, the embedding cache, the store), not a network. Seconds spent inside
:meth:`ThumbEmbedder.embed` are added to ``SECONDS`` so the benchmark can report them apart.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

SECONDS = [0.0]  # time spent embedding (the "model"), for the benchmark's overhead = total - model


@dataclass(frozen=True)
class ThumbConfig:
    """Options of the thumb embedder."""

    side: int = 8  # vectors have side * side dimensions


class ThumbEmbedder:
    """8x8 grey thumbnails as vectors."""

    name: ClassVar[str] = "thumb"
    Config: ClassVar[type] = ThumbConfig

    def __init__(self, config: ThumbConfig, work_dir: Path, device: str) -> None:
        self.config = config

    def prepare(self, images: Sequence[Path], *, seed: int = 0, progress: bool = True) -> None:
        """Nothing to train."""

    def key(self) -> str:
        return "thumb-" + hashlib.sha256(f"v1 {self.config.side}".encode()).hexdigest()[:12]

    def embed(self, images: Sequence[Path], *, batch_size: int = 32, progress: bool = True) -> np.ndarray:
        t0 = time.perf_counter()
        side = self.config.side
        out = np.zeros((len(images), side * side), np.float32)
        for i, path in enumerate(images):
            with Image.open(path) as img:
                img.draft("L", (side, side))
                out[i] = np.asarray(img.convert("L").resize((side, side)), np.float32).reshape(-1) + 1.0
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        SECONDS[0] += time.perf_counter() - t0
        return out
