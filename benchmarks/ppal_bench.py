"""How long the ``ppal`` selection takes on a large pool: the candidate cut, the CCMS distance matrix
between the candidates and k-medoids, timed apart and together, for each batch size k.

    python benchmarks/ppal_bench.py                          # N = 100 000 images, k = 100 and 1 000
    python benchmarks/ppal_bench.py --sizes 100000 --ks 100 1000 3000 --boxes 30

The pool is synthetic: every image has a score and ``--boxes`` boxes on average (Poisson) of ``--classes``
classes with 256-number descriptors (the torchvision trainer's), float16 as the predictions file holds
them (N = 100 000 at 20 boxes is 1 GB of them). The work grows with the candidates (``ratio`` * k) and their
boxes, not with the pool.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from alloop.select import PoolBoxes, SelectionInputs, select
from alloop.select.ppal import DEFAULT_RATIO, ccms_distances, k_medoids


def make_pool(n: int, boxes: float, classes: int, dim: int, seed: int = 0) -> SelectionInputs:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(boxes, n)
    b = int(counts.sum())
    feats = np.empty((b, dim), np.float16)
    for s in range(0, b, 1 << 18):  # chunked: no (B, D) float32 temporary
        feats[s : s + (1 << 18)] = rng.standard_normal((min(1 << 18, b - s), dim), dtype=np.float32)
    pool = PoolBoxes(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                     rng.integers(0, classes, b), rng.uniform(0.05, 1.0, b).astype(np.float32), feats)
    return SelectionInputs(None, np.zeros(n, bool), rng.random(n).astype(np.float32), boxes=pool)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000], help="pool sizes N")
    p.add_argument("--ks", type=int, nargs="+", default=[100, 1000], help="batch sizes k")
    p.add_argument("--boxes", type=float, default=20.0, help="mean boxes per image")
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}, device {args.device}")
    print("| N | k | candidates | their boxes | CCMS matrix s | k-medoids s (rounds) | select() total s |")
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        inputs = make_pool(n, args.boxes, args.classes, args.dim)
        for k in args.ks:
            m = int(np.ceil(DEFAULT_RATIO * k))
            cand = np.argsort(-inputs.scores, kind="stable")[:m]
            t0 = time.perf_counter()
            dist = ccms_distances(inputs.boxes, cand, device=args.device)
            t1 = time.perf_counter()
            _, rounds = k_medoids(dist, k, seed=0)
            t2 = time.perf_counter()
            select("ppal", k, inputs, seed=0, device=args.device)
            t3 = time.perf_counter()
            n_boxes = int(np.minimum(np.diff(inputs.boxes.offsets)[cand], 32).sum())
            print(f"| {n:,} | {k:,} | {m:,} | {n_boxes:,} | {t1 - t0:.2f} | {t2 - t1:.2f} ({rounds}) | {t3 - t2:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
