"""What a model offers a labeler as pre-annotations, by score threshold: boxes per image, precision, recall.

Reads a finished `alloop demo` folder (the generated orchard's ground truth and the project's pool
predictions of each iteration) and prints, per threshold, how many boxes an image would get (mean,
90th percentile, max) and what share of them match a true box (IoU ≥ 0.5, each true box once):
the numbers behind the ``[preannotation]`` defaults in alloop.toml.

    alloop demo /tmp/demo --steps 2 -q
    python benchmarks/preannotation.py /tmp/demo --iteration 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from alloop.predictions import load_predictions
from alloop.project import Project

THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return float(iw * ih / union) if union > 0 else 0.0


def _matches(boxes: np.ndarray, truth: np.ndarray) -> int:
    """Greedy matching in score order (``boxes`` sorted best first): boxes that hit a still-free true box."""
    free = list(range(len(truth)))
    hits = 0
    for box in boxes:
        best = max(free, key=lambda k: _iou(box, truth[k]), default=None)
        if best is not None and _iou(box, truth[best]) >= 0.5:
            free.remove(best)
            hits += 1
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="an `alloop demo` folder (holds data/ and project/)")
    parser.add_argument("--iteration", type=int, default=1, help="whose pool predictions to measure")
    args = parser.parse_args()
    coco = json.loads((args.demo / "data" / "annotations.json").read_text())
    truth: dict[str, list] = {i["file_name"]: [] for i in coco["images"]}
    names = {i["id"]: i["file_name"] for i in coco["images"]}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        truth[names[a["image_id"]]].append((x, y, x + w, y + h))
    with Project.open(args.demo / "project", lock=False) as project:
        paths = {r.id: r.path for r in project.store.images()}
        map50 = next((it.map50 for it in project.store.iterations() if it.n == args.iteration), None)
        ids, dets, _ = load_predictions(project.predictions_file(args.iteration))
    gts = [np.array(truth[paths[int(i)]], np.float32).reshape(-1, 4) for i in ids]
    print(f"iteration {args.iteration} (held-out mAP@0.5 {map50}): {len(ids)} pool images, "
          f"{np.mean([len(g) for g in gts]):.1f} true boxes per image")
    print("threshold  boxes/image mean  p90  max  precision  recall")
    for threshold in THRESHOLDS:
        counts, hits = [], 0
        for det, gt in zip(dets, gts):
            keep = det.scores >= threshold
            boxes = det.boxes[keep][np.argsort(-det.scores[keep], kind="stable")]
            counts.append(len(boxes))
            hits += _matches(boxes, gt)
        n = np.array(counts)
        total_truth = sum(len(g) for g in gts)
        print(f"{threshold:9.2f}  {n.mean():16.1f} {np.percentile(n, 90):4.0f} {n.max():4d}  "
              f"{hits / max(n.sum(), 1):9.2f}  {hits / max(total_truth, 1):6.2f}")


if __name__ == "__main__":
    main()
