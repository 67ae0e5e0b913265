"""The embedder seam: images in, L2-normalised float32 vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns images into vectors. Built as ``EmbedderClass(config, work_dir, device)``.

    ``work_dir`` is a directory the embedder owns (trained weights, etc.).
    """

    name: ClassVar[str]
    Config: ClassVar[type]

    def prepare(self, images: Sequence[Path], *, seed: int = 0, progress: bool = True) -> None:
        """Get ready to embed (e.g. train a self-supervised model on ``images``); no-op when done."""
        ...

    def key(self) -> str:
        """A stable identity of this embedder's config and weights: the embedding cache key.
        Only valid after :meth:`prepare`."""
        ...

    def embed(self, images: Sequence[Path], *, batch_size: int = 32, progress: bool = True) -> np.ndarray:
        """(N, D) float32, each row L2-normalised; images are streamed in batches, never all loaded."""
        ...
