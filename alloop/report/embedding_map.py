"""The report's map: a 2-D projection of the pool's cached embeddings, each point marked by its status."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alloop.embed.cache import load_cached_embeddings
from alloop.loop.records import embedder_of, read_stages
from alloop.project import Project
from alloop.store import ImageRow, Store

log = logging.getLogger("alloop")

# The map stays readable and fast for huge pools: pool points beyond this are subsampled
# (labeled and selected images are always drawn).
MAP_MAX_POINTS = 20_000


@dataclass(frozen=True, eq=False)
class EmbeddingMap:
    """A 2-D projection of the pool's embeddings with each point's status."""

    method: str  # "PCA" or "UMAP"
    embedder: str  # the cache key
    points: np.ndarray  # (M, 2) float32
    image_ids: np.ndarray  # (M,) int64
    status: np.ndarray  # (M,) str: "pool" | "labeled" | "selected"
    subsampled_from: int  # pool size before subsampling (== M when not subsampled)


def embedder_key(store: Store, iteration: int) -> str | None:
    """The embedder key recorded by the latest iteration at or before ``iteration`` that names one."""
    for it in sorted((it.n for it in store.iterations() if it.n <= iteration), reverse=True):
        key = embedder_of(read_stages(it, store.stages(it)))
        if key:
            return key
    return None


def gather_embedding_map(
    project: Project,
    iteration: int,
    images: Sequence[ImageRow],
    labeled: set[int],
    selected: set[int],
    notes: dict[str, str],
) -> EmbeddingMap | None:
    """The map of ``iteration``: pool, labeled and selected images (None, with a note, without embeddings)."""
    key = embedder_key(project.store, iteration)
    if key is None:
        notes["embedding-map"] = "No embedder recorded for this project yet, so there is no map."
        return None
    index = project.store.embedding_rows(key)
    rows = [r for r in images if r.sha256 in index]
    if len(rows) < 3:
        notes["embedding-map"] = (
            f"No cached embeddings under {key} (artifacts/embeddings/{key}); run `alloop embed` to draw the map."
        )
        return None
    status = np.array(["selected" if r.id in selected else "labeled" if r.id in labeled else "pool" for r in rows])
    keep = np.arange(len(rows))
    if len(rows) > MAP_MAX_POINTS:
        # Subsample before loading: a huge pool's vectors need not all sit in memory for a picture.
        rng = np.random.default_rng(0)
        pool = np.flatnonzero(status == "pool")
        others = np.flatnonzero(status != "pool")
        n_pool = max(0, MAP_MAX_POINTS - len(others))
        keep = np.sort(np.concatenate([others, rng.choice(pool, size=min(n_pool, len(pool)), replace=False)]))
        notes["embedding-map"] = (
            f"{len(keep)} of {len(rows)} images drawn (every labeled and selected one, a random share of the pool)."
        )
    kept = [rows[i] for i in keep.tolist()]
    try:
        vectors = load_cached_embeddings(project.store, project.embeddings_dir(key), key, [r.sha256 for r in kept])
    except Exception as exc:  # noqa: BLE001 - a damaged cache must not stop the report
        notes["embedding-map"] = f"Embedding cache {key} is unreadable ({exc}); the map is skipped."
        return None
    if vectors is None:
        notes["embedding-map"] = f"Embeddings under {key} are incomplete; the map is skipped."
        return None
    missing = len(images) - len(rows)
    if missing:
        note = f"{missing} images have no cached embedding."
        notes["embedding-map"] = f"{notes.get('embedding-map', '')} {note}".strip()
    points, method = project_2d(np.asarray(vectors, np.float32))
    ids = np.array([r.id for r in kept], np.int64)
    return EmbeddingMap(method, key, points, ids, status[keep], len(rows))


def project_2d(vectors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, 2) coordinates of (N, D) vectors: UMAP when installed (and N is large enough), else PCA."""
    if len(vectors) >= 20:
        try:
            import umap  # type: ignore[import-not-found]

            reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(vectors) - 1))
            return np.asarray(reducer.fit_transform(vectors), np.float32), "UMAP"
        except ImportError:
            pass
        except Exception as exc:  # noqa: BLE001 - UMAP is optional; PCA always works
            log.warning("UMAP failed (%s); the map uses PCA", exc)
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    # PCA: deterministic up to sign, which we fix so reruns draw the same picture.
    comps = principal_axes(centred.astype(np.float64), 2)
    comps *= np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])[:, None]
    pts = centred @ comps.T
    if pts.shape[1] < 2:
        pts = np.hstack([pts, np.zeros((len(pts), 2 - pts.shape[1]))])
    return pts.astype(np.float32), "PCA"


def principal_axes(centred: np.ndarray, k: int) -> np.ndarray:
    """(k, D) leading principal axes of centred (N, D) data: the top right singular vectors, up to sign.

    Only the top ``k`` eigenvectors of the smaller Gram matrix (D x D, or N x N when N < D) are
    computed: a full SVD of a 20,000 x 1280 map took over a minute on 2 cores, this a few seconds.
    """
    from scipy.linalg import eigh

    n, d = centred.shape
    k = min(k, n, d)
    if d <= n:
        _, vecs = eigh(centred.T @ centred, subset_by_index=[d - k, d - 1])
        return np.ascontiguousarray(vecs[:, ::-1].T)
    _, vecs = eigh(centred @ centred.T, subset_by_index=[n - k, n - 1])
    axes = (centred.T @ vecs[:, ::-1]).T
    # A zero singular value (all points equal) leaves a zero axis: its coordinates are 0, as with an SVD.
    return axes / np.maximum(np.linalg.norm(axes, axis=1, keepdims=True), 1e-12)
