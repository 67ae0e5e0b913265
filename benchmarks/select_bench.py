"""Selection engine benchmark: alloop's exact greedy k-center vs lightly-mundig, a plain torch loop,
CORAL and random. Prints a table (seconds, peak extra memory, ratio vs lightly-mundig, k-center radius).

Each case runs in its own subprocess so peak memory is that case's alone: the peak resident set size
(Linux VmHWM, reset after the embeddings are built) minus the resident size before the run.

    python benchmarks/select_bench.py                              # N = 100 000, D = 128, k = 1 000
    python benchmarks/select_bench.py --sizes 1000000 --methods coreset coral random mundig
    python benchmarks/select_bench.py --sizes 200000 --data clustered --methods compose typiclust \
        --spec "typicality=1" --baseline 8c32964^     # each case also at an earlier commit, side by side

``--baseline REV`` exports alloop/ at REV (``git archive``) into a temporary folder and runs every case a
second time with that alloop first on PYTHONPATH, so before and after are measured in one run on the
same load (the row says which alloop it imported).

lightly-mundig is a dev/bench extra (``pip install lightly-mundig``); alloop never imports it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("mundig", "coreset", "plain", "coral", "random", "typiclust", "maxherding", "coral_typicality", "compose")
# The "compose" case: a weighted-term spec (alloop.select.compose), by default all three CORAL-engine terms.
COMPOSE_SPEC = "diversity=1, uncertainty=1, typicality=0.5"
REPO = Path(__file__).resolve().parent.parent


def make_embeddings(kind: str, n: int, d: int, seed: int = 0) -> np.ndarray:
    """(n, d) float32 unit rows: 'uniform' on the sphere, or 'clustered' (100 Gaussian blobs, sigma 0.3)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    if kind == "clustered":
        centers = rng.standard_normal((100, d), dtype=np.float32)
        x *= 0.3
        for s in range(0, n, 65536):  # chunked: no N x D temporaries on top of x
            x[s : s + 65536] += centers[rng.integers(0, 100, min(65536, n - s))]
    for s in range(0, n, 65536):
        x[s : s + 65536] /= np.linalg.norm(x[s : s + 65536], axis=1, keepdims=True)
    return x


def kcenter_radius(x: np.ndarray, centers: np.ndarray) -> float:
    """max over non-centers of the Euclidean distance to the nearest center, float64-checked on the argmax."""
    import torch

    xt = torch.from_numpy(x)
    c = xt[torch.as_tensor(np.array(centers))]
    csq = (c * c).sum(1)
    mask = np.ones(len(x), bool)
    mask[centers] = False
    best, arg = -1.0, -1
    for s in range(0, len(x), 8192):
        xs = xt[s : s + 8192]
        d2 = ((xs * xs).sum(1, keepdim=True) + csq - 2 * xs @ c.T).amin(1).clamp_min(0)
        d2[torch.as_tensor(~mask[s : s + 8192])] = -1
        j = int(torch.argmax(d2))
        if float(d2[j]) > best:
            best, arg = float(d2[j]), s + j
    exact = ((x[arg].astype(np.float64) - x[centers].astype(np.float64)) ** 2).sum(1).min()
    return math.sqrt(exact)


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5" resets VmHWM to the current RSS
        f.write("5")


def plain_loop(x: np.ndarray, k: int, device: str) -> np.ndarray:
    """The textbook loop: one N x D matrix-vector product per pick (the memory-bound baseline)."""
    import torch

    xt = torch.from_numpy(x).to(device)
    sq = (xt * xt).sum(1)
    u = torch.full((len(x),), math.inf, device=device)
    picks = [0]
    for _ in range(k - 1):
        c = picks[-1]
        torch.minimum(u, (sq - 2 * torch.mv(xt, xt[c]) + sq[c]).clamp_min_(0), out=u)
        u[c] = -1
        picks.append(int(torch.argmax(u)))
    return np.array(picks)


