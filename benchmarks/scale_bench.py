"""How `alloop init` and one `alloop step` grow with the pool: seconds and peak RSS per stage at N images.

    python benchmarks/scale_bench.py --sizes 10000 100000 1000000 --init-method coreset \\
        --out benchmarks/results/scale_cpu_1m.json

Pools are N distinct 64x48 JPEGs from a seeded generator, written once under --cache/images and
hard-linked into pool-N/ (every pool reuses the files of the smaller ones; every file's content
differs, so no image is a duplicate of another). Each N runs in its own process (peak RSS is per
process), which times:

- init: register, embed, select, export, report (the loop's own StageRunner timings);
- step: import (a COCO file with one box per batch image), train, evaluate, infer, score, select,
  export, report;
- status: ``alloop status --json``'s data (project_status), and the store's all-images read.

What the model costs is not the point here, so the embedder is a stub (``--embedder thumb``, the
default: benchmarks/plugins/alloop_benchstub, 8x8 grey thumbnails decoded in JPEG draft mode; or
``backbone``: mobilenet_v2, random weights, 32 px, the 1k/10k figures of before) and the trainer the
``meanbox`` test plugin (tests/data/plugin_pkg/): it trains in milliseconds and predicts from the
image header. Both are found through their entry points like any installed plugin. The seconds spent
inside the models (the embedder's ``embed``, the trainer's ``train`` and ``predict``) are summed
apart, so the orchestration overhead of a step = its total − those (issue 14's definition).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = (ROOT / "tests" / "data" / "plugin_pkg", ROOT / "benchmarks" / "plugins")
WIDTH, HEIGHT = 64, 48
PER_FOLDER = 1000  # images per sub-folder, as cameras and datasets shard them
BATCH = 100  # the batch size of init and of the step


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="pool sizes N")
    p.add_argument("--cache", type=Path, default=ROOT / "data" / "scale_bench", help="where pools are written once")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale_cpu.json")
    p.add_argument("--embedder", choices=("thumb", "backbone"), default="thumb",
                   help="thumb: the stub (8x8 thumbnails); backbone: random mobilenet_v2 at 32 px")
    p.add_argument("--init-method", default="auto", help="init's selection method (auto = typiclust)")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: run one N, print JSON
    p.add_argument("--step-only", action="store_true", help=argparse.SUPPRESS)  # internal: reuse init
    p.add_argument("--build-only", action="store_true", help="write the pools of --sizes and stop (no timing)")
    return p


# ------------------------------------------------------------------------------------------------
# the pool


def image_bytes(index: int) -> bytes:
    """A distinct 64x48 JPEG: a seeded gradient, a few rectangles and noise (content differs per index)."""
    from io import BytesIO

    from PIL import Image

    rng = np.random.default_rng(index)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = rng.uniform(0, 255, 3)[None, None, :] + rng.uniform(-2, 2, 3)[None, None, :] * (xx + yy)[..., None]
    for _ in range(3):
        x0, y0 = rng.integers(0, WIDTH - 8), rng.integers(0, HEIGHT - 8)
        base[y0:y0 + rng.integers(4, 24), x0:x0 + rng.integers(4, 24)] = rng.uniform(0, 255, 3)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buf = BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def relpath(index: int) -> str:
    return f"{index // PER_FOLDER:04d}/img_{index:07d}.jpg"


def _write_images(master: Path, start: int, stop: int) -> int:
    """Write the missing master images ``start..stop-1`` (one worker's share); returns how many it wrote."""
    written = 0
    for i in range(start, stop):
        src = master / relpath(i)
        if src.exists():
            continue
        src.parent.mkdir(parents=True, exist_ok=True)
        tmp = src.with_suffix(".tmp")
        tmp.write_bytes(image_bytes(i))
        tmp.rename(src)
        written += 1
    return written


def build_pool(cache: Path, n: int, workers: int = 2) -> Path:
    """``cache/pool-n``: hard links to the first ``n`` images of ``cache/images`` (written once, by
    ``workers`` processes: ~0.55 ms of encoding per image, so 1M images take ~5 min on 2 cores)."""
    from concurrent.futures import ProcessPoolExecutor

    master, pool = cache / "images", cache / f"pool-{n}"
    spans = [(a, min(a + PER_FOLDER, n)) for a in range(0, n, PER_FOLDER)]
    todo = [s for s in spans if not (master / relpath(s[1] - 1)).exists() or not (master / relpath(s[0])).exists()]
    if todo:
        with ProcessPoolExecutor(workers) as ex:
            list(ex.map(_write_images, [master] * len(todo), *zip(*todo)))
    for i in range(n):
        dst = pool / relpath(i)
        if not dst.exists():
            if i % PER_FOLDER == 0 or not dst.parent.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(master / relpath(i), dst)
    return pool


# ------------------------------------------------------------------------------------------------
# measuring


def peak_rss_mib() -> float:
    """This process's peak resident set since the last reset (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Start a new VmHWM window (Linux: writing 5 to clear_refs resets the peak to the current RSS)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def watch_stages(peaks: dict[str, float]) -> None:
    """Record each loop stage's peak RSS into ``peaks`` (stage name -> MiB); its seconds the loop stores itself."""
    from alloop.loop import runner

    original = runner.StageRunner.run

    def run(self: Any, name: str, stage: Callable[..., Any]) -> Any:
        reset_peak_rss()
        try:
            return original(self, name, stage)
        finally:
            peaks[f"{'init' if self.iteration == 0 else 'step'}.{name}"] = round(peak_rss_mib(), 1)

    runner.StageRunner.run = run  # type: ignore[method-assign]


def time_models(seconds: dict[str, float]) -> None:
    """Sum the seconds spent inside the models (embed, train, predict) into ``seconds``: the forward
    passes the issue's "orchestration overhead" leaves out."""
    import alloop_benchstub
    import alloop_meanbox

    def clock(cls: Any, name: str) -> None:
        original = getattr(cls, name)

        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0

        setattr(cls, name, run)

    clock(alloop_meanbox.MeanBoxTrainer, "train")
    clock(alloop_meanbox.MeanBoxTrainer, "predict")
    from alloop.embed.backbone import BackboneEmbedder

    clock(alloop_benchstub.ThumbEmbedder, "embed")
    clock(BackboneEmbedder, "embed")


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    reset_peak_rss()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, peak_rss_mib()


def write_labels(project_dir: Path, out: Path) -> int:
    """A COCO file with one box per image waiting for labels (what a labeler would hand back)."""
    from alloop.project import Project

    with Project.open(project_dir, lock=False) as p:
        queued = p.store.images(p.store.queued_ids())
    rng = np.random.default_rng(0)
    anns = []
    for k, r in enumerate(queued):
        w, h = rng.uniform(8, 24, 2)
        x, y = rng.uniform(0, r.width - w), rng.uniform(0, r.height - h)
        anns.append({"id": k + 1, "image_id": r.id, "category_id": 1, "bbox": [x, y, w, h], "area": w * h,
                     "iscrowd": 0})
    coco = {"images": [{"id": r.id, "file_name": r.path, "width": r.width, "height": r.height} for r in queued],
            "annotations": anns, "categories": [{"id": 1, "name": "object"}]}
    out.write_text(json.dumps(coco))
    return len(queued)


def run_one(n: int, cache: Path, embedder: str, init_method: str, step_only: bool = False) -> dict[str, Any]:
    """Init and one step on a pool of ``n`` images in a fresh project; seconds and peak MiB per stage.

    ``step_only``: keep the project's init (a step of an earlier run is thrown away) and time the step.
    """
    for d in PLUGIN_DIRS:  # the meanbox and thumb plugins, found through their dist-info's entry points
        sys.path.insert(0, str(d))
    import shutil

    import torch

    from alloop import loop
    from alloop.project import Project, ProjectConfig
    from alloop.summary import project_status

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    pool = build_pool(cache, n)
    pool_s = time.perf_counter() - t0
    project_dir = cache / f"project-{n}"
    options = ({"arch": "mobilenet_v2", "weights": "none", "image_size": 32} if embedder == "backbone" else {})
    config = ProjectConfig(image_root=str(pool), device="cpu", trainer="meanbox", embedder=embedder,
                           embedder_options=options, init_method=init_method)
    peaks: dict[str, float] = {}
    watch_stages(peaks)
    model_s: dict[str, float] = {}
    time_models(model_s)
    res: dict[str, Any] = {"n": n, "pool_build_s": round(pool_s, 2), "embedder": embedder, "init_method": init_method,
                           "load": round(os.getloadavg()[0], 1)}
    labels = cache / f"labels-{n}.json"
    if step_only and project_dir.exists():
        with Project.open(project_dir, lock=False) as p:
            if p.store.iteration(1) is not None:
                from alloop.loop.plan import discard_iteration

                discard_iteration(p, 1)
    else:
        if project_dir.exists():
            shutil.rmtree(project_dir)
        _, res["init_s"], _ = timed(lambda: loop.init(project_dir, pool, n=BATCH, config=config, progress=False))
        res["init_model_s"] = round(model_s.pop("embed", 0.0), 2)
        res["labeled"] = write_labels(project_dir, labels)
    model_s.clear()
    _, res["step_s"], _ = timed(lambda: loop.step(project_dir, labels=labels, n=BATCH, progress=False))
    res["step_model_s"] = {k: round(v, 2) for k, v in model_s.items()}
    res["step_overhead_s"] = round(res["step_s"] - sum(model_s.values()), 2)
    with Project.open(project_dir, lock=False) as p:
        stages = {f"{'init' if it.n == 0 else 'step'}.{k}": round(v, 3)
                  for it in p.store.iterations() for k, v in it.timings.items()}
        _, res["store_images_s"], _ = timed(p.store.images)
    _, res["status_s"], res["status_peak_mib"] = timed(lambda: project_status(project_dir))
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("alloop")), "status", str(project_dir), "--json"],
                   check=True, capture_output=True)
    res["status_cli_s"] = round(time.perf_counter() - t0, 2)
    res["stages_s"] = stages
    res["stages_peak_mib"] = peaks
    res["db_mib"] = round((project_dir / "alloop.db").stat().st_size / 2**20, 1)
    res["process_peak_mib"] = round(max(peaks.values()), 1)
    return res


