"""The model card of each iteration: data, settings, metrics with their names, what changed."""

from __future__ import annotations

import json

from alloop.report import write_report
from alloop.report.data import gather_report_data
from alloop.report.model_card import (
    CARD_DATA,
    CARD_FILE,
    gather_model_card,
    render_markdown,
    write_model_card,
)
from alloop.report.render import render_html


def _with_checkpoints(project, iterations=(1, 2)):
    """The report fixture records training stages; give its iterations checkpoint files too."""
    for it in iterations:
        path = project.checkpoint_dir(it) / "model.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"0" * 2_000_000)
        project.store.update_iteration(it, checkpoint=project.relpath(path))
    return project


def test_card_counts_what_the_iteration_was_trained_on(report_project):
    project = _with_checkpoints(report_project(steps=2))
    first, second = gather_model_card(project, 1), gather_model_card(project, 2)
    # The fixture labels 4 images per step, the first of each batch held out, boxes alternating classes.
    assert (first.labeled, first.train, first.heldout) == (4, 3, 1)
    assert (second.labeled, second.train, second.heldout) == (8, 6, 2)
    assert first.boxes_train == {"apple": 1, "pear": 2} and first.boxes_heldout == {"apple": 1, "pear": 0}
    assert first.new_labeled == 4 and first.checkpoint_bytes == 2_000_000
    assert first.map50 == 0.45 and second.map50 == 0.6 and abs(second.per_class_ap50["pear"] - 0.55) < 1e-9
    assert first.previous is None and first.changes == ("First model of the project.",)
    assert second.previous == 1
    assert second.changes[0] == "Labeled images: 4 → 8 (+4); training 3 → 6, held-out 1 → 2."
    assert "mAP@0.5: 0.450 → 0.600 (+0.150)." in second.changes


def test_card_files_and_the_settings_that_changed(report_project):
    project = _with_checkpoints(report_project(steps=2))
    path = write_model_card(project, 1)
    assert path == project.checkpoint_dir(1) / CARD_FILE
    assert json.loads((path.parent / CARD_DATA).read_text())["config"]["seed"] == 0
    project.save_config(project.config.with_changes(seed=5, trainer_options={"epochs": 3}))
    card = gather_model_card(project, 2)
    assert card.changes[-1] == "Settings changed: seed: 0 → 5; torchvision.epochs: None → 3."
    assert gather_model_card(project, 1).config["seed"] == 0  # a written card keeps the settings of its time
    text = render_markdown(card)
    for expected in ("# Model card: proj, iteration 2",
                     "mAP@0.5 — COCO mean average precision at IoU 0.5 (pycocotools), held-out labeled images: **0.600**",
                     "mAP@[.5:.95] — COCO mean average precision over IoU 0.5:0.05:0.95, same images: **0.350**",
                     "| pear | 4 | 0 | 0.550 | 0.300 |", "- `torchvision.epochs` = `3`",
                     "## What changed since the previous model (iteration 1)"):
        assert expected in text, expected


def test_without_a_previous_card_the_settings_are_said_unknown(report_project):
    project = _with_checkpoints(report_project(steps=2))
    assert gather_model_card(project, 2).changes[-1] == (
        f"Training settings of iteration 1 were not recorded (no readable {CARD_DATA})."
    )


def test_report_shows_the_card_and_writes_model_card_md(report_project):
    project = _with_checkpoints(report_project(steps=2), iterations=(2,))
    html = render_html(gather_report_data(project, 2))
    assert 'id="model-card"' in html and "What changed since the previous model" in html
    assert "also in artifacts/checkpoints/iteration-2/model_card.md" in html
    assert 'id="model-card"' not in render_html(gather_report_data(project, 1))  # no checkpoint, no card
    write_report(project, 2)
    assert (project.checkpoint_dir(2) / CARD_FILE).read_text().startswith("# Model card: proj, iteration 2")