def _select_with(
    method: str,
    x: np.ndarray,
    k: int,
    scores: np.ndarray,
    device: str,
    warmup: bool = False,
    threads: int = 0,
    spec: str = COMPOSE_SPEC,
) -> tuple[np.ndarray, float, dict]:
    """(picks, seconds, extra timings) of one method; warmup also runs alloop's lazy (cold-set) path."""
    import torch

    from alloop.select import SelectionInputs, select

    n = len(x)
    t0 = time.perf_counter()
    extra: dict = {}
    if method == "mundig":
        import lightly_mundig

        sel = lightly_mundig.Selection()
        sel.add_diversifying_strategy(x, 1.0)
        t1 = time.perf_counter()
        picks = np.array(sel.run_selection([], n, k), dtype=np.int64)
        t2 = time.perf_counter()
        extra = {"setup_s": t1 - t0, "run_s": t2 - t1}
        return picks, t2 - t1, extra  # the selection itself; setup (copying into Rust) reported apart
    if method == "plain":
        picks = plain_loop(x, k, device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return picks, time.perf_counter() - t0, extra
    options: dict = {}
    if method in ("coreset", "coral", "coral_typicality", "compose"):
        options = {"hot_size": 64} if warmup else {}
        if threads:
            options["threads"] = threads
    if method == "coral_typicality":
        method, options["typicality"] = "coral", 0.5
    if method == "compose":
        method = spec
    labeled = np.zeros(n, bool)
    s = select(method, k, SelectionInputs(x, labeled, scores), device=device, **options)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return s.indices, time.perf_counter() - t0, extra


def run_case(
    kind: str, n: int, d: int, k: int, method: str, device: str, threads: int = 0, spec: str = COMPOSE_SPEC
) -> dict:
    """One measurement in this process; returns a JSON-able row."""
    import torch

    import alloop

    if threads:
        torch.set_num_threads(threads)
    x = make_embeddings(kind, n, d)
    scores = np.random.default_rng(1).gamma(2.0, size=n)
    matrix_mb = x.nbytes / 2**20
    row: dict = {"data": kind, "N": n, "D": d, "k": k, "method": method, "device": device}
    row["torch_threads"] = torch.get_num_threads()
    row["alloop"] = str(Path(alloop.__file__).parent)
    # Warm up on a small input first, so that code paged in on first use (BLAS kernels, the CUDA
    # context) and allocator pools do not count as the case's memory.
    small = make_embeddings(kind, 8192, d, seed=1)
    for lazy in (True, False):
        small_scores = np.random.default_rng(2).gamma(2.0, size=8192)
        _select_with(method, small, min(k, 100), small_scores, device, lazy, threads, spec)
    del small
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    _reset_peak()
    base = _rss_mb("VmRSS")
    picks, seconds, extra = _select_with(method, x, k, scores, device, threads=threads, spec=spec)
    row["seconds"] = seconds
    row.update(extra)
    row["peak_extra_mb"] = _rss_mb("VmHWM") - base
    if device.startswith("cuda"):
        row["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    row["matrix_mb"] = matrix_mb
    row["radius"] = kcenter_radius(x, picks)
    row["first_picks"] = picks[:5].tolist()
    row["picks_sha1"] = hashlib.sha1(np.ascontiguousarray(picks, dtype=np.int64).tobytes()).hexdigest()
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--data", nargs="+", default=["uniform", "clustered"], choices=["uniform", "clustered"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads for the plain loop and alloop's GEMMs (0: each tool's default: "
        "torch's for the plain loop, alloop's `threads` option default 1)",
    )
    p.add_argument(
        "--spec", default=COMPOSE_SPEC, help=f"the term spec the compose case runs (default {COMPOSE_SPEC!r})"
    )
    p.add_argument("--baseline", metavar="REV", help="also run every case with alloop/ as of this git commit")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    a = p.parse_args()
    if a.case:
        kind, n, method = a.case.split(",")
        print(json.dumps(run_case(kind, int(n), a.dim, a.k, method, a.device, a.threads, a.spec)))
        return
    with tempfile.TemporaryDirectory(prefix="select_bench_") as tmp:
        versions: list[tuple[str, str | None]] = [("", None)]
        if a.baseline:
            versions.insert(0, (f" @{a.baseline}", export_alloop(a.baseline, Path(tmp))))
        print_table(a, versions)


def export_alloop(rev: str, into: Path) -> str:
    """alloop/ as of git commit ``rev`` under ``into`` (git archive); the folder to put on PYTHONPATH."""
    cmd = ["git", "-C", str(REPO), "archive", rev, "alloop"]
    archive = subprocess.run(cmd, capture_output=True, check=False)
    if archive.returncode != 0:
        why = archive.stderr.decode().strip()
        sys.exit(f"select_bench: --baseline {rev}: {why} (give a commit of this repo)")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return str(into)


def print_table(a: argparse.Namespace, versions: list[tuple[str, str | None]]) -> None:
    """Run every (data, size, method, version) case in its own process and print the table rows."""
    import torch

    threads = (
        f"{a.threads} torch threads everywhere"
        if a.threads
        else (f"plain loop {torch.get_num_threads()} torch threads, alloop default (1 GEMM thread)")
    )
    print(f"# {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {threads}")
    print(
        f"# lightly-mundig uses all cores (rayon); python {platform.python_version()}; "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print(f"# command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    if "compose" in a.methods:
        print(f"# compose: {a.spec}")
    same = " same picks as baseline |" if a.baseline else ""
    head = "| data | N | D | k | method | seconds | peak extra MB (x matrix) | vs mundig | k-center radius |"
    print(head + same)
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if a.baseline else ""))
    for kind in a.data:
        for n in a.sizes:
            ref = None
            before: dict[str, str] = {}  # method -> the baseline's picks (sha1)
            for method, (tag, path) in ((m, v) for m in a.methods for v in versions):
                cmd = [sys.executable, __file__, "--case", f"{kind},{n},{method}", "--dim", str(a.dim)]
                cmd += ["--k", str(a.k), "--device", a.device, "--threads", str(a.threads), "--spec", a.spec]
                env = dict(os.environ)
                if path:
                    env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
                out = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
                if out.returncode != 0:
                    print(
                        f"| {kind} | {n} | {a.dim} | {a.k} | {method}{tag} "
                        f"| failed: {out.stderr.strip()[-200:]} |"
                    )
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if path and not r["alloop"].startswith(path):
                    sys.exit(f"select_bench: the baseline case imported {r['alloop']}, not {path}")
                if method == "mundig":
                    ref = r["seconds"]
                if path:
                    before[method] = r["picks_sha1"]
                if a.baseline:
                    verdict = {None: "baseline failed", r["picks_sha1"]: "yes"}.get(before.get(method), "no")
                    same = "-" if path else verdict
                    same = f" {same} |"
                secs = f"{r['seconds']:.2f}"
                if method == "mundig":
                    secs += f" (+{r['setup_s']:.2f} setup)"
                ratio = f"{r['seconds'] / ref:.3f}" if ref else "-"
                mem = f"{r['peak_extra_mb']:.0f} ({r['peak_extra_mb'] / r['matrix_mb']:.2f}x)"
                if "gpu_peak_mb" in r:
                    mem += f", GPU {r['gpu_peak_mb']:.0f}"
                print(
                    f"| {kind} | {n} | {a.dim} | {a.k} | {method}{tag} | {secs} | {mem} | {ratio} "
                    f"| {r['radius']:.4f} |{same}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
