"""The local engine (the default): every model pass in this process, as before there were engines."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from alloop.engine.base import EmbedChunk, EmbedderSpec, PredictChunk, TrainerSpec, embed_batch, predict_batch

# Images per embedder call: what a crash can cost (the cache keeps every finished chunk).
EMBED_CHUNK = 512


class LocalEngine:
    """Runs the plugin instances the loop built, in this process; needs nothing installed beyond alloop."""

    name = "local"

    def embed(self, embedder: Any, spec: EmbedderSpec | None, paths: Sequence[Path], *,
              progress: bool) -> Iterator[EmbedChunk]:
        """Vectors of ``paths`` in chunks of EMBED_CHUNK (``spec`` is for remote engines)."""
        with tqdm(total=len(paths), desc="embed", unit="img", disable=None if progress else True) as bar:
            for start in range(0, len(paths), EMBED_CHUNK):
                batch = [Path(p) for p in paths[start:start + EMBED_CHUNK]]
                vectors, errors = embed_batch(embedder, batch)
                yield EmbedChunk(np.arange(start, start + len(batch), dtype=np.int64), vectors,
                                 {start + i: e for i, e in errors.items()})
                bar.update(len(batch))

    def predict(self, trainer: Any, spec: TrainerSpec | None, checkpoint: Path, paths: Sequence[Path], *,
                hflip: bool, progress: bool) -> Iterator[PredictChunk]:
        """Detections of ``paths`` in one call of the trainer (it loads its checkpoint once)."""
        if not paths:
            return
        dets, errors = predict_batch(trainer, checkpoint, [Path(p) for p in paths], hflip=hflip, progress=progress)
        yield PredictChunk(np.arange(len(paths), dtype=np.int64), dets, errors)

    def close(self) -> None:
        """Nothing to release."""
