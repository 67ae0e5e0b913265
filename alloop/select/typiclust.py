"""TypiClust (Hacohen, Dekel & Weinshall, "Active Learning on a Budget", ICML 2022).

Cluster every image's embedding into min(|L| + k, 500) clusters with k-means; then, for each of the
k picks, take the cluster with the fewest labeled images (ties: the largest cluster; clusters of at
most 5 images are skipped), and from it the unlabeled image of highest typicality *within* the
cluster, 1 / mean distance to its min(20, size/2) nearest cluster mates. Low budgets need typical
images: this covers the pool's modes one representative at a time instead of chasing outliers.

Following the paper's published procedure: k-means (scikit-learn, seeded; MiniBatchKMeans above 50
clusters, as the authors do), the same cluster caps and order. Counts are updated after every pick
so a cluster is revisited only after every eligible cluster got one (the paper's round robin).
A cluster's typicality is computed once, the first time a pick comes from it (never for a cluster no pick
comes from). With the faster k-NN pass of alloop.select.typicality this took 1,000 picks at 1M x 128
from 508 s to 50 s (benchmarks/RESULTS.md).

``uncertainty`` (w in [0, 1], default 0 = TypiClust exactly): once a model exists, the pick inside the
chosen cluster maximises (1 - w) * typicality + w * uncertainty, both min-max normalised (typicality
within the cluster, the score over the pool). The clusters still decide *where* the batch goes, in
proportion to the pool's modes, so a scene the model is blind to (low uncertainty everywhere, as in
issue 20) still gets its share; the score decides *which* image of each mode (cf. Cluster-Margin,
Citovsky et al., NeurIPS 2021: diversity across clusters, uncertainty within).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alloop.select.base import Selection, SelectionInputs, make_selection, unit_weight
from alloop.select.coreset import DEFAULT_THREADS, check_engine_options
from alloop.select.typicality import K_NEIGHBOURS, normalised, typicality

MIN_CLUSTER_SIZE = 5
MAX_CLUSTERS = 500
FULL_KMEANS_UP_TO = 50  # clusters; above, MiniBatchKMeans
# k-means is fitted on at most this many rows per cluster (and at least FIT_ROWS_MIN rows), a seeded
# sample; every row is then assigned to its nearest centre. Below that size the fit uses every row.
# (100k x 128 into 500 clusters took 44 s fitted on all rows on 2 cores; 1M would take minutes.)
FIT_ROWS_PER_CLUSTER = 40
FIT_ROWS_MIN = 20_000


def cluster(embeddings: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """(N,) int k-means cluster id per row (scikit-learn, seeded)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    x = np.asarray(embeddings, dtype=np.float32)
    n_clusters = int(max(1, min(n_clusters, len(x))))
    if n_clusters <= FULL_KMEANS_UP_TO:
        km = KMeans(n_clusters=n_clusters, n_init=3, random_state=seed)
    else:
        # Random initialisation: k-means++ seeding of 500 centres alone took ~10 s on 20k rows here,
        # 10x the whole MiniBatch fit; three random starts keep the best inertia.
        km = MiniBatchKMeans(n_clusters=n_clusters, batch_size=4096, n_init=3, init="random", random_state=seed)
    fit_rows = max(FIT_ROWS_MIN, FIT_ROWS_PER_CLUSTER * n_clusters)
    if len(x) <= fit_rows:
        return km.fit_predict(x).astype(np.int64)
    sample = np.sort(np.random.default_rng([seed, 1]).choice(len(x), fit_rows, replace=False))
    km.fit(x[sample])
    return km.predict(x).astype(np.int64)


