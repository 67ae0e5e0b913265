"""`alloop predict` throughput against a plain torchvision inference loop, and ONNX Runtime on the CPU.

    python benchmarks/predict_bench.py                        # 32 orchard images of 640x480, CPU
    python benchmarks/predict_bench.py --images 64 --device cuda
    python benchmarks/predict_bench.py --project myproj --image-dir photos/   # your model, your images

Without --project it builds a project the way the tests do (synthetic orchard, `init` + one `step`
with a 2-step training run: the weights are poor, the speed is the real model's) with the torchvision
trainer's default detector (fasterrcnn_mobilenet_v3_large_320_fpn at 320/640 px). Three ways run the
same checkpoint on the same images, each timed end to end (model loading included) and best of
--repeats, in turn so that a busy machine slows all of them alike:

- ``alloop predict``: the library call behind the command (header checks, detector through the
  trainer plugin with full class distributions, COCO files written);
- plain torchvision: ``load_detector`` + batches of ``batch_size`` images through ``model(images)``,
  decoding with PIL, as torchvision's references/detection evaluate does;
- ONNX Runtime (CPU provider): the file `alloop export-model` writes, one image per call.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.functional import pil_to_tensor

from alloop import images as imagelib
from alloop import loop
from alloop.model import export_model, predict
from alloop.model.registry import project_models
from alloop.oracle import GroundTruthOracle
from alloop.project import Project, ProjectConfig
from alloop.synthetic import generate_orchard
from alloop.trainers.torchvision import load_detector


def build_project(root: Path, n_images: int, size: tuple[int, int], device: str) -> Path:
    """A synthetic orchard, `init` and one `step` with a 2-step training run."""
    generate_orchard(root / "orchard", max(n_images, 24), size=size, seed=3)
    config = ProjectConfig(
        image_root=str(root / "orchard" / "images"), device=device, embedder="backbone",
        embedder_options={"arch": "mobilenet_v3_small", "weights": "none", "image_size": 64},
        trainer="torchvision", trainer_options={"weights": "none", "epochs": 1, "max_steps": 2},
        export_formats=("coco",),
    )
    loop.init(root / "proj", root / "orchard" / "images", n=8, config=config, progress=False)
    with Project.open(root / "proj", lock=False) as p:
        queued = sorted(r.path for r in p.store.images() if r.id in p.store.queued_ids())
    labels = GroundTruthOracle(root / "orchard" / "annotations.json").label(queued, root / "labels.json")
    loop.step(root / "proj", labels=labels, n=4, progress=False)
    return root / "proj"


def plain_torchvision(checkpoint: Path, paths: list[Path], device: str, batch_size: int) -> int:
    """The reference loop: decode, to float, model(list of images) in batches; returns the box count."""
    model = load_detector(checkpoint, device)
    boxes = 0
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            batch = [pil_to_tensor(imagelib.open_rgb(p)).to(device).float().div_(255)
                     for p in paths[start:start + batch_size]]
            boxes += sum(len(out["boxes"]) for out in model(batch))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return boxes


def onnx_runtime(model_file: Path, paths: list[Path], threads: int) -> int:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    boxes = 0
    for p in paths:
        out, _, _ = session.run(None, {"image": np.asarray(imagelib.open_rgb(p), dtype=np.uint8)})
        boxes += len(out)
    return boxes


def timed(fn) -> tuple[float, int]:
    start = time.perf_counter()
    boxes = fn()
    return time.perf_counter() - start, boxes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="an existing project (default: build a synthetic one)")
    parser.add_argument("--image-dir", type=Path, help="images to predict on (default: the project's pool)")
    parser.add_argument("--images", type=int, default=32, help="how many images (default 32)")
    parser.add_argument("--size", default="640x480", help="synthetic image size WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda for alloop and plain torchvision (default cpu)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and ONNX Runtime (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method; the best counts (default 3)")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="alloop-predict-bench-"))
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        project = args.project or build_project(work, args.images, (width, height), args.device)
        with Project.open(project, lock=False) as p:
            pool = [p.image_root / r.path for r in p.store.images() if r.state == "ok"]
        paths = (imagelib.discover(args.image_dir) if args.image_dir else pool)[: args.images]
        models, best = project_models(project)
        checkpoint = next(m.checkpoint for m in models if m.iteration == best) if best is not None \
            else [m.checkpoint for m in models if m.available][-1]
        with Project.open(project, lock=False) as p:
            batch_size = loop.build_trainer(p, p.store.classes(), "cpu").config.batch_size
        onnx_file = None
        if not args.no_onnx:
            onnx_file = export_model(project, fmt="onnx", out=work / "model.onnx").path

        methods = {
            "alloop predict": lambda: sum(len(d) for d in predict(
                project, paths, work / "out", force=True, device=args.device, progress=False,
                iteration=best).predictions.detections),
            "plain torchvision": lambda: plain_torchvision(checkpoint, paths, args.device, batch_size),
        }
        if onnx_file is not None:
            methods["onnx runtime (cpu)"] = lambda: onnx_runtime(onnx_file, paths, args.threads)
        best_s: dict[str, float] = {}
        boxes: dict[str, int] = {}
        for _ in range(args.repeats):
            for name, fn in methods.items():
                seconds, boxes[name] = timed(fn)
                best_s[name] = min(best_s.get(name, float("inf")), seconds)
        rows = {name: {"seconds": round(s, 3), "images_per_s": round(len(paths) / s, 2), "boxes": boxes[name]}
                for name, s in best_s.items()}
        ratio = best_s["alloop predict"] / best_s["plain torchvision"]
        result = {"images": len(paths), "image_size": args.size if not args.project else "project's",
                  "device": args.device, "threads": args.threads, "repeats": args.repeats,
                  "batch_size": batch_size, "methods": rows, "alloop_vs_plain_time": round(ratio, 3)}
        print(f"{len(paths)} images, device {args.device}, {args.threads} threads, best of {args.repeats}")
        for name, row in rows.items():
            print(f"  {name:20s} {row['images_per_s']:7.2f} images/s  ({row['seconds']:.2f} s, {row['boxes']} boxes)")
        print(f"  alloop predict takes {ratio:.2f}x the plain loop's time (goal: within 1.2x)")
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n")
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
