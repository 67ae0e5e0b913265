"""Third-party trainers: registered by entry point in an outside package, listed, and used by a step."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alloop import loop
from alloop.cli import app
from alloop.errors import TrainerError
from alloop.project import Project
from alloop.trainers import available_trainers, load_trainer

PLUGIN_DIR = Path(__file__).parents[1] / "data" / "plugin_pkg"


@pytest.fixture()
def plugin_installed(monkeypatch):
    # A folder with a package and its .dist-info on sys.path is what `pip install` leaves behind;
    # importlib.metadata finds its entry points the same way.
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    yield
    sys.modules.pop("alloop_meanbox", None)


def test_builtin_trainers_come_through_entry_points():
    assert {"torchvision", "tao"} <= set(available_trainers())


def test_unknown_trainer_lists_installed_ones():
    with pytest.raises(TrainerError, match=r"unknown trainer 'nope'; installed trainers: .*torchvision.*alloop.trainers"):
        load_trainer("nope")


def test_plugin_is_listed(plugin_installed):
    assert available_trainers()["meanbox"] == "alloop_meanbox:MeanBoxTrainer"
    result = CliRunner().invoke(app, ["trainers"])
    assert result.exit_code == 0
    assert "meanbox" in result.output and "min_score" in result.output


def test_plugin_drives_a_step(plugin_installed, tmp_path, orchard, tiny_config, make_labels):
    cfg = tiny_config.with_changes(trainer="meanbox", trainer_options={"min_score": 0.0})
    loop.init(tmp_path / "p", orchard / "images", n=6, config=cfg, progress=False)
    with Project.open(tmp_path / "p", lock=False) as p:
        queued = sorted(r.path for r in p.store.images() if r.id in p.store.queued_ids())
    labels = make_labels(orchard / "annotations.json", queued, tmp_path / "l.json")
    r = loop.step(tmp_path / "p", labels=labels, n=4, progress=False)
    assert r.n_selected == 4 and r.map50 is not None
    with Project.open(tmp_path / "p", lock=False) as p:
        assert p.store.iteration(1).checkpoint.endswith("meanbox.json")


def test_trainers_lists_one_line_of_help_per_option():
    result = CliRunner().invoke(app, ["trainers"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    epochs = next(line for line in lines if line.strip().startswith("epochs = 20"))
    assert "# passes over the training images" in epochs
    assert any(line.strip().startswith("early_stopping_patience = 5  # ") for line in lines)
