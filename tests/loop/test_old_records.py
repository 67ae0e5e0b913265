"""The stage infos a project made by an older alloop stored parse into today's types and write back unchanged."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from alloop.loop.records import EvaluateInfo, TrainInfo, read_stages, stage_kinds
from alloop.project import Project
from alloop.report import gather_report_data

# Made by alloop at commit abe5c67 (see tests/store/test_compat.py): init, one step, a step cut after import.
FIXTURE = Path(__file__).resolve().parents[1] / "data" / "projects" / "abe5c67"


def _stored() -> list[tuple[int, str, str]]:
    con = sqlite3.connect(f"file:{FIXTURE / 'project' / 'alloop.db'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT iteration, stage, info_json FROM stages ORDER BY iteration, stage").fetchall()
    finally:
        con.close()


def test_every_stored_info_round_trips_through_its_type():
    rows = _stored()
    assert {(it, stage) for it, stage, _ in rows} >= {(0, s) for s in stage_kinds(0)} | {(1, s) for s in stage_kinds(1)}
    for iteration, stage, text in rows:
        stored = json.loads(text)
        info = stage_kinds(iteration)[stage].from_json(stored)
        assert json.loads(json.dumps(info.to_json())) == stored, (iteration, stage)
        assert list(info.to_json()) == list(stored), (iteration, stage)


def test_the_report_of_an_old_iteration_reads_its_infos(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "old")
    with Project.open(tmp_path / "old" / "project", lock=False) as project:
        stages = read_stages(1, project.store.stages(1))
        trained = stages["train"].info
        assert isinstance(trained, TrainInfo) and trained.history and trained.checkpoint
        data = gather_report_data(project, 1)
        assert data.training == tuple(dict(h) for h in trained.history)
        assert [t.stage for t in data.timings] == list(stage_kinds(1))
        measured = EvaluateInfo.from_json(project.store.iteration(1).metrics)
        assert [c.ap50 for c in data.classes] == [pytest.approx(measured.per_class_ap50["apple"])]