# ------------------------------------------------------------------------------------------------
# the table


def growth(small: float, large: float, ratio: float) -> str:
    """How a figure grows from one N to the next: the exponent k in t ~ N^k."""
    if small <= 0.005 or large <= 0:
        return "–"
    return f"N^{np.log(large / small) / np.log(ratio):.2f}"


def table(results: list[dict[str, Any]]) -> str:
    names = list(results[0]["stages_s"]) + ["status"]
    head = "| stage | " + " | ".join(f"N={r['n']:,} s (MiB)" for r in results) + " | growth |"
    lines = [head, "|" + "---|" * (len(results) + 2)]
    for name in names:
        cells, secs = [], []
        for r in results:
            s = r["status_s"] if name == "status" else r["stages_s"].get(name, 0.0)
            mib = r["status_peak_mib"] if name == "status" else r["stages_peak_mib"].get(name, 0.0)
            secs.append(s)
            cells.append(f"{s:.2f} ({mib:.0f})")
        g = growth(secs[-2], secs[-1], results[-1]["n"] / results[-2]["n"]) if len(results) > 1 else "–"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {g} |")
    for key, label in (("init_s", "init total"), ("init_model_s", "init: inside the embedder"),
                       ("step_s", "step total"), ("step_overhead_s", "step orchestration (total - models)"),
                       ("store_images_s", "store.images()"), ("status_cli_s", "`alloop status --json` (process)")):
        secs = [r.get(key, 0.0) for r in results]
        g = growth(secs[-2], secs[-1], results[-1]["n"] / results[-2]["n"]) if len(results) > 1 else "–"
        lines.append(f"| {label} | " + " | ".join(f"{s:.2f}" for s in secs) + f" | {g} |")
    lines.append("| peak RSS MiB | " + " | ".join(f"{r['process_peak_mib']:.0f}" for r in results) + " | |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.build_only:
        for n in sorted(args.sizes):
            t0 = time.perf_counter()
            build_pool(args.cache, n)
            print(f"pool-{n}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.cache, args.embedder, args.init_method, args.step_only)))
        return
    results = []
    for n in sorted(args.sizes):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--cache", str(args.cache),
                              "--embedder", args.embedder, "--init-method", args.init_method,
                              *(["--step-only"] if args.step_only else [])],
                             check=True, stdout=subprocess.PIPE, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"N={n}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        # Written after every N: a long run that is stopped keeps what it measured.
        doc = {"command": " ".join(sys.argv), "machine": f"{platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", "batch": BATCH, "results": results}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2))
    print(table(results))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
