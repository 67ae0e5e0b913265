"""Embedding cache keyed by (image content hash, embedder key).

Vectors live in append-only shards ``artifacts/embeddings/<key>/shard-NNNNN.npy`` (float32,
L2-normalised) and the store's ``embedding_index`` table says which row of which shard holds an
image. A rerun only embeds images whose content it has not seen under the same embedder config;
a renamed image keeps its vector because the key is its hash, not its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alloop import atomic
from alloop.embed.base import Embedder
from alloop.errors import EmbedError
from alloop.store import Store


def cached_embeddings(
    store: Store,
    directory: Path,
    embedder: Embedder,
    shas: Sequence[str],
    paths: Sequence[Path],
    *,
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[np.ndarray, int]:
    """(N, D) float32 embeddings for the images, computing only cache misses; also the miss count.

    ``embedder.prepare`` must have run (the key depends on its trained weights).
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
        vectors = np.asarray(
            embedder.embed(list(missing.values()), batch_size=batch_size, progress=progress), dtype=np.float32
        )
        if vectors.shape[0] != len(missing) or vectors.ndim != 2:
            raise EmbedError(
                f"embedder {embedder.name} returned shape {vectors.shape} for {len(missing)} images"
            )
        if not np.isfinite(vectors).all():
            raise EmbedError(f"embedder {embedder.name} produced non-finite values; check its weights")
        shard = f"shard-{_next_shard(directory):05d}.npy"
        directory.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(directory / shard, size=vectors.nbytes) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, vectors)
        # The shard file exists before the index points at it, so a crash in between only
        # leaves an unreferenced shard (recomputed next time), never a dangling index row.
        store.add_embedding_rows(key, shard, list(missing))
        index = store.embedding_rows(key)
    return _gather(directory, index, shas), len(missing)


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
