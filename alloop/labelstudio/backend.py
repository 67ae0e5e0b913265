"""An ML backend for Label Studio: the current iteration's model as pre-annotations (``alloop serve``).

Label Studio's ML backend protocol (label-studio-ml-backend, ``label_studio_ml/api.py``):

- ``GET /health`` (and ``/``) → ``{"status": "UP", "model_class": ...}``;
- ``POST /setup`` ``{project, schema, ...}`` → ``{"model_version": ...}``;
- ``POST /predict`` ``{tasks: [...], project, label_config, params}`` →
  ``{"results": [{"result": [rectanglelabels...], "score", "model_version"}, ...]}``, one per task, in order;
- ``POST /webhook`` ``{action: ANNOTATION_CREATED | ANNOTATION_UPDATED | START_TRAINING, ...}``.

The model is the checkpoint of the newest finished iteration; the server notices a newer one
between requests and loads it. With ``train_after=N``, every N new or changed annotations
(webhook events) run ``alloop step`` on Label Studio's labels and push the next batch, one at a
time, in a background thread. Standard library only (``http.server``): no Flask in alloop's deps.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from alloop.config import SERVE
from alloop.errors import AlloopError, LabelError
from alloop.formats import labelstudio as lsformat
from alloop.formats.names import ImageIndex
from alloop.preannotate import Preannotation, preannotation_boxes
from alloop.project import Project

log = logging.getLogger("alloop")

MODEL_CLASS = "alloop"
TRAIN_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "START_TRAINING")
MAX_BODY_BYTES = 64 << 20
DEFAULT_RULE = Preannotation()


@dataclass(frozen=True)
class Model:
    """One loaded checkpoint."""

    iteration: int
    checkpoint: Path
    classes: tuple[str, ...]
    trainer: Any

    @property
    def version(self) -> str:
        return f"iteration-{self.iteration}"


class Predictor:
    """Pre-annotations from the newest trained model of an alloop project (thread-safe)."""

    def __init__(self, project_dir: Path, rule: Preannotation = DEFAULT_RULE, device: str | None = None) -> None:
        self.project_dir = Path(project_dir)
        self.rule = rule
        self.device = device
        self._lock = threading.Lock()
        self._model: Model | None = None
        with Project.open(self.project_dir, lock=False) as project:
            self.image_root = project.image_root
            self._index = ImageIndex([r.path for r in project.store.images()], project.image_root)

    def _newest(self) -> tuple[int, Path, tuple[str, ...]] | None:
        with Project.open(self.project_dir, lock=False) as project:
            done = [it for it in project.store.iterations() if it.checkpoint and it.status == "done"]
            if not done:
                return None
            return done[-1].n, project.root / done[-1].checkpoint, tuple(project.store.classes())

    def model(self) -> Model | None:
        """The newest finished iteration's model, loaded once (None before the first step)."""
        newest = self._newest()
        if newest is None:
            return None
        n, checkpoint, classes = newest
        if self._model is None or self._model.iteration != n:
            from alloop.device import resolve_device
            from alloop.loop import build_trainer

            with Project.open(self.project_dir, lock=False) as project:
                device = resolve_device(self.device or project.config.device)
                trainer = build_trainer(project, classes, device)
            self._model = Model(n, checkpoint, classes, trainer)
            log.info("serving the model of iteration %d (%s)", n, checkpoint)
        return self._model

    def model_version(self) -> str:
        """``iteration-N`` of the model served, or ``none`` before the first step."""
        model = self.model()
        return model.version if model else "none"

    def _file_name(self, task: Mapping[str, Any]) -> str | None:
        data = task.get("data") if isinstance(task, Mapping) else None
        if not isinstance(data, Mapping):
            return None
        name = data.get("alloop_file") or data.get("image")
        if not isinstance(name, str):
            return None
        try:
            return self._index.resolve(name, f"task {task.get('id')}")
        except LabelError as e:
            log.warning("no pre-annotation: %s", e)
            return None

    def predict(self, tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One Label Studio prediction per task (empty result when the image is unknown or no model exists)."""
        with self._lock:
            model = self.model()
            names = [self._file_name(t) for t in tasks]
            known = [n for n in names if n is not None]
            dets = {}
            if model is not None and known:
                found = model.trainer.predict(model.checkpoint, [self.image_root / n for n in known], progress=False)
                dets = dict(zip(known, found))
        with Project.open(self.project_dir, lock=False) as project:
            sizes = {r.path: (r.width, r.height) for r in project.store.images()}
        out = []
        for i, name in enumerate(names):
            boxes = preannotation_boxes(dets[name], model.classes, self.rule) if name in dets else ()
            width, height = sizes.get(name, (0, 0))
            result = [lsformat.result_item(b, width, height, f"alloop-{i}-{j}") for j, b in enumerate(boxes)]
            prediction: dict[str, Any] = {"result": result, "model_version": model.version if model else "none"}
            if boxes:
                prediction["score"] = sum(b.score for b in boxes) / len(boxes)
            out.append(prediction)
        return out


class Trainer:
    """Runs ``alloop step`` on Label Studio's labels after every ``every`` annotation events."""

    def __init__(self, project_dir: Path, every: int, *, n: int, connection: Any, step_options: Mapping[str, Any]):
        self.project_dir = Path(project_dir)
        self.every = every
        self.n = n
        self.connection = connection
        self.step_options = dict(step_options)
        self.events = 0
        self._running: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.runs = 0

    def notify(self, action: str) -> str:
        """Count one event; start a step when enough arrived and none is running. Returns what happened."""
        with self._lock:
            self.events += 1
            due = action == "START_TRAINING" or self.events >= self.every
            if not due:
                return f"counted {self.events}/{self.every}"
            if self._running is not None and self._running.is_alive():
                return "a step is running already"
            self.events = 0
            self._running = threading.Thread(target=self._run, name="alloop-step", daemon=True)
            self._running.start()
            return "step started"

    def _run(self) -> None:
        from alloop.labelstudio.sync import push, step_from_labelstudio

        try:
            _, result = step_from_labelstudio(self.project_dir, self.connection, n=self.n, progress=False,
                                              **self.step_options)
            pushed = push(self.project_dir, self.connection)
            self.last_error = None
            log.info("step %d done (mAP@0.5 %s); %d new task(s) pushed", result.iteration, result.map50,
                     pushed.created)
        except AlloopError as e:
            self.last_error = str(e)
            log.warning("training after annotations: %s", e)
        finally:
            self.runs += 1

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running step (if any) ends."""
        thread = self._running
        if thread is not None:
            thread.join(timeout)


class _Handler(BaseHTTPRequestHandler):
    server: BackendServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ml backend: " + format, *args)

    def _reply(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"request body of {length} bytes is too large")
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else {}

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if path in ("", "/health"):
            self._reply(200, {"status": "UP", "model_class": MODEL_CLASS})
        elif path == "/metrics":
            self._reply(200, {})
        else:
            self._reply(404, {"error": f"no such endpoint {path}"})

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        try:
            body = self._body()
        except (ValueError, json.JSONDecodeError) as e:
            self._reply(400, {"error": f"request body is not JSON: {e}"})
            return
        if not isinstance(body, dict):
            self._reply(400, {"error": "request body must be a JSON object"})
            return
        try:
            if path == "/predict":
                tasks = body.get("tasks") or []
                if not isinstance(tasks, list):
                    self._reply(400, {"error": "'tasks' must be a list"})
                    return
                self._reply(200, {"results": self.server.predictor.predict(tasks)})
            elif path == "/setup":
                self._reply(200, {"model_version": self.server.predictor.model_version()})
            elif path == "/webhook":
                action = body.get("action")
                if action not in TRAIN_EVENTS:
                    self._reply(200, {"status": "Unknown event"})
                elif self.server.trainer is None:
                    self._reply(201, {"status": "ok", "result": "training after annotations is off (--train-after)"})
                else:
                    self._reply(201, {"status": "ok", "result": self.server.trainer.notify(str(action))})
            else:
                self._reply(404, {"error": f"no such endpoint {path}"})
        except AlloopError as e:
            self._reply(500, {"error": str(e)})


class BackendServer(ThreadingHTTPServer):
    """``serve_forever()`` answers Label Studio; ``url`` is where to point a project at."""

    daemon_threads = True

    def __init__(self, predictor: Predictor, host: str = SERVE.host, port: int = SERVE.port,
                 trainer: Trainer | None = None) -> None:
        super().__init__((host, port), _Handler)
        self.predictor = predictor
        self.trainer = trainer

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def connect_backend(client: Any, project_id: int, url: str, title: str = "alloop") -> dict[str, Any]:
    """Register the backend with a Label Studio project (reused when that URL is connected already)."""
    for backend in client.ml_backends(project_id):
        if str(backend.get("url", "")).rstrip("/") == url.rstrip("/"):
            return backend
    return client.add_ml_backend(project_id, url, title)


__all__ = ["BackendServer", "Predictor", "Trainer", "connect_backend"]
