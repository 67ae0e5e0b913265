#!/usr/bin/env bash
# The whole loop on CUDA: demo-sized data, init + 2 steps with --device cuda, per-stage timings.
# Run on a GPU machine from the repo root. Offline installs come from WHEELS (a folder of wheels
# for that machine's Python, plus mobilenet_v2-b0353104.pth), when given.
set -euo pipefail
WHEELS="${WHEELS:-}"
OUT="${OUT:-/tmp/alloop-cuda}"
if [ -n "$WHEELS" ]; then
    python3 -m pip install -q --no-index --find-links "$WHEELS" pycocotools typer tomli-w rich tqdm pandas
    python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null
fi
python3 - "$OUT" "${WHEELS:+$WHEELS/mobilenet_v2-b0353104.pth}" <<'PY'
import sys, time, json
from pathlib import Path
import torch
from alloop import loop
from alloop.oracle import GroundTruthOracle
from alloop.project import Project, ProjectConfig
from alloop.synthetic import generate_orchard

out, weights = Path(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None)
print("cuda:", torch.cuda.get_device_name(0))
data = generate_orchard(out / "data", 240, size=(320, 240), seed=0)
trainer = {"epochs": 8, "batch_size": 4, "min_size": 240, "max_size": 320}
embedder = {"arch": "mobilenet_v2", "weights": weights or "none", "image_size": 128}
if weights:
    trainer.update({"model": "fasterrcnn_mobilenet_v2_fpn", "backbone_weights": weights})
cfg = ProjectConfig(image_root=str(data.images_dir), device="cuda", embedder="backbone", embedder_options=embedder,
                    trainer_options=trainer, export_formats=("coco", "labelstudio"))
t = time.perf_counter()
loop.init(out / "p", data.images_dir, n=24, config=cfg, progress=False)
print(f"init {time.perf_counter() - t:.1f}s")
oracle = GroundTruthOracle(data.annotations)
for k in (1, 2):
    t = time.perf_counter()
    r = loop.step(out / "p", labels=None, n=24, progress=False,
                  annotator=lambda p, rows: oracle.label([x.path for x in rows], out / f"l{k}.json"))
    print(f"step {k}: {time.perf_counter() - t:.1f}s mAP@0.5 {r.map50:.3f} on {r.n_val} held-out;",
          json.dumps({s: round(v, 1) for s, v in r.timings.items()}))
with Project.open(out / "p", lock=False) as p:
    ck = torch.load(p.root / p.store.iteration(2).checkpoint, map_location="cpu", weights_only=False)
    print("checkpoint format", ck["format"], "peak GPU memory", f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
PY
