"""Which iteration's model predict and export-model use, and the errors when there is none."""

from __future__ import annotations

import io

import pytest
import torch

from alloop.errors import ProjectError
from alloop.model import best_iteration, choose_model, list_models
from alloop.project import Project


def _zip_blob() -> bytes:
    buf = io.BytesIO()
    torch.save({"not": "a model"}, buf)  # a PyTorch archive; choosing never loads it
    return buf.getvalue()


BLOB = _zip_blob()


def _choose(project_dir, iteration=None):
    with Project.open(project_dir, lock=False) as project:
        return choose_model(project, iteration)


def test_best_by_heldout_map50_is_the_default(hand_project):
    proj = hand_project([(1, BLOB, 0.30, 0.10), (2, BLOB, 0.55, 0.20), (3, BLOB, 0.41, 0.25)])
    chosen = _choose(proj)
    assert chosen.model.iteration == 2 and chosen.best == 2
    assert "best held-out mAP@0.5 (0.550)" in chosen.reason
    with Project.open(proj, lock=False) as project:
        models = list_models(project)
    assert [m.iteration for m in models] == [1, 2, 3]
    assert all(m.size_bytes == len(BLOB) and m.checkpoint.name == "best.pt" for m in models)


def test_ties_go_to_the_better_strict_map_then_the_later_iteration(hand_project):
    proj = hand_project([(1, BLOB, 0.5, 0.30), (2, BLOB, 0.5, 0.20), (3, BLOB, 0.5, 0.30)])
    with Project.open(proj, lock=False) as project:
        assert best_iteration(list_models(project)) == 3


def test_without_any_measured_map_the_latest_model(hand_project):
    proj = hand_project([(1, BLOB, None, None), (2, BLOB, None, None), (3, None, None, None)])
    chosen = _choose(proj)
    assert chosen.model.iteration == 2 and chosen.best is None
    assert "latest" in chosen.reason


def test_an_asked_iteration_wins_over_the_best(hand_project):
    proj = hand_project([(1, BLOB, 0.3, 0.1), (2, BLOB, 0.6, 0.2)])
    assert _choose(proj, 1).model.iteration == 1


def test_iteration_without_checkpoint_is_one_line_naming_the_fix(hand_project):
    proj = hand_project([(1, BLOB, 0.3, 0.1), (2, None, None, None)])
    with pytest.raises(ProjectError, match=r"iteration 2 has no checkpoint.*choose one of 1 with --iteration") as err:
        _choose(proj, 2)
    assert "\n" not in str(err.value)


def test_unknown_iteration_lists_the_ones_with_a_model(hand_project):
    proj = hand_project([(1, BLOB, 0.3, 0.1)])
    with pytest.raises(ProjectError, match=r"no iteration 7; iterations with a model: 1 \(--iteration N\)"):
        _choose(proj, 7)


def test_missing_checkpoint_file(hand_project):
    proj = hand_project([(1, BLOB, 0.3, 0.1)])
    (proj / "artifacts" / "checkpoints" / "iteration-1" / "best.pt").unlink()
    with pytest.raises(ProjectError, match=r"best.pt: checkpoint of iteration 1 is missing.*--iteration"):
        _choose(proj)


def test_no_model_yet(hand_project):
    proj = hand_project([])
    with pytest.raises(ProjectError, match=r"no trained detector yet.*alloop step"):
        _choose(proj)
