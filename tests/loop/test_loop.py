"""The loop end to end on a tiny orchard, and every bad input of issue 2 leaving the store unchanged."""

from __future__ import annotations

import json

import pytest

from alloop import loop
from alloop.errors import ImageError, LabelError, ProjectError
from alloop.project import Project


def _init(tmp_path, orchard, cfg, n=6):
    return loop.init(tmp_path / "proj", orchard / "images", n=n, config=cfg, progress=False)


@pytest.mark.slow
def test_init_then_two_steps(tmp_path, orchard, tiny_config, make_labels, queued_paths):
    res = _init(tmp_path, orchard, tiny_config)
    proj = tmp_path / "proj"
    assert res.n_images == 24 and res.n_selected == 6 and res.tag == "initial-selection"
    assert (res.export_dir / "coco").is_dir() and (res.export_dir / "labelstudio").is_dir()
    first = queued_paths(proj)
    assert len(first) == 6

    # Round 1: label all but one image of the batch; the missing one stays queued.
    labels = make_labels(orchard / "annotations.json", first[:-1], tmp_path / "round1.json")
    r1 = loop.step(proj, labels=labels, n=5, progress=False)
    assert r1.iteration == 1 and r1.imported["new"] == 5
    assert r1.n_train + r1.n_val == 5 and r1.n_val >= 1
    assert r1.map50 is not None and 0.0 <= r1.map50 <= 1.0
    assert r1.tag == "iteration-1" and r1.n_selected == 5
    assert any("stay queued" in w for w in r1.warnings)
    assert first[-1] in queued_paths(proj)

    # Round 2: label everything queued (the straggler and the new batch).
    labels = make_labels(orchard / "annotations.json", queued_paths(proj), tmp_path / "round2.json")
    r2 = loop.step(proj, labels=labels, n=4, score="tta_consistency", progress=False)
    assert r2.iteration == 2 and r2.imported["new"] == 6

    with Project.open(proj, lock=False) as p:
        s = p.store
        assert [t.name for t in s.tags()] == ["initial-selection", "iteration-1", "iteration-2"]
        assert len(s.labeled_ids()) == 11
        picked = [m.image_id for t in s.tags() for m in s.tag_members(t.name)]
        assert len(picked) == len(set(picked)), "an image was selected twice"
        assert not ({m.image_id for m in s.tag_members("iteration-2")} & s.labeled_ids())
        it2 = s.iteration(2)
        assert it2.status == "done" and it2.checkpoint and (proj / it2.checkpoint).exists()
        assert set(s.stages(2)) == set(loop.STEP_STAGES)
        assert "tta_consistency" in s.score_names(2) and "least_confidence:max" in s.score_names(2)
        assert s.iteration(2).score_spec == "tta_consistency"
        assert s.tag("iteration-2").options["score"] == "tta_consistency"
        gt = json.loads((orchard / "annotations.json").read_text())
        n_gt = {img["file_name"]: 0 for img in gt["images"]}
        by_id = {img["id"]: img["file_name"] for img in gt["images"]}
        for a in gt["annotations"]:
            n_gt[by_id[a["image_id"]]] += 1
        for row, ann, _ in s.annotations():
            assert len(ann.boxes) == n_gt[row.path], f"labels of {row.path} changed in the store"


def test_init_missing_folder_creates_nothing(tmp_path, tiny_config):
    with pytest.raises(ImageError, match="not found.*--images"):
        loop.init(tmp_path / "proj", tmp_path / "nope", n=3, config=tiny_config, progress=False)
    assert not (tmp_path / "proj").exists()


def test_init_empty_folder(tmp_path, tiny_config):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no images found"):
        loop.init(tmp_path / "proj", tmp_path / "empty", n=3, config=tiny_config, progress=False)
    assert not (tmp_path / "proj").exists()


