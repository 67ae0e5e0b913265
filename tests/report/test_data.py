"""gather_report_data: the numbers the report shows, checked without any HTML."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from alloop.boxes import Box, ImageAnnotation
from alloop.errors import ProjectError
from alloop.report import gather_report_data
from alloop.report.data import project_2d


def test_iteration_zero_has_batch_and_map_but_no_model(report_project):
    project = report_project(steps=0)
    data = gather_report_data(project, 0)
    assert data.summary.pool == 16
    assert data.summary.labeled == 0
    assert data.summary.selected == 4
    assert data.summary.method == "coreset"
    assert data.summary.map50 is None
    assert [b.pick_order for b in data.batch] == [1, 2, 3, 4]
    assert data.batch[0].distance is None  # inf: nothing to compare the first pick with
    assert data.batch[1].distance == pytest.approx(1.0)
    assert all(b.score is None and b.boxes == () for b in data.batch)
    assert data.curve == ()
    assert data.scores is None
    assert "iteration 0" in data.notes["scores"]
    assert "first `alloop step`" in data.notes["learning-curve"]
    assert data.embedding_map is not None
    assert sorted(set(data.embedding_map.status.tolist())) == ["pool", "selected"]
    assert int((data.embedding_map.status == "selected").sum()) == 4


def test_step_iteration_summary_curve_and_batch(report_project):
    project = report_project(steps=2)
    data = gather_report_data(project, 2)
    s = data.summary
    assert (s.labeled, s.train, s.val, s.selected) == (8, 6, 2, 4)
    assert s.budget_used == pytest.approx(0.5)
    assert s.budget_after == pytest.approx(0.75)
    assert s.method == "coral" and s.score_spec == "entropy:max"
    assert s.map50 == pytest.approx(0.6) and s.previous_map50 == pytest.approx(0.45) and s.previous_iteration == 1
    assert [(p.iteration, p.n_labeled) for p in data.curve] == [(1, 4), (2, 8)]
    members = project.store.tag_members("iteration-2")
    assert [b.image_id for b in data.batch] == [m.image_id for m in members]
    assert [b.score for b in data.batch] == sorted((b.score for b in data.batch), reverse=True)
    assert all(len(b.boxes) >= 1 for b in data.batch)  # the fixture predicts 1-3 confident boxes each
    assert {box.label for b in data.batch for box in b.boxes} <= {"apple", "pear"}
    assert data.batch_options["alpha"] == 0.5


def test_scores_compare_pool_and_batch(report_project):
    project = report_project(steps=1)
    data = gather_report_data(project, 1)
    stored = project.store.scores(1, "entropy:max")
    assert data.scores.name == "entropy:max"
    assert len(data.scores.pool) == len(stored) == 12
    assert sorted(data.scores.selected.tolist()) == pytest.approx(sorted(b.score for b in data.batch))
    # The fixture picks the top-4 scores, so they beat most of the pool.
    assert data.scores.selected_percentile > 70
    assert data.other_scores == ("margin:max",)


def test_embedding_map_marks_labeled_selected_and_pool(report_project):
    project = report_project(steps=2)
    m = gather_report_data(project, 2).embedding_map
    assert m.points.shape == (16, 2) and np.isfinite(m.points).all()
    counts = {k: int((m.status == k).sum()) for k in ("pool", "labeled", "selected")}
    assert counts == {"pool": 4, "labeled": 8, "selected": 4}
    assert m.method in ("PCA", "UMAP")


def test_missing_embeddings_give_a_note_not_an_error(report_project):
    project = report_project(steps=1)
    shutil.rmtree(project.embeddings_dir("ssl-test0001"))
    data = gather_report_data(project, 1)
    assert data.embedding_map is None
    assert "unreadable" in data.notes["embedding-map"]


def test_no_embeddings_cached_is_noted(report_project):
    project = report_project(steps=1, embeddings=False)
    data = gather_report_data(project, 1)
    assert data.embedding_map is None
    assert "No cached embeddings under ssl-test0001" in data.notes["embedding-map"]


def test_missing_predictions_are_noted(report_project):
    project = report_project(steps=1, predictions=False)
    data = gather_report_data(project, 1)
    assert all(b.boxes == () for b in data.batch)
    assert "No predictions stored for iteration 1" in data.notes["batch-boxes"]
    assert all(c.predicted == 0 for c in data.classes)


def test_classes_count_labels_predictions_and_ap(report_project):
    project = report_project(steps=2)
    rows = {c.name: c for c in gather_report_data(project, 2).classes}
    assert set(rows) == {"apple", "pear"}
    # 8 labeled images, one box each, classes alternating in the fixture
    assert rows["apple"].labeled + rows["pear"].labeled == 8
    assert rows["apple"].ap50 == pytest.approx(0.6)
    assert rows["apple"].previous_ap50 == pytest.approx(0.45)
    assert rows["pear"].ap == pytest.approx(0.3)
    assert rows["apple"].predicted + rows["pear"].predicted > 0


def test_report_of_an_old_iteration_leaves_out_later_labels(report_project):
    project = report_project(steps=2)
    data = gather_report_data(project, 1)
    assert data.summary.labeled == 4  # the labels imported in step 2 came later
    assert sum(c.labeled for c in data.classes) == 4
    assert [p.iteration for p in data.curve] == [1]
    assert int((data.embedding_map.status == "labeled").sum()) == 4


def test_nan_per_class_ap_becomes_none(report_project):
    project = report_project(steps=1)
    it = project.store.iteration(1)
    project.store.update_iteration(1, metrics={**it.metrics, "per_class_ap50": {"apple": float("nan"), "pear": 0.4}})
    rows = {c.name: c for c in gather_report_data(project, 1).classes}
    assert rows["apple"].ap50 is None and rows["pear"].ap50 == pytest.approx(0.4)


def test_timings_follow_stage_order(report_project):
    project = report_project(steps=1)
    stages = [t.stage for t in gather_report_data(project, 1).timings]
    assert stages == ["import", "train", "evaluate", "infer", "score", "select"]
    assert gather_report_data(project, 1).training[-1]["loss"] == pytest.approx(0.25)


def test_random_baseline_is_mean_and_std_over_seeds(report_project):
    project = report_project(steps=1, baseline=True)
    baseline = gather_report_data(project, 1).baseline
    assert [b.n_labeled for b in baseline] == [4, 8, 12]
    first = baseline[0]
    assert first.seeds == 3
    assert first.map50_mean == pytest.approx(np.mean([0.28, 0.29, 0.30]))
    assert first.map50_std == pytest.approx(np.std([0.28, 0.29, 0.30]))
    assert first.map_mean == pytest.approx(0.14)


def test_unreadable_baseline_is_noted(report_project):
    project = report_project(steps=1)
    (project.artifacts / "simulation").mkdir(parents=True)
    (project.artifacts / "simulation" / "curves.csv").write_text("method,seed,n_labeled\nrandom,0,4\n")
    data = gather_report_data(project, 1)
    assert data.baseline == ()
    assert "curves.csv" in data.notes["baseline"]


def test_unknown_iteration_names_the_known_ones(report_project):
    project = report_project(steps=1)
    with pytest.raises(ProjectError, match=r"no iteration 7 \(iterations: 0, 1\)"):
        gather_report_data(project, 7)


def test_running_iteration_without_batch_is_noted(report_project):
    project = report_project(steps=1)
    project.store.start_iteration(2, method="coral", score_spec="entropy:max", config={})
    row = project.store.images()[-1]
    project.store.write_labels(
        [(row.id, ImageAnnotation(row.path, row.width, row.height, (Box(1, 1, 9, 9, "apple"),)), "train")],
        iteration=2, source="x",
    )
    data = gather_report_data(project, 2)
    assert data.summary.status == "running"
    assert data.batch == ()
    assert "not selected a batch yet" in data.notes["batch"]


def test_project_2d_pca_is_deterministic_and_spreads_the_main_axis():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    x[:, 2] *= 10  # the dominant direction
    a, method = project_2d(x)
    b, _ = project_2d(x)
    if method == "PCA":
        assert np.array_equal(a, b)
        assert np.var(a[:, 0]) > np.var(a[:, 1])
        assert abs(np.corrcoef(a[:, 0], x[:, 2])[0, 1]) > 0.99
    assert a.shape == (50, 2) and not math.isnan(float(a.sum()))


@pytest.mark.parametrize("shape", [(60, 8), (5, 40)])  # more points than dimensions, and fewer
def test_principal_axes_equal_the_svd_up_to_sign(shape):
    from alloop.report.embedding_map import principal_axes

    x = np.random.default_rng(2).normal(size=shape) * np.linspace(1, 5, shape[1])
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    axes = principal_axes(x, 2)
    assert axes.shape == (2, shape[1])
    np.testing.assert_allclose(np.abs(axes @ vt[:2].T), np.eye(2), atol=1e-8)


def test_principal_axes_of_identical_points_draw_them_at_the_origin():
    from alloop.report.embedding_map import project_2d

    points, method = project_2d(np.ones((25, 40), np.float32))
    if method == "PCA":
        assert np.array_equal(points, np.zeros((25, 2), np.float32))


def test_selected_percentile_counts_ties_half():
    from alloop.report.data import ScoreDistribution

    tied = ScoreDistribution("s", np.arange(4), np.full(4, 0.9, np.float32), np.full(2, 0.9, np.float32))
    assert tied.selected_percentile == pytest.approx(50.0)
    top = ScoreDistribution("s", np.arange(4), np.array([0.1, 0.2, 0.3, 0.9], np.float32), np.array([0.9], np.float32))
    assert top.selected_percentile == pytest.approx(87.5)


def test_truncated_predictions_are_noted(report_project):
    project = report_project(steps=1)
    path = project.predictions_file(1)
    path.write_bytes(path.read_bytes()[:100])
    data = gather_report_data(project, 1)
    assert "is unreadable" in data.notes["batch-boxes"]
    assert all(b.boxes == () for b in data.batch)


def test_huge_pools_are_subsampled_on_the_map(report_project, monkeypatch):
    from alloop.report import embedding_map

    monkeypatch.setattr(embedding_map, "MAP_MAX_POINTS", 10)
    project = report_project(steps=1)
    m = gather_report_data(project, 1).embedding_map
    assert len(m.points) == 10 and m.subsampled_from == 16
    assert int((m.status == "labeled").sum()) == 4 and int((m.status == "selected").sum()) == 4
    assert "10 of 16 images drawn" in gather_report_data(project, 1).notes["embedding-map"]


def test_coverage_counts_zero_detection_picks_and_slices(report_project):
    from alloop.boxes import Detections
    from alloop.predictions import load_predictions, save_predictions
    from alloop.report.render import render_html

    project = report_project(steps=1)
    path = project.predictions_file(1)
    ids, dets, _ = load_predictions(path)
    picked = [m.image_id for m in project.store.tag_members("iteration-1")]
    # The model keeps no box on the first two picks and on two other pool images.
    blind = set(picked[:2]) | set([i for i in ids.tolist() if i not in picked][:2])
    dets = [Detections.empty(2) if i in blind else d for i, d in zip(ids.tolist(), dets)]
    save_predictions(path, ids.tolist(), dets, num_classes=2)
    paths = {r.id: r.path for r in project.store.images()}
    rows = ["path,slice"] + [f"{paths[i]},{'dark' if i in blind else 'sunny'}" for i in ids.tolist()]
    (project.artifacts / "simulation").mkdir(parents=True, exist_ok=True)
    (project.artifacts / "simulation" / "slices.csv").write_text("\n".join(rows) + "\n")

    c = gather_report_data(project, 1).coverage
    assert (c.picks, c.zero_detection_picks, c.pool, c.zero_detection_pool) == (4, 2, 12, 4)
    assert c.zero_detection_pick_share == pytest.approx(0.5) and c.zero_detection_pool_share == pytest.approx(1 / 3)
    dark = next(s for s in c.slices if s.name == "dark")
    assert (dark.pool, dark.selected) == (4, 2) and dark.selected_share == pytest.approx(0.5)
    html = render_html(gather_report_data(project, 1))
    assert 'id="coverage"' in html and "2 of 4" in html and "<td>dark</td>" in html


def test_no_coverage_before_a_model_or_without_slices(report_project):
    project = report_project(steps=1)
    assert gather_report_data(project, 0).coverage is None
    c = gather_report_data(project, 1).coverage
    assert c.zero_detection_picks == 0 and c.slices == ()
