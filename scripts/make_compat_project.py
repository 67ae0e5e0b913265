"""Build a small real project with a given alloop version, for the compatibility tests.

tests/data/projects/<name>/ holds a project made by an older alloop: the tests copy it, open it with
today's code (migrations apply), read its status, and let a step resume and finish. It must be made
by the old code itself, so run this script with that version first on the path:

    git archive abe5c67 | tar -x -C /tmp/alloop-abe5c67
    PYTHONPATH=/tmp/alloop-abe5c67 python scripts/make_compat_project.py tests/data/projects/abe5c67

What it does (about a minute on one CPU core):
1. generates 12 orchard images (128x96) with COCO ground truth;
2. ``init`` picks 4 (random), the ground truth labels them, ``step`` 1 trains and picks 3;
3. the ground truth labels those 3 and ``step`` 2 is killed (SIGKILL, the crash tests' fault
   injection) after its training, before that stage commits: iteration 2 is left running with
   only its import stage done, so the test exercises resume;
4. copies out what opening, ``status`` and ``step`` need and nothing bulky: ``project/alloop.toml``
   (image_root rewritten to ``../images``), ``project/alloop.db`` (WAL folded in), the embedding
   cache, ``images/`` and the ground truth ``annotations.json``. Checkpoints (~75 MB each),
   predictions, exports, reports and backups are left out: the resumed step then trains from the
   configured weights, as it does whenever a checkpoint is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

TRAINER = {"model": "fasterrcnn_mobilenet_v3_large_320_fpn", "weights": "none", "epochs": 1, "max_steps": 2,
           "batch_size": 2, "min_size": 96, "max_size": 128}
EMBEDDER = {"arch": "mobilenet_v3_small", "weights": "none", "image_size": 32}
KEPT = ("alloop.toml", "alloop.db", "artifacts/embeddings")


def _queued(proj: Path) -> list[str]:
    from alloop.project import Project

    with Project.open(proj, lock=False) as p:
        return sorted(r.path for r in p.store.images() if r.id in p.store.queued_ids())


def build(out: Path, work: Path) -> None:
    """Make the project in ``work`` with the alloop on the path and copy its kept parts to ``out``."""
    import torch

    import alloop
    from alloop import loop
    from alloop.oracle import GroundTruthOracle
    from alloop.project import ProjectConfig
    from alloop.synthetic import generate_orchard

    torch.set_num_threads(1)
    print(f"alloop from {Path(alloop.__file__).parent}")
    orchard = work / "orchard"
    generate_orchard(orchard, 12, size=(128, 96), seed=7)
    truth = GroundTruthOracle(orchard / "annotations.json")
    cfg = ProjectConfig(image_root=str(orchard / "images"), device="cpu", embedder="backbone",
                        embedder_options=dict(EMBEDDER), trainer="torchvision", trainer_options=dict(TRAINER),
                        export_formats=("coco",), init_method="random", selection_method="random")
    proj = work / "project"
    loop.init(proj, orchard / "images", n=4, config=cfg, progress=False)
    loop.step(proj, labels=truth.label(_queued(proj), work / "labels-1.json"), n=3, progress=False)
    labels2 = truth.label(_queued(proj), work / "labels-2.json")
    code = ("import torch; torch.set_num_threads(1); from pathlib import Path; from alloop import loop; "
            f"loop.step(Path({str(proj)!r}), labels=Path({str(labels2)!r}), n=3, progress=False)")
    env = {**os.environ, loop.FAULT_ENV: "kill:train"}
    rc = subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode
    if rc != -9:
        raise SystemExit(f"step 2 should have been killed by the fault injection (rc -9), got rc {rc}")

    if out.exists():
        shutil.rmtree(out)
    (out / "project").mkdir(parents=True)
    con = sqlite3.connect(proj / "alloop.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    for name in KEPT:
        src, dst = proj / name, out / "project" / name
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    toml = out / "project" / "alloop.toml"
    toml.write_text(toml.read_text().replace(repr(str(orchard / "images")).replace("'", '"'), '"../images"'))
    if '"../images"' not in toml.read_text():
        raise SystemExit(f"{toml}: image_root was not rewritten")
    shutil.copytree(orchard / "images", out / "images")
    shutil.copy2(orchard / "annotations.json", out / "annotations.json")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 1024:.0f} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="fixture folder to (re)write, e.g. tests/data/projects/abe5c67")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build(args.out.resolve(), Path(tmp))


if __name__ == "__main__":
    main()
