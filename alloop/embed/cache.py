"""Embedding cache keyed by (image content hash, embedder key).

Vectors live in append-only shards ``artifacts/embeddings/<key>/shard-NNNNN.npy`` (float32,
L2-normalised) and the store's ``embedding_index`` table says which row of which shard holds an
image. A rerun only embeds images whose content it has not seen under the same embedder config;
a renamed image keeps its vector because the key is its hash, not its path. Vectors are stored as
the engine returns them (local or on a Ray cluster), so an interrupted run keeps what it finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alloop import atomic
from alloop.embed.base import Embedder
from alloop.engine import EmbedderSpec, Engine, LocalEngine
from alloop.errors import EmbedError
from alloop.store import Store

# Vectors per shard file: a crash loses at most this many finished vectors (plus the batches in flight).
SHARD_ROWS = 4096


class UnreadableImages(EmbedError):
    """Some images could not be decoded while embedding; every other vector is stored.

    ``bad`` holds (sha256, path, reason) of each; the message is one line naming the first.
    """

    def __init__(self, bad: Sequence[tuple[str, Path, str]]) -> None:
        self.bad = list(bad)
        _, path, reason = self.bad[0]
        more = f" and {len(self.bad) - 1} more" if len(self.bad) > 1 else ""
        super().__init__(f"{path}: cannot decode image ({reason}){more}; the other images' embeddings are saved, "
                         "fix or remove the file (`alloop doctor` lists unreadable files)")


def cached_embeddings(
    store: Store,
    directory: Path,
    embedder: Embedder,
    shas: Sequence[str],
    paths: Sequence[Path],
    *,
    engine: Engine | None = None,
    spec: EmbedderSpec | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, int]:
    """(N, D) float32 embeddings for the images, computing only cache misses; also the miss count.

    ``embedder.prepare`` must have run (the key depends on its trained weights). The misses run on
    ``engine`` (default: this process; ``spec`` is the embedder for a remote engine) and are stored
    as they arrive, in shards of SHARD_ROWS, also when the run fails: a rerun computes only the rest.
    Unreadable images raise :class:`UnreadableImages` once the others are stored.
    """
    if len(shas) != len(paths):
        raise ValueError(f"{len(shas)} hashes for {len(paths)} paths")
    key = embedder.key()
    index = store.embedding_rows(key)
    missing: dict[str, Path] = {}
    for sha, path in zip(shas, paths):
        if sha not in index and sha not in missing:
            missing[sha] = path
    if missing:
        todo = list(missing)
        writer = _ShardWriter(store, directory, key, embedder.name)
        bad: list[tuple[str, Path, str]] = []
        try:
            for chunk in (engine or LocalEngine()).embed(embedder, spec, list(missing.values()), progress=progress):
                keep = [i for i, p in enumerate(chunk.positions) if int(p) not in chunk.errors]
                writer.add([todo[int(chunk.positions[i])] for i in keep], chunk.vectors[keep])
                bad += [(todo[p], missing[todo[p]], reason) for p, reason in sorted(chunk.errors.items())]
        finally:
            writer.flush()  # what finished is kept, also when a worker or the embedder failed
        if bad:
            raise UnreadableImages(bad)
        if writer.written != len(missing):
            raise EmbedError(f"embedder {embedder.name} returned {writer.written} vectors for {len(missing)} images")
        index = store.embedding_rows(key)
    return _gather(directory, index, shas), len(missing)


class _ShardWriter:
    """Buffers arriving vectors and writes a shard (then its index rows) every SHARD_ROWS."""

    def __init__(self, store: Store, directory: Path, key: str, name: str) -> None:
        self.store, self.directory, self.key, self.name = store, directory, key, name
        self.shas: list[str] = []
        self.parts: list[np.ndarray] = []
        self.written = 0

    def add(self, shas: list[str], vectors: np.ndarray) -> None:
        if not shas:
            return
        if vectors.ndim != 2 or vectors.shape[0] != len(shas):
            raise EmbedError(f"embedder {self.name} returned shape {vectors.shape} for {len(shas)} images")
        if not np.isfinite(vectors).all():
            raise EmbedError(f"embedder {self.name} produced non-finite values; check its weights")
        self.shas += shas
        self.parts.append(np.asarray(vectors, np.float32))
        if len(self.shas) >= SHARD_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.shas:
            return
        if len({p.shape[1] for p in self.parts}) != 1:
            raise EmbedError(f"embedder {self.name} returned vectors of different widths in one run")
        vectors = np.concatenate(self.parts)
        shard = f"shard-{_next_shard(self.directory):05d}.npy"
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(self.directory / shard, size=vectors.nbytes) as tmp, open(tmp, "wb") as fh:
            np.save(fh, vectors)
        # The shard file exists before the index points at it, so a crash in between only
        # leaves an unreferenced shard (recomputed next time), never a dangling index row.
        self.store.add_embedding_rows(self.key, shard, self.shas)
        self.written += len(self.shas)
        self.shas, self.parts = [], []


def _gather(directory: Path, index: dict[str, tuple[str, int]], shas: Sequence[str]) -> np.ndarray:
    by_shard: dict[str, list[tuple[int, int]]] = {}
    for pos, sha in enumerate(shas):
        shard, row = index[sha]
        by_shard.setdefault(shard, []).append((pos, row))
    out: np.ndarray | None = None
    for shard, pairs in by_shard.items():
        try:
            arr = np.load(directory / shard, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise EmbedError(
                f"{directory / shard}: embedding cache file unreadable ({exc}); "
                "delete that folder and run `alloop embed` to recompute"
            ) from exc
        if out is None:
            out = np.empty((len(shas), arr.shape[1]), np.float32)
        positions = np.fromiter((p for p, _ in pairs), np.int64)
        rows = np.fromiter((r for _, r in pairs), np.int64)
        out[positions] = arr[rows]
    return out if out is not None else np.zeros((0, 0), np.float32)


def _next_shard(directory: Path) -> int:
    existing = sorted(directory.glob("shard-*.npy")) if directory.exists() else []
    return int(existing[-1].stem.split("-")[1]) + 1 if existing else 0


def load_cached_embeddings(store: Store, directory: Path, key: str, shas: Sequence[str]) -> np.ndarray | None:
    """Cached embeddings of ``shas`` under embedder ``key`` (rows in the same order), or None if any is missing."""
    index = store.embedding_rows(key)
    if not shas or any(s not in index for s in shas):
        return None
    return _gather(directory, index, shas)