def test_corrupt_images_are_skipped_and_listed(tmp_path, orchard, tiny_config, queued_paths):
    (orchard / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    res = _init(tmp_path, orchard, tiny_config)
    assert res.n_images == 24
    assert [p for p, _ in res.bad_images] == ["broken.jpg"]
    assert "broken.jpg" not in queued_paths(tmp_path / "proj")


def test_init_twice_says_use_step(tmp_path, orchard, tiny_config):
    _init(tmp_path, orchard, tiny_config)
    with pytest.raises(ProjectError, match="already initialised.*alloop step"):
        _init(tmp_path, orchard, tiny_config)


def test_step_before_init(tmp_path):
    with pytest.raises(ProjectError, match="no such project directory.*alloop init"):
        loop.step(tmp_path / "proj", labels=None, n=3, progress=False)


def test_step_on_a_folder_that_is_not_a_project(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(ProjectError, match="not an alloop project"):
        loop.step(tmp_path / "something", labels=None, n=3, progress=False)


def test_labels_for_an_image_not_in_the_batch(tmp_path, orchard, tiny_config, make_labels, queued_paths,
                                              store_dump):
    _init(tmp_path, orchard, tiny_config)
    proj = tmp_path / "proj"
    queued = queued_paths(proj)
    gt = json.loads((orchard / "annotations.json").read_text())
    outsider = next(img["file_name"] for img in gt["images"] if img["file_name"] not in queued)
    labels = make_labels(orchard / "annotations.json", [*queued, outsider], tmp_path / "l.json")
    before = store_dump(proj)
    with pytest.raises(LabelError, match=rf"{outsider}.*not in any exported batch"):
        loop.step(proj, labels=labels, n=3, progress=False)
    assert store_dump(proj) == before


def test_labels_for_an_image_that_does_not_exist(tmp_path, orchard, tiny_config, make_labels, queued_paths,
                                                 store_dump):
    _init(tmp_path, orchard, tiny_config)
    proj = tmp_path / "proj"
    labels = make_labels(orchard / "annotations.json", queued_paths(proj), tmp_path / "l.json")
    doc = json.loads(labels.read_text())
    doc["images"].append({"id": 9999, "file_name": "ghost.jpg", "width": 128, "height": 96})
    labels.write_text(json.dumps(doc))
    before = store_dump(proj)
    with pytest.raises(LabelError, match="ghost.jpg"):
        loop.step(proj, labels=labels, n=3, progress=False)
    assert store_dump(proj) == before


def test_missing_label_file_and_no_labels(tmp_path, orchard, tiny_config, store_dump):
    _init(tmp_path, orchard, tiny_config)
    proj = tmp_path / "proj"
    before = store_dump(proj)
    with pytest.raises(LabelError, match="label file not found"):
        loop.step(proj, labels=tmp_path / "nope.json", n=3, progress=False)
    with pytest.raises(LabelError, match="waiting for labels.*--labels"):
        loop.step(proj, labels=None, n=3, progress=False)
    assert store_dump(proj) == before


def test_malformed_label_file_leaves_store_unchanged(tmp_path, orchard, tiny_config, store_dump):
    _init(tmp_path, orchard, tiny_config)
    proj = tmp_path / "proj"
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [ {"id": 1, ')
    before = store_dump(proj)
    with pytest.raises(LabelError, match="bad.json"):
        loop.step(proj, labels=bad, label_format="coco", n=3, progress=False)
    assert store_dump(proj) == before


def test_labels_for_none_of_the_batch(tmp_path, orchard, tiny_config, make_labels, store_dump):
    _init(tmp_path, orchard, tiny_config)
    proj = tmp_path / "proj"
    labels = make_labels(orchard / "annotations.json", [], tmp_path / "l.json")
    before = store_dump(proj)
    with pytest.raises(LabelError, match="none of the 6 images"):
        loop.step(proj, labels=labels, n=3, progress=False)
    assert store_dump(proj) == before


def test_selection_options_reach_only_the_methods_that_know_them():
    from alloop.loop.batch import method_options as _method_options
    from alloop.project import ProjectConfig

    cfg = ProjectConfig(image_root="x", selection_options={"alpha": 0.3, "hot_size": 64})
    assert _method_options(cfg, "random") == {}
    assert _method_options(cfg, "coreset") == {"hot_size": 64}
    assert _method_options(cfg, "coral") == {"alpha": 0.3, "hot_size": 64}


@pytest.mark.slow
def test_auto_is_typiclust_at_init_then_coral_on_scores(tmp_path, orchard, tiny_config, make_labels, queued_paths):
    res = loop.init(tmp_path / "proj", orchard / "images", n=6, method="auto", config=tiny_config, progress=False)
    proj = tmp_path / "proj"
    with Project.open(proj, lock=False) as p:
        tag = p.store.tag(res.tag)
        assert tag.method == "auto" and tag.options["regime"] == "cold-start"
        assert tag.options["strategy"] == "typiclust"
    labels = make_labels(orchard / "annotations.json", queued_paths(proj), tmp_path / "round1.json")
    r1 = loop.step(proj, labels=labels, n=4, method="auto", score="detection_entropy", progress=False)
    with Project.open(proj, lock=False) as p:
        tag = p.store.tag(r1.tag)
        assert tag.options["regime"] == "low-budget" and tag.options["strategy"] == "maxherding"
        assert tag.options["uncertainty"] == 0.5 and tag.options["score"] == "detection_entropy"
        members = p.store.tag_members(r1.tag)
        stored = p.store.scores(1, "detection_entropy")
        assert len(members) == 4 and all(m.score == pytest.approx(stored[m.image_id]) for m in members)
    # Between rounds the same batch can be re-picked past the low-budget switch.
    sel = loop.reselect(proj, method="auto", options={"low_budget": 0}, progress=False)
    assert sel.options["regime"] == "uncertainty" and sel.options["strategy"] == "coral"


@pytest.mark.slow
def test_step_with_a_box_budget_takes_the_prefix_that_fits(tmp_path, orchard, tiny_config, make_labels, queued_paths,
                                                            monkeypatch):
    from alloop.loop import batch

    _init(tmp_path, orchard, tiny_config)
    proj = tmp_path / "proj"
    labels = make_labels(orchard / "annotations.json", queued_paths(proj), tmp_path / "round1.json")
    with pytest.raises(Exception, match="--budget-boxes must be a positive number of boxes"):
        loop.step(proj, labels=labels, n=10, budget_boxes=0, progress=False)
    reads = []
    read = batch.pool_predictions
    monkeypatch.setattr(batch, "pool_predictions", lambda *a, **kw: reads.append(a[1]) or read(*a, **kw))
    r = loop.step(proj, labels=labels, n=10, budget_boxes=7, progress=False)
    assert reads == [1]  # the selection and the box budget share one read of the predictions file
    with Project.open(proj, lock=False) as p:
        tag = p.store.tag(r.tag)
        assert tag.options["budget_boxes"] == 7 and p.store.iteration(1).config["budget_boxes"] == 7
        # Every image costs at least one box: at most 7 images, and the estimate fits unless one image alone is over.
        assert 1 <= tag.size <= 7
        assert tag.options["estimated_boxes"] <= 7 or tag.size == 1


@pytest.mark.slow
def test_a_deleted_labeled_image_is_set_aside_and_the_step_goes_on(tmp_path, orchard, tiny_config, make_labels,
                                                                    queued_paths):
    from alloop.pool import check

    _init(tmp_path, orchard, tiny_config)
    proj = tmp_path / "proj"
    queued = queued_paths(proj)
    labels = make_labels(orchard / "annotations.json", queued, tmp_path / "round1.json")
    (orchard / "images" / queued[0]).unlink()
    with Project.open(proj) as p:
        check(p, repair=True)
    r = loop.step(proj, labels=labels, n=3, progress=False)
    assert r.imported["new"] == len(queued)  # its labels are kept...
    assert r.n_train + r.n_val == len(queued) - 1  # ...but it is not trained on while its file is missing


@pytest.mark.parametrize(("embedder", "options"), [("detector", {"image_size": 64}), ("auto", {})])
def test_selection_embeds_with_the_backbone_then_with_the_trained_detector(
        tmp_path, orchard, tiny_config, make_labels, queued_paths, caplog, embedder, options):
    """`detector` needs a trained model, so its cold start embeds with `auto`'s choice (said in the log);
    `auto`, the default, is the ImageNet backbone until a model is trained. Every selection after the
    first training uses the detector's own features."""
    import dataclasses
    import logging

    from alloop.embed import imagenet_weights_available
    from alloop.loop.records import embedder_of, read_stages

    if not imagenet_weights_available():
        pytest.skip("needs the ImageNet mobilenet_v2 weights offline (scripts/setup.sh installs them)")
    cfg = dataclasses.replace(tiny_config, embedder=embedder, embedder_options=options)
    with caplog.at_level(logging.INFO, logger="alloop"):
        _init(tmp_path, orchard, cfg)
    if embedder == "detector":
        assert "no trained model yet, so this cold start embeds with backbone" in caplog.text
    proj = tmp_path / "proj"
    labels = make_labels(orchard / "annotations.json", queued_paths(proj), tmp_path / "round1.json")
    loop.step(proj, labels=labels, n=4, method="coreset", progress=False)
    with Project.open(proj, lock=False) as p:
        keys = [embedder_of(read_stages(it, p.store.stages(it))) for it in (0, 1)]
    assert keys[0].startswith("backbone-") and keys[1].startswith("detector-")


def test_a_step_with_ppal_turns_box_features_on_unless_the_user_said_no(tiny_config):
    """Box features make the predictions file ~15x bigger, so they are recorded only for a selection
    that reads them; an explicit box_features in alloop.toml always wins."""
    import dataclasses

    from alloop.loop.train import with_box_features

    assert with_box_features(tiny_config).trainer_options["box_features"] is True
    assert "box_features" not in tiny_config.trainer_options  # a copy: the project's config is untouched
    said_no = dataclasses.replace(tiny_config, trainer_options={**tiny_config.trainer_options, "box_features": False})
    assert with_box_features(said_no) == said_no
