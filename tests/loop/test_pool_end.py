"""The pool running out (issue 17 item 7): the last batch is logged, not warned; the step after it ends the loop."""

from __future__ import annotations

import importlib
import logging

import pytest
from typer.testing import CliRunner

from alloop import loop
from alloop.cli import app
from alloop.errors import ProjectError
from alloop.project import Project
from alloop.report import gather_report_data
from alloop.select import SelectionWarning

pytestmark = pytest.mark.slow






def test_the_last_batch_then_a_graceful_end(tmp_path, orchard, tiny_config, make_labels, caplog, recwarn,
                                            queued_paths, store_dump):
    proj = tmp_path / "proj"
    loop.init(proj, orchard / "images", n=6, config=tiny_config, progress=False)
    labels = make_labels(orchard / "annotations.json", queued_paths(proj), tmp_path / "round1.json")
    with caplog.at_level(logging.WARNING, logger="alloop"):
        r1 = loop.step(proj, labels=labels, n=30, progress=False)
    assert r1.n_selected == 18 and not r1.pool_exhausted  # the rest of the pool, asked for 30
    assert not [w for w in recwarn if issubclass(w.category, SelectionWarning)], "a raw Python warning"
    assert "asked for 30 new picks but only 18 unlabeled images remain" in caplog.text

    labels = make_labels(orchard / "annotations.json", queued_paths(proj), tmp_path / "round2.json")
    result = CliRunner().invoke(app, ["step", str(proj), "--labels", str(labels), "--n", "5", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "all images labeled; final model at" in result.output
    assert "iteration-2" in result.output.split("final model at")[1].replace("\n", "")
    with Project.open(proj, lock=False) as p:
        assert p.store.iteration(2).status == "done"
        assert set(p.store.stages(2)) == set(loop.STEP_STAGES)
        assert p.store.tag("iteration-2") is None, "no empty batch is sent for labeling"
        assert len(p.store.labeled_ids()) == 24 and not p.store.queued_ids()
        assert "Nothing was left to select" in gather_report_data(p, 2).notes["batch"]

    before = store_dump(proj)
    with pytest.raises(ProjectError, match="all 24 usable images are labeled; the final model is at .*alloop add"):
        loop.step(proj, labels=None, n=5, progress=False)
    assert store_dump(proj) == before


def test_a_resumed_step_takes_a_new_batch_size(tmp_path, orchard, tiny_config, make_labels, monkeypatch, queued_paths):
    proj = tmp_path / "proj"
    loop.init(proj, orchard / "images", n=6, config=tiny_config, progress=False)
    labels = make_labels(orchard / "annotations.json", queued_paths(proj), tmp_path / "round1.json")
    batch = importlib.import_module("alloop.loop.batch")
    select_rows = batch.select_rows

    def out_of_memory(*args, **kwargs):
        raise MemoryError("selection ran out of memory")

    monkeypatch.setattr(batch, "select_rows", out_of_memory)
    with pytest.raises(MemoryError):
        loop.step(proj, labels=labels, n=12, progress=False)
    with pytest.raises(MemoryError):
        loop.step(proj, labels=labels, n=3, progress=False)  # a smaller batch this time
    with Project.open(proj, lock=False) as p:
        assert p.store.iteration(1).status == "running" and p.store.iteration(1).config["n"] == 3
    monkeypatch.setattr(batch, "select_rows", select_rows)
    # No --n: the size the step runs with, not the default.
    result = CliRunner().invoke(app, ["step", str(proj), "--labels", str(labels), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "selected 3 images" in result.output and "--n 3`" in result.output.replace("\n", " ")
    with Project.open(proj, lock=False) as p:
        assert p.store.iteration(1).config["n"] == 3 and p.store.tag("iteration-1").size == 3
        assert set(p.store.stages(1)) == set(loop.STEP_STAGES)
