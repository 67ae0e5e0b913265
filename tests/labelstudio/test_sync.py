"""Push a batch, annotate it through Label Studio's API, pull + step, push the next batch: a real server."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from alloop import loop
from alloop.cli import app
from alloop.labelstudio import Connection, LabelStudioError, pull, push
from alloop.labelstudio.sync import load_link
from alloop.preannotate import DEFAULT_MAX_BOXES, DEFAULT_THRESHOLD
from alloop.project import Project

from .conftest import api


def _gt_results(orchard, file_name: str) -> list[dict]:
    """The ground-truth boxes of one image as Label Studio rectanglelabels results (percent)."""
    coco = json.loads((orchard / "annotations.json").read_text())
    image = next(i for i in coco["images"] if i["file_name"] == file_name)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    w, h = image["width"], image["height"]
    return [
        {"type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": w,
         "original_height": h, "image_rotation": 0,
         "value": {"x": 100 * x / w, "y": 100 * y / h, "width": 100 * bw / w, "height": 100 * bh / h,
                   "rotation": 0, "rectanglelabels": [names[a["category_id"]]]}}
        for a in coco["annotations"] if a["image_id"] == image["id"]
        for x, y, bw, bh in [a["bbox"]]
    ]


def _tasks(server, project_id: int) -> list[dict]:
    return api(server, "GET", f"/api/tasks/?project={project_id}&page_size=100&fields=all")["tasks"]


def test_push_annotate_pull_step_push(label_studio, orchard, tiny_config, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(label_studio.document_root))
    conn = Connection(label_studio.url, label_studio.token)
    project = tmp_path / "p"
    loop.init(project, orchard / "images", n=4, classes=["apple"], config=tiny_config, progress=False)

    first = push(project, conn)
    assert (first.created, first.existing, first.new_project, first.tag) == (4, 0, True, "initial-selection")
    again = push(project, conn)  # idempotent: nothing twice
    assert (again.created, again.existing, again.new_project) == (0, 4, False)
    tasks = _tasks(label_studio, first.project_id)
    assert len(tasks) == 4
    # Label Studio serves the images from the project's folder (local storage made by push).
    image = api_bytes(label_studio, tasks[0]["data"]["image"])
    assert image[:2] == b"\xff\xd8"

    with pytest.raises(LabelStudioError, match="nothing new to import .* 4 batch image"):
        pull(project, conn)

    # Play the annotator: submit the ground truth of 3 of the 4 tasks.
    for task in tasks[:3]:
        api(label_studio, "POST", f"/api/tasks/{task['id']}/annotations/",
            {"result": _gt_results(orchard, task["data"]["alloop_file"]), "was_cancelled": False})
    # `alloop labelstudio pull`: import the submitted annotations, step, push the next batch.
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    result = CliRunner().invoke(app, ["labelstudio", "pull", str(project), "--n", "4", "-q"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert f"pulled 3 annotated task(s) from Label Studio project {first.project_id}: 3 new, 0 changed; " \
           "1 still to label" in out
    assert "iteration 1: labels new 3, corrected 0" in out
    assert f"using Label Studio project {first.project_id}" in out and "batch iteration-1: 4 new task(s) with" in out
    assert label_studio.token not in result.output
    with Project.open(project, lock=False) as p:
        assert [it.status for it in p.store.iterations()] == ["done", "done"]
        assert len(p.store.queued_ids()) == 1 + 4  # the task left unlabeled, and the new batch
        stored = {a.file_name: len(a.boxes) for _, a, _ in p.store.annotations("train")
                  + p.store.annotations("val")}
        assert load_link(p).imported.keys() == {str(t["id"]) for t in tasks[:3]}
    assert stored == {t["data"]["alloop_file"]: len(_gt_results(orchard, t["data"]["alloop_file"]))
                      for t in tasks[:3]}

    with pytest.raises(LabelStudioError, match="nothing new to import"):
        pull(project, conn)  # the same annotations are never imported twice
    again = push(project, conn)
    assert (again.tag, again.created, again.existing) == ("iteration-1", 0, 4)

    # The next batch went out with the model's boxes as predictions.
    tasks = _tasks(label_studio, first.project_id)
    assert len(tasks) == 8
    assert [t["total_predictions"] for t in tasks[4:]] == [1, 1, 1, 1]
    for task in tasks[4:]:  # the [preannotation] rule: scores >= threshold, at most max_boxes, best first
        (prediction,) = api(label_studio, "GET", f"/api/tasks/{task['id']}/")["predictions"]
        scores = [r["score"] for r in prediction["result"]]
        assert len(scores) <= DEFAULT_MAX_BOXES and scores == sorted(scores, reverse=True)
        assert all(s >= DEFAULT_THRESHOLD for s in scores)
    assert {t["data"]["alloop_file"] for t in tasks[4:]}.isdisjoint(t["data"]["alloop_file"] for t in tasks[:4])


def api_bytes(server, path: str) -> bytes:
    import urllib.request

    request = urllib.request.Request(server.url + path, headers={"Authorization": f"Token {server.token}"})
    with urllib.request.urlopen(request, timeout=60) as r:
        return r.read()
