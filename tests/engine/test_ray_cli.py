"""`alloop init`, `embed` and one `step` with --engine ray on a real Ray cluster: the same numbers as local."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tomllib
from typer.testing import CliRunner

from alloop.cli import app
from alloop.embed.cache import load_cached_embeddings
from alloop.project import Project

from ..embed.conftest import make_pool

runner = CliRunner()
TINY = ["--embedder", "backbone", "-E", "arch=mobilenet_v2", "-E", "weights=none", "-E", "image_size=32",
        "--trainer", "meanbox", "--device", "cpu", "--n", "4", "-q"]


def invoke(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def label_batch(project_dir: Path, out: Path) -> Path:
    """COCO labels for the waiting batch: one box per image, in the middle third."""
    with Project.open(project_dir, lock=False) as p:
        rows = p.store.images(p.store.queued_ids())
    anns = [{"id": i + 1, "image_id": r.id, "category_id": 1, "iscrowd": 0, "area": (r.width / 3) * (r.height / 3),
             "bbox": [r.width / 3, r.height / 3, r.width / 3, r.height / 3]} for i, r in enumerate(rows)]
    out.write_text(json.dumps({"images": [{"id": r.id, "file_name": r.path, "width": r.width, "height": r.height}
                                          for r in rows],
                               "annotations": anns, "categories": [{"id": 1, "name": "apple"}]}))
    return out


def state(project_dir: Path) -> tuple[np.ndarray, dict[str, float]]:
    """Every usable image's embedding (by path order) and the step's scores by path."""
    with Project.open(project_dir, lock=False) as p:
        rows = sorted(p.store.images(state="ok"), key=lambda r: r.path)
        key = p.store.stages(0)["embed"]["info"]["embedder"]
        emb = load_cached_embeddings(p.store, p.embeddings_dir(key), key, [r.sha256 for r in rows])
        by_id = p.store.scores(1, p.config.score)
        return emb, {r.path: by_id[r.id] for r in rows if r.id in by_id}


def test_init_embed_and_step_on_ray_give_the_local_numbers(tmp_path, ray_cluster, plugins_on_path):
    pool = tmp_path / "pool"
    make_pool(pool, n=16)
    ray_dir, local_dir = tmp_path / "on-ray", tmp_path / "local"
    invoke("init", ray_dir, "--images", pool, *TINY, "--engine", "ray", "--ray-address", ray_cluster.address)
    invoke("init", local_dir, "--images", pool, *TINY)
    doc = tomllib.loads((ray_dir / "alloop.toml").read_text())
    assert doc["engine"] == {"name": "ray", "address": ray_cluster.address, "workers": 0}
    assert "0 computed" in invoke("embed", ray_dir)  # everything cached by init's run on the cluster
    out = invoke("step", ray_dir, "--labels", label_batch(ray_dir, tmp_path / "ray.json"), "--n", "4")
    assert "predicting 12 images on Ray (2 CPU workers)" in out  # alloop.toml's [engine] chose the cluster
    invoke("step", local_dir, "--labels", label_batch(local_dir, tmp_path / "local.json"), "--n", "4", "-q")
    ray_emb, ray_scores = state(ray_dir)
    local_emb, local_scores = state(local_dir)
    assert ray_emb.shape == (16, 1280)
    np.testing.assert_allclose(ray_emb, local_emb, atol=1e-5)
    assert len(ray_scores) == 12 and ray_scores.keys() == local_scores.keys()
    np.testing.assert_allclose([ray_scores[k] for k in sorted(ray_scores)],
                               [local_scores[k] for k in sorted(local_scores)], atol=1e-6)
