"""The ML backend behind `alloop serve`: Label Studio connects to it and fetches pre-annotations from it."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from alloop.labelstudio import Client, Connection, push
from alloop.labelstudio.backend import BackendServer, Predictor, Trainer, connect_backend
from alloop.preannotate import Preannotation

from .conftest import api


def _post(url: str, body) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture()
def backend(stepped):
    server = BackendServer(Predictor(stepped, Preannotation(threshold=0.0, max_boxes=3)), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_label_studio_connects_and_fetches_predictions(label_studio, stepped, backend, monkeypatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(label_studio.document_root))
    conn = Connection(label_studio.url, label_studio.token)
    pushed = push(stepped, conn)
    client = Client(conn)
    # Label Studio calls /health and /setup when a backend is connected; a second connect reuses it.
    ml = connect_backend(client, pushed.project_id, backend.url)
    assert ml["state"] == "CO" and ml["model_version"] == "iteration-1"
    assert connect_backend(client, pushed.project_id, backend.url)["id"] == ml["id"]
    # Tasks a user imported without predictions: "Retrieve predictions" posts them to /predict.
    image_root = stepped.parent / "orchard" / "images"
    rel = image_root.relative_to(label_studio.document_root).as_posix()
    client.import_tasks(pushed.project_id, [{"data": {"image": f"/data/local-files/?d={rel}/row_01/{name}"}}
                                            for name in ("img_00000.jpg", "img_00001.jpg")])
    api(label_studio, "POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={pushed.project_id}",
        {"selectedItems": {"all": True, "excluded": []}})
    tasks = api(label_studio, "GET", f"/api/tasks/?project={pushed.project_id}&page_size=100&fields=all")["tasks"]
    assert len(tasks) == 6
    fetched = 0
    for task in tasks:
        for p in api(label_studio, "GET", f"/api/tasks/{task['id']}/")["predictions"]:
            assert p["model_version"] == "iteration-1"
            if "alloop_file" not in task["data"]:
                fetched += 1
                assert len(p["result"]) <= 3 and all(r["id"].startswith("alloop-") for r in p["result"])
    assert fetched == 2


def test_protocol_answers(stepped, backend) -> None:
    with urllib.request.urlopen(backend.url + "/health", timeout=10) as r:
        assert json.loads(r.read()) == {"status": "UP", "model_class": "alloop"}
    assert _post(backend.url + "/setup", {"project": "1.1700000000", "schema": "<View/>"}) == \
        (200, {"model_version": "iteration-1"})
    tasks = [{"id": 1, "data": {"image": "/data/local-files/?d=x/row_01/img_00000.jpg"}},
             {"id": 2, "data": {"image": "/data/local-files/?d=x/not_in_project.jpg"}}]
    status, answer = _post(backend.url + "/predict", {"tasks": tasks, "project": "1.1", "label_config": "<View/>"})
    assert status == 200 and len(answer["results"]) == 2
    known, unknown = answer["results"]
    assert known["model_version"] == "iteration-1" and len(known["result"]) <= 3
    assert all(r["type"] == "rectanglelabels" and r["original_width"] == 128 for r in known["result"])
    assert unknown["result"] == []
    assert _post(backend.url + "/webhook", {"action": "PROJECT_UPDATED"}) == (200, {"status": "Unknown event"})
    status, answer = _post(backend.url + "/webhook", {"action": "ANNOTATION_CREATED", "project": {"id": 1}})
    assert status == 201 and "off" in answer["result"]
    assert _post(backend.url + "/predict", {"tasks": "x"})[0] == 400


def test_trainer_counts_events_before_a_step(stepped) -> None:
    trainer = Trainer(stepped, 3, n=2, connection=None, step_options={})
    assert trainer.notify("ANNOTATION_CREATED") == "counted 1/3"
    assert trainer.notify("ANNOTATION_UPDATED") == "counted 2/3"


@pytest.mark.slow
def test_annotations_submitted_in_label_studio_trigger_a_step(label_studio, stepped, tmp_path, monkeypatch) -> None:
    """Connecting the backend makes Label Studio post every event to its /webhook; --train-after 1 steps."""
    import shutil
    import time

    from alloop.project import Project

    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(label_studio.document_root))
    project = tmp_path / "copy"
    shutil.copytree(stepped, project, ignore=shutil.ignore_patterns("labelstudio", ".alloop.lock"))
    conn = Connection(label_studio.url, label_studio.token)
    pushed = push(project, conn)
    trainer = Trainer(project, 1, n=2, connection=conn, step_options={})
    server = BackendServer(Predictor(project), port=0, trainer=trainer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        connect_backend(Client(conn), pushed.project_id, server.url)
        task = next(iter(Client(conn).tasks(pushed.project_id)))
        api(label_studio, "POST", f"/api/tasks/{task['id']}/annotations/", {"result": [], "was_cancelled": False})
        deadline = time.monotonic() + 600
        while trainer.runs == 0 and time.monotonic() < deadline:
            time.sleep(1)
        assert trainer.runs == 1 and trainer.last_error is None
    finally:
        server.shutdown()
        server.server_close()
    with Project.open(project, lock=False) as p:
        assert [it.status for it in p.store.iterations()] == ["done", "done", "done"]
        assert task["data"]["alloop_file"] in {a.file_name for _, a, _ in p.store.annotations("train")
                                               + p.store.annotations("val")}
    assert len(list(Client(conn).tasks(pushed.project_id))) == 4 + 2  # the next batch was pushed
