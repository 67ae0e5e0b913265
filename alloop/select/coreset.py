"""Coreset selection: exact greedy k-center (Sener & Savarese, ICLR 2018) on embeddings.

Each pick is the candidate farthest from its nearest center, argmax_i min_{c in C} ||x_i - x_c||,
where C starts as the labeled set and grows by every pick. With nothing labeled the first pick is the
candidate closest to the mean (:func:`closest_to_mean`). Ties go to the lowest row.

The engine (:class:`MinDistanceIndex`) stays exact but avoids the plain loop's N x D read per pick.
Min-distances only shrink as centers are added, so a stale value is an upper bound. The engine keeps
a small *hot* set (the rows whose min-distance, or priority, is near the top: a compact copy, updated
at every pick) and leaves the *cold* rest stale, remembering the largest stale value ``tau``. A pick
from the hot set is provably the global argmax while it beats ``tau``; when it no longer does, the cold
rows are brought up to date against all the centers they missed in a few large GEMMs (compute-bound
instead of memory-bound) and the hot set is chosen again. The distance work per (row, center) pair is
done once either way; what changes is that most of it runs as matrix products. (Triangle-inequality
pruning, as in Elkan's k-means, was not needed: on unit vectors in 128-D it prunes nothing for
uniform data, and the GEMMs make the distance work cheap.)

"Exact" means: the same picks as a full pass per pick over float32 distances
||x||^2 + ||c||^2 - 2 x.c (the brute force in float64 agrees except where two candidates are within
float32 rounding, ~1e-7, of each other). On CUDA every row is kept hot by default: at GPU bandwidth
a full pass per pick is cheap.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from alloop.errors import SelectionError
from alloop.select.base import Selection, SelectionInputs, make_selection, torch_device

# Center rows per GEMM and data rows per GEMM: bounds the (rows x centers) temporary to 16 MB.
CENTER_CHUNK = 1024
ROW_CHUNK = 4096
# Rows per chunk for one-off passes (norms, the mean in float64): an ~8 MB temporary at D = 128.
MEAN_CHUNK = 8192


def default_hot_size(k: int, n: int, device: torch.device) -> int:
    """Initial hot-set size: on CPU 4k rows (at least 4096; the greedy usually takes ~k picks from the
    top); on CUDA all n rows, since reading N x D per pick is cheap at GPU bandwidth and skips rebuilds."""
    return n if device.type == "cuda" else max(4096, 4 * int(k))


DEFAULT_THREADS = 1


@contextlib.contextmanager
def engine_settings(threads: int = DEFAULT_THREADS) -> Iterator[int]:
    """Exact float32 matmuls (no TF32 / bf16) and one intra-op thread while selecting; restores both.

    The per-pick work is a few small ops on the hot set: with several threads each op pays a
    synchronisation that costs more than it saves. Only the large GEMMs of
    :meth:`MinDistanceIndex.sync` may use more: ``threads`` of them (0: torch's current setting),
    which this yields. The default is 1 because on a shared CPU one descheduled OpenMP thread stalls
    every parallel op: on the 2-core benchmark machine, busy with other jobs, 2 threads made the
    selection 2-4x slower than 1 (benchmarks/RESULTS.md). On a dedicated many-core machine and a
    large N, raise it.
    """
    old = torch.get_float32_matmul_precision()
    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    before = torch.get_num_threads()
    threads = threads or before
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_num_threads(1)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
        torch.set_float32_matmul_precision(old)
        torch.backends.cuda.matmul.allow_tf32 = old_tf32


@contextlib.contextmanager
def gemm_threads(n: int) -> Iterator[None]:
    """Use n intra-op threads inside (for big matrix products), then go back to the current count."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


def as_tensor(embeddings: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """(N, D) float32 contiguous on ``device``; no copy for a float32 C-contiguous CPU array."""
    if isinstance(embeddings, torch.Tensor):
        x = embeddings.detach()
    else:
        arr = np.ascontiguousarray(embeddings, dtype=np.float32)
        with warnings.catch_warnings():
            # A read-only array (np.load mmap) is fine: the engine never writes to it.
            warnings.simplefilter("ignore", UserWarning)
            x = torch.from_numpy(arr)
    return x.to(device=device, dtype=torch.float32).contiguous()


class MinDistanceIndex:
    """Squared min-distance of every row to a growing center set: exact on a hot set, lazy elsewhere.

    ``u`` holds each row's squared min-distance over the first ``synced`` centers (an upper bound of
    the current one); the hot rows' values ``uh`` are always current. Ties go to the lowest row.
    """

    def __init__(
        self,
        x: torch.Tensor,
        candidates: np.ndarray,
        centers: np.ndarray,
        *,
        hot_size: int,
        capacity: int,
        gemm_threads: int = 1,
    ) -> None:
        n = x.shape[0]
        dev = x.device
        self.x, self.n = x, n
        self.sq = torch.empty(n, dtype=torch.float32, device=dev)
        for s in range(0, n, MEAN_CHUNK):
            xs = x[s : s + MEAN_CHUNK]
            self.sq[s : s + MEAN_CHUNK] = (xs * xs).sum(1)
        self.u = torch.full((n,), math.inf, dtype=torch.float32, device=dev)
        self.cand = torch.as_tensor(np.asarray(candidates, dtype=bool), device=dev).clone()
        self.cidx = torch.empty(len(centers) + capacity, dtype=torch.int64, device=dev)
        self.cidx[: len(centers)] = torch.as_tensor(np.asarray(centers, dtype=np.int64), device=dev)
        self.n_centers = len(centers)
        self.synced = 0  # centers applied to every row of u
        self.hot_size = int(hot_size)
        self.gemm_threads = int(gemm_threads)
        self.rebuilds = 0
        self._picks_since_rebuild = 0
        self.priority: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        self._invalidate()

    # -- the hot set ---------------------------------------------------------------------------
    def _invalidate(self) -> None:
        """Forget the hot set: the next query rebuilds it."""
        self.hot = torch.empty(0, dtype=torch.int64, device=self.x.device)
        self.hot_np = np.empty(0, dtype=np.int64)
        self.all_hot = False
        self.tau = math.inf  # largest stale value outside the hot set; inf: nothing known

    def sync(self) -> None:
        """Apply every pending center to every row: u = min(u, ||x - c||^2), chunked GEMMs."""
        n_c = self.n_centers
        if self.synced == n_c:
            return
        if self.all_hot:  # all rows are hot and already current
            self.synced = n_c
            return
        with gemm_threads(self.gemm_threads):
            self._apply_centers(self.synced, n_c)
        self.synced = n_c

    def _apply_centers(self, start: int, stop: int) -> None:
        """u = min(u, ||x - c||^2) for centers [start, stop) over all rows, in (row x center) tiles."""
        n_c = stop
        for a in range(start, stop, CENTER_CHUNK):
            c = self.cidx[a : min(a + CENTER_CHUNK, n_c)]
            xc, sqc = self.x[c].T.contiguous(), self.sq[c].unsqueeze(0)
            for s in range(0, self.n, ROW_CHUNK):
                e = min(self.n, s + ROW_CHUNK)
                # ||x||^2 + ||c||^2 - 2 x.c; the row's own norm is added after the min (constant per row).
                g = torch.addmm(sqc, self.x[s:e], xc, beta=1.0, alpha=-2.0)
                d2 = g.amin(dim=1).add_(self.sq[s:e]).clamp_min_(0.0)
                torch.minimum(self.u[s:e], d2, out=self.u[s:e])

    def rebuild(self) -> None:
        """Sync all rows; the hot set is the top ``hot_size`` candidates by u and by ``priority(u, cand)``.

        Every cold candidate ends strictly below the hot threshold of each ranking, so a hot argmax
        that beats the cold bounds is the global one.
        """
        if self.rebuilds and self.n > 4 * self._picks_since_rebuild * self.hot_size:
            # Rebuilds cost ~N row reads, the hot set ~hot_size per pick: grow the hot set while
            # rebuilds dominate (capped at N/4 rows so the copy stays <= 1/4 of the matrix).
            self.hot_size = min(2 * self.hot_size, max(self.hot_size, self.n // 4))
        self.sync()
        self.rebuilds += 1
        self._picks_since_rebuild = 0
        n_cand = int(self.cand.sum())
        vals = torch.where(self.cand, self.u, -math.inf)
        if n_cand <= self.hot_size or 2 * self.hot_size >= self.n:
            self.all_hot, self.hot_np = True, np.arange(self.n)
            self.hot = torch.arange(self.n, device=self.x.device)
            self.xh, self.sqh, self.uh, self.hcand = self.x, self.sq, self.u, self.cand
            self.tau = -math.inf
            return
        theta = torch.topk(vals, self.hot_size, sorted=False).values.min()
        hot = vals >= theta  # all ties of the threshold join, so every cold value is < theta
        if self.priority is not None:
            pv = torch.where(self.cand, self.priority(self.u, self.cand), -math.inf)
            ptheta = torch.topk(pv, self.hot_size, sorted=False).values.min()
            hot |= pv >= ptheta
        cold_vals = torch.where(hot, -math.inf, vals)
        self.hot = torch.nonzero(hot).squeeze(1)  # ascending rows: argmax ties go to the lowest row
        self.hot_np = self.hot.cpu().numpy()
        self.all_hot = False
        self.xh, self.sqh = self.x[self.hot], self.sq[self.hot]
        self.uh, self.hcand = self.u[self.hot], self.cand[self.hot]
        self.tau = float(cold_vals.max())

    def cold(self) -> torch.Tensor:
        """Mask of candidates outside the hot set (their u is stale)."""
        mask = self.cand.clone()
        if not self.all_hot:
            mask[self.hot] = False
        else:
            mask[:] = False
        return mask

    # -- centers -------------------------------------------------------------------------------
    def add_center(self, i: int) -> None:
        """Row i becomes a center and stops being a candidate; the hot rows learn of it at once."""
        self.cidx[self.n_centers] = i
        self.n_centers += 1
        self.cand[i] = False
        self._picks_since_rebuild += 1
        if len(self.hot) == 0:
            return
        if not self.all_hot:
            pos = int(np.searchsorted(self.hot_np, i))
            if pos < len(self.hot_np) and self.hot_np[pos] == i:
                self.hcand[pos] = False
        xi = self.x[i]
        d2 = torch.mv(self.xh, xi).mul_(-2.0).add_(self.sqh).add_(self.sq[i]).clamp_min_(0.0)
        torch.minimum(self.uh, d2, out=self.uh)
        if self.all_hot:
            self.synced = self.n_centers

    def set_candidates(self, candidates: np.ndarray) -> None:
        """Replace the candidate set (e.g. a score threshold lifted); the hot set is rebuilt lazily."""
        self.sync()
        cand = torch.as_tensor(np.asarray(candidates, dtype=bool), device=self.x.device).clone()
        cand[self.cidx[: self.n_centers]] = False
        self.cand = cand
        self._invalidate()

    # -- queries -------------------------------------------------------------------------------
    def hot_farthest(self) -> tuple[int, float]:
        """(position in the hot set, squared distance) of the hot candidate farthest from the centers."""
        vals = torch.where(self.hcand, self.uh, -math.inf)
        j = torch.argmax(vals)  # first maximum: the lowest row
        v, jf = torch.stack([vals[j].double(), j.double()]).tolist()  # one device -> host copy
        return int(jf), v

    def farthest(self) -> tuple[int, float]:
        """Exact (row, squared distance) of the candidate farthest from the centers; (-1, -inf) if none."""
        if len(self.hot):
            j, v = self.hot_farthest()
            if v > self.tau:  # every cold value is <= tau, and only shrinks
                return int(self.hot_np[j]), v
        self.rebuild()
        j, v = self.hot_farthest()
        return (int(self.hot_np[j]), v) if v > -math.inf else (-1, v)

    def min_distance(self, rows: np.ndarray) -> np.ndarray:
        """Exact current min-distances (not squared) of ``rows``, float32."""
        self.sync()
        return self.u[torch.as_tensor(rows, device=self.x.device)].sqrt().cpu().numpy()


def check_engine_options(method: str, hot_size: Any, threads: Any) -> None:
    """hot_size: None or an int >= 1; threads: an int >= 0 (0: torch's current setting)."""
    if hot_size is not None and (isinstance(hot_size, bool) or not isinstance(hot_size, int) or hot_size < 1):
        raise SelectionError(f"{method} option hot_size must be a positive integer, got {hot_size!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise SelectionError(
            f"{method} option threads must be an integer >= 0 (0: torch's setting), got {threads!r}"
        )


def closest_to_mean(x: torch.Tensor, candidates: np.ndarray | torch.Tensor) -> int:
    """The "medoid" first pick: the candidate nearest (Euclidean) to the candidates' mean; ties: lowest row.

    Closest-to-mean rather than the sum-of-distances medoid: one O(N D) pass instead of O(N^2 D).
    Computed as argmin ||n x - sum||^2 in float64 (n = candidate count), which is exact for small
    integer embeddings, so only true ties are decided by row order.
    """
    cand = (
        torch.as_tensor(np.asarray(candidates, dtype=bool))
        if isinstance(candidates, np.ndarray)
        else candidates
    )
    cand = cand.to(x.device)
    n_cand = int(cand.sum())
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for s in range(0, len(x), MEAN_CHUNK):
        total += x[s : s + MEAN_CHUNK][cand[s : s + MEAN_CHUNK]].sum(0, dtype=torch.float64)
    best_v, best_i = math.inf, -1
    for s in range(0, len(x), MEAN_CHUNK):
        d = (x[s : s + MEAN_CHUNK].double().mul_(n_cand).sub_(total)).square_().sum(1)
        d = torch.where(cand[s : s + MEAN_CHUNK], d, math.inf)
        j = int(torch.argmin(d))  # first minimum: the lowest row
        if float(d[j]) < best_v:
            best_v, best_i = float(d[j]), s + j
    return best_i


def k_center_greedy(
    embeddings: np.ndarray | torch.Tensor,
    k: int,
    labeled: np.ndarray,
    *,
    device: str = "cpu",
    hot_size: int | None = None,
    threads: int = DEFAULT_THREADS,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact greedy k-center: k times pick argmax_i min_{c in labeled+picked} ||x_i - x_c||.

    Returns (indices, distances): rows in pick order and the min-distance that chose each (inf for
    a first pick made with no center: the unlabeled point closest to the mean). Ties: lowest row.
    """
    dev = torch_device(device)
    labeled = np.asarray(labeled, dtype=bool)
    cand = ~labeled
    k = int(min(k, int(cand.sum())))
    with engine_settings(threads) as gemm:
        x = as_tensor(embeddings, dev)
        hs = hot_size or default_hot_size(k, len(x), dev)
        index = MinDistanceIndex(x, cand, np.flatnonzero(labeled), hot_size=hs, capacity=k, gemm_threads=gemm)
        picks = np.empty(k, dtype=np.int64)
        dists = np.empty(k, dtype=np.float32)
        start = 0
        if index.n_centers == 0 and k > 0:
            picks[0], dists[0] = closest_to_mean(x, cand), math.inf
            index.add_center(int(picks[0]))
            start = 1
        for t in range(start, k):
            i, v = index.farthest()
            picks[t], dists[t] = i, math.sqrt(v)
            index.add_center(i)
    return picks, dists


def run_coreset(
    k: int,
    inputs: SelectionInputs,
    pool: np.ndarray,
    *,
    seed: int = 0,
    device: str = "cpu",
    hot_size: int | None = None,
    threads: int = DEFAULT_THREADS,
) -> Selection:
    """The ``coreset`` selector: :func:`k_center_greedy` from the labeled set (seed unused: deterministic)."""
    assert inputs.embeddings is not None
    check_engine_options("coreset", hot_size, threads)
    picks, dists = k_center_greedy(
        inputs.embeddings, k, inputs.labeled, device=device, hot_size=hot_size, threads=threads
    )
    start = "labeled set" if np.any(inputs.labeled) else "closest to mean"
    options: dict[str, Any] = {"first_center": start, "threads": threads}
    if hot_size is not None:
        options["hot_size"] = hot_size
    return make_selection("coreset", picks, dists, inputs.scores, options)
