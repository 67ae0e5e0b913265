"""The infer stage resumes at image granularity: a stopped inference predicts only what it had not done."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alloop.loop.infer import predict_pool
from alloop.loop.records import InferInfo
from alloop.loop.runner import Turn
from alloop.predictions import chunks_dir, load_predictions
from alloop.project import Project, ProjectConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "plugin_pkg"))
from alloop_meanbox import MeanBoxConfig, MeanBoxTrainer  # noqa: E402


class StoppingTrainer(MeanBoxTrainer):
    """The meanbox detector, recording which images it predicted; raises on call ``stop_at`` (a crash)."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__(MeanBoxConfig(), ["apple", "leaf"])
        self.stop_at, self.calls, self.predicted = stop_at, 0, []

    def predict(self, checkpoint, images, **kw):
        self.calls += 1
        if self.calls == self.stop_at:
            raise RuntimeError("killed mid-inference")
        if not kw.get("hflip"):
            self.predicted += [Path(p).name for p in images]
        return super().predict(checkpoint, images, **kw)


def _project(tmp_path: Path, n: int = 23) -> tuple[Project, list, Path]:
    images = tmp_path / "images"
    images.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (40 + i, 30)).save(images / f"img_{i:02d}.jpg")
    project = Project.create(tmp_path / "proj", ProjectConfig(image_root=str(images), device="cpu"), lock=False)
    project.store.add_images((f"img_{i:02d}.jpg", f"{i:064x}", 40 + i, 30) for i in range(n))
    ckpt = tmp_path / "meanbox.json"
    ckpt.write_text(json.dumps({"classes": ["apple", "leaf"], "boxes": [[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.9, 0.8]],
                                "scores": [0.7, 0.4], "config": {"min_score": 0.0}}))
    return project, project.store.images(), ckpt


def _run(project: Project, rows, ckpt: Path, trainer, score: str = "entropy:max") -> InferInfo:
    recorded = []
    return predict_pool(Turn(project, 1, False), trainer, ckpt, rows, 2, score, recorded.append, chunk_images=5)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("score", ["entropy:max", "tta_consistency"])
def test_a_stopped_inference_predicts_only_the_missing_images_and_equals_an_uninterrupted_run(tmp_path, score):
    project, rows, ckpt = _project(tmp_path / "a")
    calls_per_chunk = 2 if score == "tta_consistency" else 1
    stopping = StoppingTrainer(stop_at=3 * calls_per_chunk + 1)  # dies on the 4th chunk of 5 images
    with pytest.raises(RuntimeError, match="killed mid-inference"):
        _run(project, rows, ckpt, stopping, score)
    out = project.predictions_file(1)
    assert not out.exists() and len(list(chunks_dir(out).glob("chunk-*.npz"))) == 3

    resumed = StoppingTrainer()
    info = _run(project, rows, ckpt, resumed, score)
    names = [r.path for r in rows]
    assert resumed.predicted == names[15:]  # only the 8 images the first run had not finished
    assert sorted(stopping.predicted + resumed.predicted) == names
    assert info.images == 23 and info.boxes == 46 and not chunks_dir(out).exists()

    other, other_rows, other_ckpt = _project(tmp_path / "b")
    _run(other, other_rows, other_ckpt, StoppingTrainer(), score)
    resumed_arrays, straight = _arrays(out), _arrays(other.predictions_file(1))
    assert resumed_arrays.keys() == straight.keys() and ("flipped_offsets" in straight) == (score != "entropy:max")
    for key, value in straight.items():
        np.testing.assert_array_equal(resumed_arrays[key], value, err_msg=key)
    ids, dets, _ = load_predictions(out)  # what report, export and predict read
    assert ids.tolist() == [r.id for r in rows] and [len(d) for d in dets] == [2] * 23


def test_chunks_of_another_model_are_predicted_again(tmp_path):
    project, rows, ckpt = _project(tmp_path)
    with pytest.raises(RuntimeError):
        _run(project, rows, ckpt, StoppingTrainer(stop_at=2))
    ckpt.write_text(ckpt.read_text().replace("0.7", "0.6"))  # the iteration was retrained: a new model
    again = StoppingTrainer()
    _run(project, rows, ckpt, again)
    assert again.predicted == [r.path for r in rows]
    _, dets, _ = load_predictions(project.predictions_file(1))
    assert all(float(d.scores[0]) == pytest.approx(0.6) for d in dets)


def test_an_empty_pool_writes_an_empty_predictions_file(tmp_path):
    project, _, ckpt = _project(tmp_path, n=1)
    info = _run(project, [], ckpt, StoppingTrainer(stop_at=1))  # the trainer is never called
    ids, dets, _ = load_predictions(project.predictions_file(1))
    assert info.images == 0 and len(ids) == 0 and dets == []


def test_predicted_class_counts_read_the_flat_predictions_in_the_rows_order(tmp_path):
    from alloop.loop.batch import predicted_class_counts

    project, rows, ckpt = _project(tmp_path)
    _run(project, rows, ckpt, StoppingTrainer())
    some = [rows[7], rows[2], rows[20]]
    counts = predicted_class_counts(project, 1, some, 2, threshold=0.5)
    # meanbox predicts both classes on every image; only "apple" (score 0.7) reaches 0.5
    np.testing.assert_array_equal(counts, [[1, 0]] * 3)
    np.testing.assert_array_equal(predicted_class_counts(project, 1, some, 2, threshold=0.3), [[1, 1]] * 3)
    assert predicted_class_counts(project, 1, [], 2).shape == (0, 2)
