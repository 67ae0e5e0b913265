"""`alloop export-model` on a TAO project: TAO's own `yolo_v4 export`, run through the fake launcher
(tests/data/tao/fake_tao.py, which takes export's arguments and fails as TAO 5 does), and model.json."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from alloop.boxes import Box, ImageAnnotation
from alloop.cli import app
from alloop.errors import TrainerError
from alloop.project import Project, ProjectConfig
from alloop.report.model_card import gather_model_card
from alloop.trainers.base import Example
from alloop.trainers.tao import TaoConfig, TaoTrainer

onnx = pytest.importorskip("onnx", reason="TAO's export is checked with the onnx package: pip install 'alloop[onnx]'")

FAKE = Path(__file__).resolve().parents[1] / "data" / "tao" / "fake_tao.py"
CLASSES = ["Pear", "Apple"]  # TAO numbers classes by sorted lower-cased name: apple 0, pear 1
W, H = 96, 64
OPTIONS = {"launcher": [sys.executable, str(FAKE)], "epochs": 2, "checkpoint_interval": 2, "output_width": 96,
           "output_height": 64}


def _fake():
    spec = importlib.util.spec_from_file_location("fake_tao_export", FAKE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _image(path: Path, box: tuple[int, int, int, int] | None) -> Path:
    img = np.zeros((H, W, 3), np.uint8)
    if box is not None:
        img[box[1]:box[3], box[0]:box[2]] = (255, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def _build(root: Path, options: dict) -> Path:
    """A TAO project: iteration 1 trained through the fake launcher, iteration 2 without a model."""
    images = root / "images"
    paths = [_image(images / f"img_{k}.png", (10 + k, 12, 30 + k, 40) if k else None) for k in range(3)]
    config = ProjectConfig(image_root=str(images), device="cpu", trainer="tao", trainer_options=dict(options))
    project = Project.create(root / "proj", config, lock=False)
    try:
        store = project.store
        store.add_images([(p.name, hashlib.sha256(p.read_bytes()).hexdigest(), W, H) for p in paths])
        store.add_classes(CLASSES)
        store.start_iteration(0, method="random", score_spec=None, config={})
        store.update_iteration(0, status="done", n_labeled=0)
        examples = [Example(p, ImageAnnotation(p.name, W, H, (Box(10.0 + k, 12.0, 30.0 + k, 40.0, "Apple"),)))
                    for k, p in enumerate(paths) if k]
        result = TaoTrainer(TaoConfig(**options), CLASSES).train(examples, [], project.checkpoint_dir(1),
                                                                 progress=False)
        store.start_iteration(1, method="random", score_spec=None, config={})
        store.update_iteration(1, status="done", checkpoint=project.relpath(result.checkpoint), map50=0.61,
                               map=0.33, n_labeled=2, n_train=2, n_val=0)
        store.start_iteration(2, method="random", score_spec=None, config={})
        store.update_iteration(2, status="done", checkpoint=None, n_labeled=2, n_train=2, n_val=0)
    finally:
        project.close()
    return root / "proj"


@pytest.fixture()
def tao_project(tmp_path) -> Path:
    return _build(tmp_path, OPTIONS)


@pytest.fixture()
def calls(tmp_path, monkeypatch) -> Path:
    rec = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_TAO_RECORD", str(rec))
    return rec


def _export_calls(rec: Path) -> list[list[str]]:
    lines = rec.read_text().splitlines() if rec.exists() else []
    return [c["argv"] for c in map(json.loads, lines) if "export" in c["argv"][:3]]


def _invoke(*args: str):
    return CliRunner().invoke(app, ["export-model", *args])


def test_export_model_runs_tao_export_and_writes_model_json(tao_project, tmp_path, calls):
    out = tmp_path / "deploy" / "model.onnx"
    res = _invoke(str(tao_project), "--format", "onnx", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "iteration 1" in res.output and "onnx model written" in res.output and "TensorRT" in res.output

    (argv,) = _export_calls(calls)
    ckpt = next((tao_project / "artifacts" / "checkpoints" / "iteration-1" / "results" / "weights").glob("*.hdf5"))
    work = tao_project / "artifacts" / "checkpoints" / "iteration-1" / "export"
    assert argv[:3] == ["model", "yolo_v4", "export"]
    assert argv[argv.index("-m") + 1] == str(ckpt.resolve())
    assert argv[argv.index("-o") + 1] == str(work / "model.onnx")
    assert argv[argv.index("--target_opset") + 1] == "12" and "--gen_ds_config" in argv
    assert argv[argv.index("-k") + 1] == "nvidia_tlt"

    model = onnx.load(str(out))
    assert [i.name for i in model.graph.input] == ["Input"]
    assert [o.name for o in model.graph.output] == ["BatchedNMS", "BatchedNMS_1", "BatchedNMS_2", "BatchedNMS_3"]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["file"] == "model.onnx" and meta["format"] == "onnx"
    assert meta["classes"] == ["Apple", "Pear"]  # TAO's order, as its labels.txt
    assert (work / "labels.txt").read_text() == "apple\npear\n"
    assert meta["input"] == {"name": "Input", "dtype": "float32", "shape": ["N", 3, 64, 96],
                             "layout": "NCHW, BGR, prepared as preprocessing says"}
    assert meta["preprocessing"]["resize"]["width"] == 96 and meta["preprocessing"]["resize"]["height"] == 64
    assert meta["preprocessing"]["mean"] == {"b": 103.939, "g": 116.779, "r": 123.68}
    assert meta["source"]["iteration"] == 1 and meta["source"]["tao_epoch"] == 2
    assert meta["source"]["architecture"] == "yolo_v4 resnet18"
    assert meta["metrics"]["heldout_map50"] == 0.61 and meta["metrics"]["heldout_map"] == 0.33
    with Project.open(tao_project, lock=False) as project:
        card = gather_model_card(project, 1)  # the same counts as the iteration's model card
    assert meta["training"] == {"labeled_images": card.labeled, "train_images": card.train,
                                "heldout_images": card.heldout, "boxes_per_class": dict(card.boxes_train),
                                "epochs": card.epochs, "steps": card.steps}
    assert meta["score_threshold"] == 0.001 and meta["detections_per_image"] == 200
    assert meta["versions"]["onnx_opset"] == 12
    assert meta["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert set(meta["deepstream"]) == {"labels.txt", "nvinfer_config.txt"}
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.json", "model.onnx"]


def test_score_threshold_goes_into_tao_nms(tao_project, tmp_path):
    out = tmp_path / "m.onnx"
    res = _invoke(str(tao_project), "--out", str(out), "--score-threshold", "0.4", "--iteration", "1")
    assert res.exit_code == 0, res.output
    nms = next(n for n in onnx.load(str(out)).graph.node if n.op_type == "BatchedNMSDynamic_TRT")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nms.attribute}
    assert attrs["scoreThreshold"] == pytest.approx(0.4) and attrs["keepTopK"] == 200
    assert json.loads(out.with_suffix(".json").read_text())["score_threshold"] == 0.4


def test_out_may_be_a_path_tao_could_not_take(tao_project, tmp_path):
    """TAO writes in the checkpoint's export/ folder; --out (a space here, which TAO's `bash -c`
    layers would split) only receives the copy."""
    out = tmp_path / "my models" / "m.onnx"
    res = _invoke(str(tao_project), "--out", str(out))
    assert res.exit_code == 0, res.output
    assert onnx.load(str(out)).graph.input[0].name == "Input" and out.with_suffix(".json").is_file()


def test_torchscript_is_refused_for_tao(tao_project, tmp_path, calls):
    res = _invoke(str(tao_project), "--format", "torchscript", "--out", str(tmp_path / "m.pt"))
    assert res.exit_code != 0
    assert "the tao trainer's models export to onnx only" in res.output and "--format onnx" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "m.pt").exists() and _export_calls(calls) == []


def test_an_iteration_without_a_checkpoint_is_refused(tao_project, tmp_path, calls):
    res = _invoke(str(tao_project), "--iteration", "2", "--out", str(tmp_path / "m.onnx"))
    assert res.exit_code != 0 and "iteration 2 has no checkpoint" in res.output
    assert not (tmp_path / "m.onnx").exists() and _export_calls(calls) == []


@pytest.mark.parametrize("env", [{"FAKE_TAO_FAIL": "export"}, {"FAKE_TAO_SKIP": "1"}])
def test_export_failing_in_the_container_leaves_nothing(tao_project, tmp_path, monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "deploy" / "model.onnx"
    out.parent.mkdir()
    res = _invoke(str(tao_project), "--out", str(out))
    assert res.exit_code != 0
    expected = "TAO export failed (Execution status: FAIL)" if "FAKE_TAO_FAIL" in env else "TAO export wrote no model"
    assert expected in res.output and "export.log" in res.output
    assert list(out.parent.iterdir()) == []


def test_export_failing_through_docker_gives_its_exit_code(tmp_path, monkeypatch):
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    docker.chmod(0o755)
    project = _build(tmp_path, {**OPTIONS, "runner": "docker", "docker": str(docker)})
    monkeypatch.setenv("FAKE_TAO_FAIL", "export")
    res = _invoke(str(project), "--out", str(tmp_path / "m.onnx"))
    assert res.exit_code != 0 and "TAO export failed (exit code 255)" in res.output
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.json").exists()


def test_a_tlt_model_is_decoded_with_the_key(tao_project, tmp_path):
    """TAO < 5 models (.tlt) are encrypted: the right -k exports, a wrong one fails as TAO does."""
    ckpt = next((tao_project / "artifacts" / "checkpoints" / "iteration-1" / "results" / "weights").glob("*.hdf5"))
    tlt = ckpt.with_suffix(".tlt")
    tlt.write_bytes(_fake().encode_tlt(ckpt.read_bytes(), "secret"))
    shutil.copy(str(ckpt) + ".alloop.json", str(tlt) + ".alloop.json")

    TaoTrainer(TaoConfig(**OPTIONS, key="secret"), CLASSES).export(tlt, tmp_path / "ok.onnx")
    assert onnx.load(str(tmp_path / "ok.onnx")).graph.input[0].name == "Input"
    with pytest.raises(TrainerError, match=r"TAO export failed .*file signature not found"):
        TaoTrainer(TaoConfig(**OPTIONS, key="wrong"), CLASSES).export(tlt, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_the_fake_refuses_what_tao_export_refuses(tao_project, tmp_path):
    """A missing model, an existing output, no spec: TAO's messages, `Execution status: FAIL`, exit 0."""
    work = tao_project / "artifacts" / "checkpoints" / "iteration-1" / "export"
    TaoTrainer(TaoConfig(**OPTIONS), CLASSES).export(
        next((tao_project / "artifacts" / "checkpoints" / "iteration-1" / "results" / "weights").glob("*.hdf5")),
        tmp_path / "m.onnx")
    mounts = tmp_path / "mounts.json"
    mounts.write_text(json.dumps({"Mounts": [{"source": str(work), "destination": str(work)}],
                                  "DockerOptions": {"tty": False}}))
    spec = str(work / "export.txt")
    cases = [
        (["-m", str(work / "gone.hdf5"), "-e", spec, "-o", str(work / "a.onnx")], "errno = 2"),
        (["-m", str(work / "gone.hdf5"), "-e", spec, "-o", str(work / "model")], "model.onnx already exists"),
        (["-m", str(work / "gone.hdf5"), "-o", str(work / "b.onnx")], "Experiment spec file not found"),
        (["-e", spec, "-o", str(work / "c.onnx")], "required: -m/--model"),
    ]
    for args, message in cases:
        proc = subprocess.run([sys.executable, str(FAKE), "model", "yolo_v4", "export", *args],
                              capture_output=True, text=True, env={"LAUNCHER_MOUNTS": str(mounts), "PATH": ""},
                              check=False)
        assert proc.returncode == 0, proc.stdout  # the launcher swallows the failure
        assert message in proc.stdout and proc.stdout.strip().endswith("Execution status: FAIL"), proc.stdout
