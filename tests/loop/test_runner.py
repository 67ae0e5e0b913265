"""The stage runner: a finished stage is recorded with its typed info and skipped on the next run."""

from __future__ import annotations

import pytest

from alloop.loop.records import ImportInfo, ScoreInfo
from alloop.loop.runner import StageRunner
from alloop.project import Project, ProjectConfig


@pytest.fixture()
def store(tmp_path):
    with Project.create(tmp_path / "p", ProjectConfig(image_root=str(tmp_path)), lock=False) as project:
        project.store.start_iteration(1, method="random", score_spec="entropy:max", config={"n": 2})
        yield project.store


def test_a_finished_stage_is_skipped_and_returns_its_stored_info(store):
    calls = []

    def score(record):
        calls.append(1)
        info = ScoreInfo(scores=("entropy:max",), images=3)
        with store.transaction():
            record(info)
        return info

    first = StageRunner(store, 1)
    assert first.run("score", score) == ScoreInfo(scores=("entropy:max",), images=3)
    assert store.stages(1)["score"]["info"] == {"scores": ["entropy:max"], "images": 3}
    again = StageRunner(store, 1)
    assert again.resumed == ("score",) and set(again.timings) == {"score"}
    assert again.run("score", score) == ScoreInfo(scores=("entropy:max",), images=3)
    assert calls == [1]


def test_a_stage_that_records_nothing_or_the_wrong_info_is_an_error(store):
    runner = StageRunner(store, 1)
    with pytest.raises(RuntimeError, match="stage import did not record"):
        runner.run("import", lambda record: ImportInfo())
    with pytest.raises(TypeError, match="stage import recorded ScoreInfo; it must record ImportInfo"):
        runner.run("import", lambda record: record(ScoreInfo()))
    assert "import" not in store.stages(1)


def test_a_failed_stage_records_nothing(store):
    def fails(record):
        with store.transaction():
            record(ImportInfo(new=1))
            raise OSError("disk full")

    with pytest.raises(OSError):
        StageRunner(store, 1).run("import", fails)
    assert store.stages(1) == {}


def test_turn_reads_only_the_rows_it_asks_for(store, tmp_path):
    # The loop's pool views: by state and by id in SQL, not a whole-pool read filtered in Python.
    from alloop.loop.runner import Turn

    store.add_images([(f"p{i}.jpg", f"sha{i}", 64, 48) for i in range(6)])
    ids = [r.id for r in store.images()]
    store.set_image_state(ids[1], "missing")
    with Project.open(tmp_path / "p", lock=False) as project:
        turn = Turn(project, 1, progress=False)
        assert [r.id for r in turn.usable_rows()] == [i for i in ids if i != ids[1]]
        assert [r.path for r in turn.rows_by_id({ids[4], ids[0]})] == ["p0.jpg", "p4.jpg"]
        assert turn.rows_by_id(set()) == []
        statements: list[str] = []
        project.store.conn.set_trace_callback(statements.append)
        turn.rows_by_id({ids[3]})
        project.store.conn.set_trace_callback(None)
        assert len(statements) == 1 and "json_each" in statements[0]
