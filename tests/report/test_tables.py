"""CSV/JSON beside the page: columns, order and strict JSON."""

from __future__ import annotations

import csv
import json

import pytest

from alloop.report import gather_report_data
from alloop.report.tables import write_tables


def write_report(project, iteration):
    """Only the data files (no figures): what these tests check, in a fraction of the time."""
    directory = project.report_dir(iteration)
    write_tables(gather_report_data(project, iteration), directory)
    return directory / "index.html"


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_selection_csv_lists_the_batch_in_pick_order(report_project):
    project = report_project(steps=1)
    directory = write_report(project, 1).parent
    rows = _rows(directory / "selection.csv")
    assert rows[0] == ["image_id", "path", "pick_order", "score", "distance"]
    members = project.store.tag_members("iteration-1")
    assert [int(r[0]) for r in rows[1:]] == [m.image_id for m in members]
    assert [r[1] for r in rows[1:]] == [m.path for m in members]
    assert [int(r[2]) for r in rows[1:]] == [1, 2, 3, 4]
    assert [float(r[3]) for r in rows[1:]] == pytest.approx([m.score for m in members])
    assert [float(r[4]) for r in rows[1:]] == pytest.approx([m.distance for m in members])


def test_selection_csv_leaves_missing_values_empty(report_project):
    project = report_project(steps=0)
    rows = _rows(write_report(project, 0).parent / "selection.csv")
    assert rows[1][3] == "" and rows[1][4] == ""  # no score at init, no distance for the first pick
    assert rows[2][4] == "1.0"


def test_other_csv_files_have_their_columns(report_project):
    project = report_project(steps=2)
    directory = write_report(project, 2).parent
    assert _rows(directory / "learning_curve.csv") == [
        ["iteration", "n_labeled", "map50", "map"], ["1", "4", "0.45", "0.25"], ["2", "8", "0.6", "0.35"],
    ]
    classes = _rows(directory / "classes.csv")
    assert classes[0] == ["class", "labeled_boxes", "predicted_boxes", "ap50", "ap", "previous_ap50"]
    assert [r[0] for r in classes[1:]] == ["apple", "pear"]
    scores = _rows(directory / "scores.csv")
    assert scores[0] == ["image_id", "path", "score", "selected"]
    assert sum(int(r[3]) for r in scores[1:]) == 4
    emb = _rows(directory / "embedding_map.csv")
    assert emb[0] == ["image_id", "path", "x", "y", "status"]
    assert len(emb) == 1 + 16


def test_report_json_is_strict_json_with_the_summary(report_project):
    project = report_project(steps=1)
    it = project.store.iteration(1)
    project.store.update_iteration(1, metrics={**it.metrics, "per_class_ap50": {"apple": float("nan")}})
    text = (write_report(project, 1).parent / "report.json").read_text(encoding="utf-8")
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert doc["iteration"] == 1
    assert doc["summary"]["labeled"] == 4 and doc["summary"]["selected"] == 4
    assert doc["summary"]["score"] == "entropy:max"
    assert doc["classes"][0]["ap50"] is None
    assert "selection.csv" in doc["files"]
    assert doc["score"]["name"] == "entropy:max"


def test_a_term_spec_batch_shows_each_terms_share_per_pick(report_project):
    project = report_project(steps=1)
    store = project.store
    tag = store.tag("iteration-1")
    members = store.tag_members("iteration-1")
    terms = {"diversity": [0.5, 0.4, 0.3, 0.2], "uncertainty": [0.25, 0.3, 0.1, 0.0]}
    with store.transaction():
        store.delete_tag("iteration-1")
        store.create_tag("iteration-1", iteration=1, method="diversity=1, uncertainty=1",
                         members=[(m.image_id, m.distance, m.score) for m in members],
                         options={**tag.options, "spec": "diversity=1, uncertainty=1", "terms": terms})
    data = gather_report_data(project, 1)
    assert [dict(b.terms) for b in data.batch][0] == {"diversity": 0.5, "uncertainty": 0.25}
    assert "terms" not in data.batch_options  # per-pick arrays are not a setting
    rows = _rows(write_report(project, 1).parent / "selection.csv")
    assert rows[0] == ["image_id", "path", "pick_order", "score", "distance", "term_diversity", "term_uncertainty"]
    assert [float(r[5]) for r in rows[1:]] == terms["diversity"]
    assert [float(r[6]) for r in rows[1:]] == terms["uncertainty"]
    from alloop.report.render import render_html

    html = render_html(data)
    assert "every term&#39;s share" in html or "every term's share" in html
    assert html.count('<div class="terms">') == 4