def typiclust(
    embeddings: np.ndarray, labeled: np.ndarray, k: int, *, seed: int = 0,
    clusters: np.ndarray | None = None, scores: np.ndarray | None = None, uncertainty: float = 0.0,
    threads: int = DEFAULT_THREADS,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """k picks (row indices, in order), each pick's value within its cluster, and info."""
    labeled = np.asarray(labeled, dtype=bool).copy()
    n = len(labeled)
    k = int(min(k, int((~labeled).sum())))
    n_clusters = min(int(labeled.sum()) + k, MAX_CLUSTERS, n)
    ids = cluster(embeddings, n_clusters, seed) if clusters is None else np.asarray(clusters, np.int64)
    sizes = np.bincount(ids, minlength=ids.max() + 1 if n else 0)
    counts = np.bincount(ids[labeled], minlength=len(sizes))
    eligible = sizes > MIN_CLUSTER_SIZE
    if not eligible.any():  # a tiny pool: every cluster is small, use them all
        eligible = sizes > 0
    picks = np.empty(k, np.int64)
    values = np.empty(k, np.float32)
    x = np.asarray(embeddings, dtype=np.float32)
    use_scores = scores is not None and uncertainty > 0
    if use_scores:
        snorm = normalised(np.asarray(scores, np.float64), np.flatnonzero(~labeled)).astype(np.float64)
    # Rows grouped by cluster once (ascending rows within a cluster), and unlabeled rows per cluster
    # kept up to date, so a pick costs O(cluster), not O(N).
    by_cluster = np.argsort(ids, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    remaining = np.bincount(ids[~labeled], minlength=len(sizes))
    # A cluster's typicality depends on its members only: computed the first time a pick comes from
    # it, reused when the round robin comes back (only clusters picked from are ever computed).
    cached: dict[int, np.ndarray] = {}
    for t in range(k):
        open_ = eligible & (remaining > 0)
        if not open_.any():
            open_ = remaining > 0
        # Fewest labeled first, then the largest cluster, then the lowest id (deterministic).
        order = np.lexsort((np.arange(len(sizes)), -sizes, counts))
        c = int(next(i for i in order if open_[i]))
        members = by_cluster[starts[c] : starts[c + 1]]
        kk = max(1, min(K_NEIGHBOURS, len(members) // 2))
        if c not in cached:
            cached[c] = typicality(x[members], kk, threads=threads) if len(members) > 1 else np.ones(1)
        typ = cached[c]
        if use_scores:
            free = ~labeled[members]
            tnorm = normalised(typ, np.flatnonzero(free)).astype(np.float64)
            typ = (1.0 - uncertainty) * tnorm + uncertainty * snorm[members]
        typ = np.where(labeled[members], -np.inf, typ)
        j = int(np.argmax(typ))  # first maximum: the lowest row among ties
        picks[t], values[t] = members[j], typ[j]
        labeled[members[j]] = True
        counts[c] += 1
        remaining[c] -= 1
    info = {"clusters": len(sizes), "min_cluster_size": MIN_CLUSTER_SIZE,
            "uncertainty": float(uncertainty) if use_scores else 0.0}
    return picks, values, info


def run_typiclust(
    k: int, inputs: SelectionInputs, pool: np.ndarray, *, seed: int = 0, device: str = "cpu",
    uncertainty: float = 0.0, threads: int = DEFAULT_THREADS,
) -> Selection:
    """The ``typiclust`` selector (seeded through k-means); ``uncertainty`` > 0 uses the scores inside clusters.

    ``threads``: intra-op threads of the typicality pass (0: torch's current setting)."""
    assert inputs.embeddings is not None
    w = unit_weight("typiclust", "uncertainty", uncertainty)
    check_engine_options("typiclust", None, threads)
    picks, values, info = typiclust(inputs.embeddings, inputs.labeled, k, seed=seed, scores=inputs.scores,
                                    uncertainty=w, threads=threads)
    return make_selection("typiclust", picks, None, inputs.scores, {"seed": seed, **info}, objective=values)


__all__ = ["MAX_CLUSTERS", "MIN_CLUSTER_SIZE", "cluster", "run_typiclust", "typiclust"]
