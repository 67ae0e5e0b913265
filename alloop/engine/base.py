"""What every engine shares: the picklable model specs, the result chunks, and one batch of work.

An engine runs the pool's model passes (embedding, detection) somewhere: in this process
(``local``) or on a Ray cluster (``ray``). Both call :func:`embed_batch` / :func:`predict_batch` on
each batch, so an unreadable image is found and reported the same way wherever it runs, and the
numbers are the same: the same plugin code on the same pixels.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from alloop.errors import EmbedError, TrainerError
from alloop.images import DECODE_ERRORS, open_rgb

# Images per model call on a Ray worker (the embedders cap pixels per batch themselves); a trainer's
# predict reads its checkpoint once per call, so calls are not made smaller than this.
BATCH_IMAGES = 128


@dataclass(frozen=True)
class EmbedderSpec:
    """Everything a worker needs to build the project's embedder: plain values, so it pickles.

    ``key`` is the embedder key the driver computed after ``prepare``: a worker whose embedder gets
    another key sees other weights (``work_dir`` is not on a filesystem it shares) and refuses.
    """

    name: str
    options: dict[str, Any]
    work_dir: str
    device: str
    seed: int
    key: str

    def build(self) -> Any:
        """The embedder, prepared (its weights read from ``work_dir``), checked against ``key``."""
        from alloop.device import resolve_device
        from alloop.embed import build_embedder

        embedder = build_embedder(self.name, self.options, Path(self.work_dir), resolve_device(self.device))
        try:
            embedder.prepare([], seed=self.seed, progress=False)
            key = embedder.key()
        except Exception as exc:
            raise EmbedError(f"{self.work_dir}: this worker cannot load embedder {self.name} ({exc}); "
                             "the project directory must be on a filesystem every Ray worker sees") from exc
        if key != self.key:
            raise EmbedError(f"{self.work_dir}: embedder {self.name} on this worker is {key}, not {self.key}; "
                             "the project directory must be on a filesystem every Ray worker sees")
        return embedder


@dataclass(frozen=True)
class TrainerSpec:
    """The project's trainer plugin as plain values (name, options, classes, device): it pickles."""

    name: str
    options: dict[str, Any]
    classes: tuple[str, ...]
    device: str

    def build(self) -> Any:
        """The trainer plugin instance, on the worker's device when ``device`` is auto."""
        from alloop.device import resolve_device
        from alloop.trainers import load_trainer
        from alloop.trainers.base import config_from_mapping

        cls = load_trainer(self.name)
        config = config_from_mapping(cls.Config, self.options,
                                     where=f"alloop.toml [trainer.options] (trainer {self.name})")
        return cls(config, list(self.classes), resolve_device(self.device))


@dataclass(frozen=True)
class EmbedChunk:
    """Vectors of some of the requested images: ``positions`` index the request's path list.

    ``errors`` maps a position to why its image could not be read (it has no vector).
    """

    positions: np.ndarray  # (k,) int64
    vectors: np.ndarray  # (k, D) float32
    errors: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PredictChunk:
    """Detections of some of the requested images (one per position); ``errors`` as in EmbedChunk."""

    positions: np.ndarray  # (k,) int64
    detections: list[Any]
    errors: dict[int, str] = field(default_factory=dict)


class Engine(Protocol):
    """Runs model passes over a list of image paths and streams the results back in chunks."""

    name: str

    def embed(self, embedder: Any, spec: EmbedderSpec, paths: Sequence[Path], *,
              progress: bool) -> Iterator[EmbedChunk]:
        """Embed ``paths`` (``embedder`` is the prepared local instance, ``spec`` its picklable form)."""
        ...

    def predict(self, trainer: Any, spec: TrainerSpec, checkpoint: Path, paths: Sequence[Path], *,
                hflip: bool, progress: bool) -> Iterator[PredictChunk]:
        """Detect on ``paths`` with ``checkpoint`` (mirrored when ``hflip``)."""
        ...

    def close(self) -> None:
        """Release the engine's resources (a cluster connection)."""
        ...


