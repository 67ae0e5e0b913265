"""Stage infos: the JSON each stage stores keeps the keys existing projects have, and parses back typed."""

from __future__ import annotations

import json

import pytest

from alloop.loop import records
from alloop.loop.records import (
    EmbedInfo,
    EvaluateInfo,
    ExportInfo,
    ImportInfo,
    InferInfo,
    RegisterInfo,
    ReportInfo,
    ScoreInfo,
    SelectInfo,
    StepSelectInfo,
    TrainInfo,
    embedder_of,
    info_of,
    read_stages,
)

# The JSON objects alloop stored before the infos were typed (one per stage and shape). Projects
# made then must open, resume and report: these keys, in this order, are the on-disk format.
STORED = {
    "register": {"images": 24, "bad": 1},
    "embed": {"embedder": "backbone-498c4e04", "computed": 24, "dim": 576},
    "init select": {"selected": 6, "method": "typiclust"},
    "import": {"new": 5, "corrected": 0, "unchanged": 0, "queued_left": 1, "source": "/x/l1.json",
               "warnings": ["1 queued images have no labels in l1.json and stay queued: a.jpg"], "val": 1},
    "import without a file": {"new": 0, "corrected": 0, "unchanged": 0, "queued_left": 0, "source": None},
    "train": {"checkpoint": "artifacts/checkpoints/iteration-1/best.pt", "epochs": 2, "steps": 6,
              "best_metric": 0.25, "history": [{"epoch": 0.0, "loss": 1.5}, {"epoch": 1.0, "loss": 1.2}],
              "resumed_from": None},
    "evaluate": {"map50": 0.5, "map": 0.25, "per_class_ap50": {"apple": 0.5}, "per_class_ap": {"apple": 0.25},
                 "n_val_images": 2, "n_val_boxes": 9},
    "evaluate without val": {"n_val": 0},
    "infer": {"images": 13, "boxes": 40, "file": "artifacts/predictions/iteration-1.npz"},
    "score": {"scores": ["entropy:max", "margin:max"], "images": 13},
    "step select": {"selected": 4, "method": "coreset", "score": "entropy:max",
                    "options": {"first_center": "labeled set"}, "embedder": None},
    "export": {"files": ["/p/artifacts/exports/iteration-1/coco/annotations.json"]},
    "report": {"file": None},
}
KIND = {
    "register": RegisterInfo, "embed": EmbedInfo, "init select": SelectInfo, "import": ImportInfo,
    "import without a file": ImportInfo, "train": TrainInfo, "evaluate": EvaluateInfo,
    "evaluate without val": EvaluateInfo, "infer": InferInfo, "score": ScoreInfo, "step select": StepSelectInfo,
    "export": ExportInfo, "report": ReportInfo,
}


@pytest.mark.parametrize("case", sorted(STORED))
def test_stored_json_parses_and_writes_back_unchanged(case):
    stored = STORED[case]
    info = KIND[case].from_json(json.loads(json.dumps(stored)))
    assert json.loads(json.dumps(info.to_json())) == stored
    assert list(info.to_json()) == list(stored), "keys keep their order"
    assert KIND[case].from_json(info.to_json()) == info


def test_what_the_loop_builds_has_the_stored_keys():
    # The shapes the loop's stages construct, not parsed ones: a renamed field fails here.
    built = {
        "import without a file": ImportInfo(new=0, corrected=0, unchanged=0, queued_left=0, source=None),
        "evaluate without val": EvaluateInfo(n_val=0),
        "init select": SelectInfo(selected=6, method="typiclust"),
        "step select": StepSelectInfo(selected=4, method="coreset", score="entropy:max", options={}, embedder=None),
        "train": TrainInfo(checkpoint="c.pt", epochs=1, steps=1, best_metric=None, history=(), resumed_from=None),
    }
    for case, info in built.items():
        assert list(info.to_json()) == list(STORED[case]), case


def test_older_records_with_missing_or_unknown_keys_parse():
    train = TrainInfo.from_json({"checkpoint": "c.pt", "a_key_from_the_future": 1})
    assert train == TrainInfo(checkpoint="c.pt") and train.history == ()
    assert ImportInfo.from_json({"new": 3}).counts == {"new": 3, "corrected": 0, "unchanged": 0, "queued_left": 0}
    assert ImportInfo.from_json(STORED["import"]).counts["val"] == 1
    assert ScoreInfo.from_json({"scores": ["a"]}).scores == ("a",)


def test_stage_lists_come_from_the_info_tables():
    assert records.INIT_STAGES == ("register", "embed", "select", "export", "report")
    assert records.STEP_STAGES == ("import", "train", "evaluate", "infer", "score", "select", "export", "report")
    assert records.stage_kinds(0)["select"] is SelectInfo and records.stage_kinds(3)["select"] is StepSelectInfo
    assert (records.tag_name(0), records.tag_name(2)) == (records.INIT_TAG, "iteration-2")


def test_read_stages_types_orders_and_keeps_unknown_stages():
    stored = {
        "select": {"info": STORED["step select"], "seconds": 0.3, "finished_at": "t3"},
        "cleanup": {"info": {"x": 1}, "seconds": 0.1, "finished_at": "t4"},
        "import": {"info": STORED["import"], "seconds": 0.1, "finished_at": "t1"},
        "embed": {"info": {"embedder": "old-key"}, "seconds": None, "finished_at": None},
    }
    recs = read_stages(1, stored)
    assert list(recs) == ["import", "select", "embed", "cleanup"]  # run order; init's embed is not a step stage
    assert recs["cleanup"].info is None and recs["embed"].info is None
    assert info_of(recs, "import", ImportInfo).new == 5
    assert info_of(recs, "import", TrainInfo) is None and info_of(recs, "train", TrainInfo) is None
    assert embedder_of(read_stages(0, {"embed": {"info": STORED["embed"]}})) == "backbone-498c4e04"
    assert embedder_of(recs) is None  # this selection used no embeddings
