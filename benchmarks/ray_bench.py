"""Embedding throughput: the local engine against Ray with 1 and 2 workers, side by side in one run.

    nice -n 10 python benchmarks/ray_bench.py --images 1024 --out benchmarks/results/ray_cpu.json

The same pool (N synthetic 320x240 JPEGs, written once under --cache), the same embedder
(mobilenet_v2 with random weights at --size px: the compute of ``auto``'s backbone, no download) and
the same cache code (alloop.embed.cache.cached_embeddings into a fresh store per run) for every
engine. Ray runs on a head started here (``ray start --head --num-cpus=C`` on 127.0.0.1), stopped
at the end. Each figure is the wall time of one cold run (actors start, build the model, then
embed), and, apart, the time to the first chunk back (actor start-up and the first batch), so the
steady rate is (N - first chunk's images) / (total - first chunk time). Every run's vectors are
checked against the first local run's (max abs difference). A Ray CPU actor runs torch on 1 thread
(Ray sets OMP_NUM_THREADS to the actor's 1 CPU); the local engine runs once per --threads value.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def make_pool(directory: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` distinct 320x240 JPEGs: a gradient, a few ellipses, noise (reused when already there)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = directory / f"img{i:05d}.jpg"
        top, bottom = rng.integers(0, 256, size=(2, 3))
        spots = rng.integers(0, 320, size=(8, 3))
        if not path.exists():
            t = np.linspace(0.0, 1.0, 240)[:, None, None]
            pixels = (top * (1 - t) + bottom * t) * np.ones((1, 320, 1)) + rng.normal(0, 6, size=(240, 320, 3))
            img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            draw = ImageDraw.Draw(img)
            for x, y, r in spots:
                draw.ellipse([x - r // 8, y * 3 // 4 - r // 8, x + r // 8, y * 3 // 4 + r // 8], fill=(200, 40, 30))
            img.save(path, quality=90)
        paths.append(path)
    return paths


def start_head(cpus: int, temp_dir: Path) -> tuple[subprocess.Popen, str]:
    """`ray start --head --block` in its own process group; returns it and its address once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={cpus}",
         "--num-gpus=0", "--object-store-memory=300000000", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp_dir}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    for _ in range(120):
        if subprocess.run([ray_bin, "status", f"--address={address}"], env=env, capture_output=True,
                          check=False).returncode == 0:
            return head, address
        time.sleep(1)
    raise RuntimeError("the Ray head did not come up")


def stop_head(head: subprocess.Popen) -> None:
    """SIGTERM to the head's process group, SIGKILL after 10 s."""
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=10)


def run_engine(engine, paths: list[Path], size: int, work: Path) -> dict:
    """Embed ``paths`` through cached_embeddings into a fresh store; seconds, first chunk, vectors."""
    from alloop.embed import build_embedder
    from alloop.embed.cache import cached_embeddings
    from alloop.engine import EmbedderSpec
    from alloop.store import Store

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    options = {"arch": "mobilenet_v2", "weights": "none", "image_size": size}
    embedder = build_embedder("backbone", options, work / "embedder", "cpu")
    embedder.prepare(paths, progress=False)
    spec = EmbedderSpec("backbone", options, str(work / "embedder"), "cpu", 0, embedder.key())
    store = Store(work / "alloop.db", create=True)
    first: list[tuple[float, int]] = []
    real_embed = engine.embed
    t0 = time.perf_counter()

    def timed_embed(*args, **kwargs):  # notes when the first chunk comes back
        for chunk in real_embed(*args, **kwargs):
            if not first:
                first.append((time.perf_counter() - t0, len(chunk.positions)))
            yield chunk

    engine.embed = timed_embed
    vectors, misses = cached_embeddings(store, work / "emb", embedder, [f"sha{i}" for i in range(len(paths))], paths,
                                        engine=engine, spec=spec, progress=False)
    seconds = time.perf_counter() - t0
    engine.close()
    store.close()
    assert misses == len(paths)
    first_s, first_n = first[0]
    steady = (len(paths) - first_n) / (seconds - first_s) if seconds > first_s and first_n < len(paths) else None
    return {"seconds": round(seconds, 2), "images_per_s": round(len(paths) / seconds, 1),
            "first_chunk_s": round(first_s, 2), "first_chunk_images": first_n,
            "steady_images_per_s": round(steady, 1) if steady else None, "vectors": vectors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--size", type=int, default=128, help="embedder input size (auto's backbone: 128)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs the Ray head offers (one per CPU worker)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="torch threads of the local engine, one run each (a Ray CPU actor has 1)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "alloop-ray-bench")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from alloop.engine import LocalEngine
    from alloop.engine.ray import RayEngine

    paths = make_pool(args.cache / "pool", args.images)
    results = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        results[f"local, {threads} thread{'s' if threads > 1 else ''}"] = run_engine(
            LocalEngine(), paths, args.size, args.cache / "local")
    temp_dir = Path(tempfile.mkdtemp(prefix="alloop-rb-"))
    head, address = start_head(args.cpus, temp_dir)
    try:
        for workers in (1, 2):
            results[f"ray, {workers} worker{'s' if workers > 1 else ''}"] = run_engine(RayEngine(address, workers), paths, args.size,
                                                   args.cache / f"ray-{workers}")
    finally:
        stop_head(head)
        shutil.rmtree(temp_dir, ignore_errors=True)
    reference = next(iter(results.values()))["vectors"]
    print(f"{args.images} images 320x240 JPEG, mobilenet_v2 (random weights) at {args.size} px, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), Ray head --num-cpus={args.cpus}")
    print("| engine | total s | images/s | first chunk s (images) | steady images/s | max abs diff vs the first |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        diff = float(np.abs(r.pop("vectors") - reference).max())
        r["max_abs_diff"] = diff
        print(f"| {name} | {r['seconds']} | {r['images_per_s']} | {r['first_chunk_s']} ({r['first_chunk_images']}) "
              f"| {r['steady_images_per_s']} | {diff:.1e} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"images": args.images, "size": args.size, "cpus": args.cpus,
                                        "threads": args.threads, "results": results}, indent=1))


if __name__ == "__main__":
    main()
