"""Cold start: what does each method put in the first batch, before any model exists?

No detector is trained: the first batch is judged by what it gives the first model to learn from, the
quantities benchmarks/RESULTS.md found to decide early rounds: boxes per labeled image (random's
batches carried ~30% more boxes than coreset's) and how the batch's scene mix matches the pool's
(total variation distance; a test split is drawn like the pool). Embeddings: the ImageNet mobilenet_v2
backbone from the offline weights package at 128 px (what benchmarks/label_efficiency.py uses), and
with ``--embedders backbone,ssl`` also alloop's default self-supervised embedder (SimCLR on the pool,
its default 5 epochs at 64 px), so the features' effect on each method is measured side by side
(issue 13 item 5: TypiClust and MaxHerding assume good self-supervised features).

    python benchmarks/cold_start.py --family cultivars --seeds 5
    python benchmarks/cold_start.py --family orchard --seeds 5 --first 25 --embedders backbone,ssl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from alloop.demo import offline_imagenet_backbone
from alloop.embed import build_embedder
from alloop.select import SelectionInputs, select
from alloop.synthetic import FAMILIES, generate_orchard

METHODS = ("random", "coreset", "typiclust", "maxherding")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", choices=sorted(FAMILIES), default="cultivars")
    p.add_argument("--pool", type=int, default=300)
    p.add_argument("--first", type=int, default=25, help="size of the first batch")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("bench-cold-start"))
    p.add_argument("--embedders", default="backbone",
                   help="comma-separated: backbone (ImageNet mobilenet_v2, 128 px), ssl (alloop's default)")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    data = args.out / f"data-{args.family}"
    if not (data / "annotations.json").exists():
        generate_orchard(data, args.pool, size=(320, 240), seed=1234, family=args.family)
    gt = json.loads((data / "annotations.json").read_text())
    images = gt["images"]
    boxes = Counter(a["image_id"] for a in gt["annotations"])
    n_boxes = np.array([boxes.get(img["id"], 0) for img in images], np.float64)
    scenes = np.array([img["scene"] for img in images])
    names = sorted(set(scenes))
    pool_mix = np.array([np.mean(scenes == s) for s in names])

    paths = [data / "images" / img["file_name"] for img in images]
    print(f"family {args.family}: {len(images)} images, {n_boxes.mean():.1f} boxes per image in the pool; "
          f"first batch of {args.first}, {args.seeds} seeds (deterministic methods give one value)")
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name in args.embedders.split(","):
        emb = _embed(name.strip(), paths, args.out)
        rows: dict[str, list[tuple[float, float, float]]] = {m: [] for m in METHODS}
        for seed in range(args.seeds):
            for method in METHODS:
                sel = select(method, args.first, SelectionInputs(emb, np.zeros(len(images), bool)), seed=seed)
                picked = sel.indices
                mix = np.array([np.mean(scenes[picked] == s) for s in names])
                tv = 0.5 * float(np.abs(mix - pool_mix).sum())
                rows[method].append((float(n_boxes[picked].mean()), tv, float(np.mean(n_boxes[picked] == 0))))
        print(f"\nembedder {name}")
        print(f"{'method':<12} {'boxes / image':>16} {'scene mix TV to pool':>22} {'empty images':>13}")
        out[name] = {}
        for method, vals in rows.items():
            v = np.array(vals)
            out[name][method] = {"boxes_per_image": v[:, 0].tolist(), "scene_tv": v[:, 1].tolist(),
                                 "empty": v[:, 2].tolist()}
            print(f"{method:<12} {v[:, 0].mean():>10.1f} ± {v[:, 0].std():<4.1f} "
                  f"{v[:, 1].mean():>15.2f} ± {v[:, 1].std():.2f} {v[:, 2].mean():>12.0%}")
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"family": args.family, "first": args.first, "embedders": out}, indent=1))
    return 0


def _embed(name: str, paths: list[Path], out: Path) -> np.ndarray:
    """(N, D) embeddings of ``paths`` with the named embedder (ssl: alloop's defaults, trained on the pool)."""
    if name == "backbone":
        weights = offline_imagenet_backbone()
        options = {"arch": "mobilenet_v2", "image_size": 128, **({"weights": str(weights)} if weights else {})}
    elif name == "ssl":
        options = {}
    else:
        raise SystemExit(f"--embedders: unknown {name!r}; choose backbone or ssl")
    embedder = build_embedder(name, options, out / f"embedder-{name}", "cpu")
    embedder.prepare(paths, seed=0, progress=False)
    return embedder.embed(paths, progress=False)


if __name__ == "__main__":
    sys.exit(main())