def unreadable(paths: Sequence[Path]) -> dict[int, str]:
    """Position -> reason for each of ``paths`` that does not decode with the one image opener."""
    bad = {}
    for i, path in enumerate(paths):
        try:
            open_rgb(Path(path))
        except DECODE_ERRORS as exc:
            bad[i] = f"{exc}".replace("\n", " ") or type(exc).__name__
    return bad


def embed_batch(embedder: Any, paths: Sequence[Path]) -> tuple[np.ndarray, dict[int, str]]:
    """(len(paths), D) vectors and the unreadable positions (zero rows there).

    A batch whose model call fails is checked image by image: the unreadable ones are set aside
    and the rest embedded again; a failure with every image readable is the model's and is raised.
    """
    try:
        return _vectors(embedder, paths), {}
    except (EmbedError, *DECODE_ERRORS):
        bad = unreadable(paths)
        if not bad:
            raise
        good = [i for i in range(len(paths)) if i not in bad]
        if not good:
            return np.zeros((len(paths), 0), np.float32), bad
        vectors = _vectors(embedder, [paths[i] for i in good])
        out = np.zeros((len(paths), vectors.shape[1]), np.float32)
        out[good] = vectors
        return out, bad


def _vectors(embedder: Any, paths: Sequence[Path]) -> np.ndarray:
    vectors = np.asarray(embedder.embed(list(paths), batch_size=32, progress=False), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(paths):
        raise EmbedError(f"embedder {embedder.name} returned shape {vectors.shape} for {len(paths)} images")
    return vectors


def predict_batch(trainer: Any, checkpoint: Path, paths: Sequence[Path], *, hflip: bool,
                  progress: bool = False) -> tuple[list[Any], dict[int, str]]:
    """Detections per path (None where unreadable) and the unreadable positions, as :func:`embed_batch`."""
    try:
        return _detections(trainer, checkpoint, paths, hflip, progress), {}
    except (TrainerError, *DECODE_ERRORS):
        bad = unreadable(paths)
        if not bad:
            raise
        good = [i for i in range(len(paths)) if i not in bad]
        dets: list[Any] = [None] * len(paths)
        for i, d in zip(good, _detections(trainer, checkpoint, [paths[i] for i in good], hflip, progress) if good else []):
            dets[i] = d
        return dets, bad


def _detections(trainer: Any, checkpoint: Path, paths: Sequence[Path], hflip: bool, progress: bool) -> list[Any]:
    dets = trainer.predict(checkpoint, list(paths), hflip=hflip, progress=progress)
    if len(dets) != len(paths):
        raise TrainerError(f"trainer {trainer.name} returned {len(dets)} predictions for {len(paths)} images")
    return list(dets)


def predictions(engine: Engine, trainer: Any, spec: TrainerSpec, checkpoint: Path, paths: Sequence[Path], *,
                hflip: bool = False, progress: bool = False) -> list[Any]:
    """Detections of every path, in order, from ``engine``; an unreadable image fails in one line naming it
    (the trainer plugins' own rule: the loop predicts only images registration could read)."""
    out: list[Any] = [None] * len(paths)
    for chunk in engine.predict(trainer, spec, checkpoint, paths, hflip=hflip, progress=progress):
        if chunk.errors:
            pos, reason = min(chunk.errors.items())
            more = f" (and {len(chunk.errors) - 1} more in its batch)" if len(chunk.errors) > 1 else ""
            raise TrainerError(f"{paths[pos]}: cannot decode image ({reason}){more}; "
                               "fix or remove the file (`alloop doctor` lists unreadable files)")
        for pos, det in zip(chunk.positions, chunk.detections):
            out[int(pos)] = det
    missing = sum(d is None for d in out)
    if missing:
        raise TrainerError(f"engine {engine.name} returned no predictions for {missing} of {len(paths)} images")
    return out


def pack(obj: Any) -> bytes:
    """A detection as bytes (what crosses the cluster; Arrow holds bytes, not Python objects)."""
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes) -> Any:
    """The object :func:`pack` wrote (only ever bytes this project's own workers produced)."""
    return pickle.loads(data)
