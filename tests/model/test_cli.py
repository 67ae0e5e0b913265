"""The model commands at the edge: `alloop predict`, `alloop export-model`, `alloop status --models`."""

from __future__ import annotations

import io
import json

import pytest
import torch
from typer.testing import CliRunner

from alloop.cli import app

runner = CliRunner()


def _blob() -> bytes:
    buf = io.BytesIO()
    torch.save({}, buf)
    return buf.getvalue()


def _one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_status_models_marks_the_best(hand_project):
    proj = hand_project([(1, _blob(), 0.30, 0.10), (2, _blob(), 0.52, 0.21), (3, None, None, None)])
    result = runner.invoke(app, ["status", str(proj), "--models"], terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = {ln.split()[1] if ln.split()[0] == "★" else ln.split()[0]: ln for ln in result.output.splitlines()[1:]}
    assert rows["2"].split()[:4] == ["★", "2", "4", "0.520"] and rows["3"].split()[-1] == "none"
    assert "artifacts/checkpoints/iteration-2/best.pt" in "".join(result.output.split())  # folded when narrow
    data = json.loads(runner.invoke(app, ["status", str(proj), "--models", "--json"]).output)
    assert data["best"] == 2 and [m["iteration"] for m in data["models"]] == [1, 2, 3]
    assert data["models"][0]["bytes"] == len(_blob()) and data["models"][2]["checkpoint"] is None


def test_predict_bad_inputs_are_one_line(hand_project, tmp_path, make_image):
    proj = hand_project([(1, _blob(), 0.3, 0.1), (2, None, None, None), (3, b"torn", 0.1, 0.1)])
    image = make_image(tmp_path / "img.png", (64, 48))
    _one_line_error(runner.invoke(app, ["predict", str(proj), str(image), "-i", "2"]),
                    "iteration 2 has no checkpoint", "--iteration")
    _one_line_error(runner.invoke(app, ["predict", str(proj), str(image), "-i", "3"]),
                    "checkpoint of iteration 3 is corrupt")
    (tmp_path / "bad.jpg").write_bytes(b"no image here")
    _one_line_error(runner.invoke(app, ["predict", str(proj), str(tmp_path / "bad.jpg")]),
                    "bad.jpg: not a readable image")
    (tmp_path / "out").mkdir()
    _one_line_error(runner.invoke(app, ["predict", str(proj), str(image), "--out", str(tmp_path / "out")]),
                    "already exists", "--force")


def test_export_model_bad_inputs_are_one_line(hand_project, tmp_path):
    proj = hand_project([(1, _blob(), 0.3, 0.1)])
    _one_line_error(runner.invoke(app, ["export-model", str(proj), "--format", "tflite"]),
                    "--format takes one of onnx, torchscript")
    tao = hand_project([(1, _blob(), 0.3, 0.1)], trainer="tao")
    _one_line_error(runner.invoke(app, ["export-model", str(tao)]), "not trained by alloop's tao trainer")
    _one_line_error(runner.invoke(app, ["export-model", str(tao), "--format", "torchscript"]),
                    "the tao trainer's models export to onnx only")


@pytest.mark.slow
def test_predict_and_export_say_which_model(trained_project, tmp_path):
    images = trained_project.parent / "orchard" / "images" / "row_01"
    result = runner.invoke(app, ["predict", str(trained_project), str(images), "--out", str(tmp_path / "p"),
                                 "--format", "yolo", "--draw", "-q"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("model: iteration 1: the best held-out mAP@0.5")
    assert (tmp_path / "p" / "yolo" / "classes.txt").read_text() == "apple\n"
    assert len(list((tmp_path / "p" / "drawn").glob("*.jpg"))) == len(list(images.glob("*.jpg")))
    result = runner.invoke(app, ["export-model", str(trained_project), "-f", "torchscript",
                                 "--out", str(tmp_path / "m.pt")], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "torchscript model written" in result.output and (tmp_path / "m.json").is_file()


def test_format_lists_in_help_are_the_supported_formats():
    # Help texts are written out (the CLI imports no library to start): a new format must be added there too.
    import typer.main

    from alloop.model.export import EXPORT_FORMATS
    from alloop.model.predict import PREDICT_FORMATS

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]

    def listed(command: str) -> tuple[str, ...]:
        text = next(p.help for p in commands[command].params if "--format" in getattr(p, "opts", ()))
        return tuple(w.strip(" .,") for w in text.split(":", 1)[1].split("(")[0].split(","))

    assert listed("predict") == PREDICT_FORMATS
    assert listed("export-model") == EXPORT_FORMATS
