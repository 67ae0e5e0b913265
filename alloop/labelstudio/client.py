"""A small client for Label Studio's REST API: the dozen calls alloop makes, nothing more.

The endpoints are the ones label-studio-sdk 2.1 wraps (``projects.create``, ``projects.import_tasks``,
``tasks.list``, ``annotations.create``, ``import_storage.local.create``, ``ml.create``, ``projects.exports``).
alloop talks to them with the standard library instead of installing the SDK: label-studio-sdk 2.1.2
pins opencv-python-headless 4.12, which downgrades numpy (2.4 → 2.2) in alloop's environment, pulls in
about 40 packages (black, nltk, Faker, …) and takes seconds to import.

Authentication is Label Studio's API token (Account & Settings → Access Token): a legacy token is sent
as ``Authorization: Token …``; a personal access token (a JWT refresh token) is exchanged once for an
access token at ``/api/token/refresh`` and sent as ``Bearer``. The token is never logged and never
appears in an error message.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alloop.errors import AlloopError

URL_ENV = "LABEL_STUDIO_URL"
KEY_ENV = "LABEL_STUDIO_API_KEY"
TIMEOUT_S = 60.0
PAGE_SIZE = 100


class LabelStudioError(AlloopError):
    """Label Studio cannot be reached, refuses the token, or answers a request with an error."""


class _Refused(LabelStudioError):
    """HTTP 401: the token (or an access token that expired) was refused."""


@dataclass(frozen=True)
class Connection:
    """Where Label Studio runs and the API token to use (``repr`` hides the token)."""

    url: str
    api_key: str

    def __repr__(self) -> str:
        return f"Connection(url={self.url!r}, api_key=<hidden>)"

    @classmethod
    def resolve(cls, url: str | None = None, api_key: str | None = None) -> Connection:
        """URL from the argument, else $LABEL_STUDIO_URL; token from the argument, else $LABEL_STUDIO_API_KEY.

        The token is never read from alloop.toml: reports print the project's config.
        """
        url = (url or os.environ.get(URL_ENV) or "").strip()
        api_key = (api_key or os.environ.get(KEY_ENV) or "").strip()
        if not url:
            raise LabelStudioError(
                f"no Label Studio URL: set {URL_ENV} (e.g. http://127.0.0.1:8080), "
                "[labelstudio] url in alloop.toml, or pass --url"
            )
        if not url.startswith(("http://", "https://")):
            raise LabelStudioError(f"Label Studio URL {url!r} must start with http:// or https://")
        if not api_key:
            raise LabelStudioError(
                f"no Label Studio API token: set {KEY_ENV} to the token shown in Label Studio under "
                "Account & Settings → Access Token (alloop reads it from the environment only)"
            )
        return cls(url.rstrip("/"), api_key)


def _jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT (unverified: only to tell a refresh token from a legacy one), else None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, json.JSONDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


class Client:
    """JSON calls to one Label Studio server; every failure is a one-line :class:`LabelStudioError`."""

    def __init__(self, connection: Connection, *, timeout: float = TIMEOUT_S) -> None:
        self.connection = connection
        self.url = connection.url
        self.timeout = timeout
        self._auth: str | None = None
        self._refreshed = False

    # -- transport ------------------------------------------------------------------------------

    def _authorization(self) -> str:
        if self._auth is None:
            token = self.connection.api_key
            claims = _jwt_claims(token)
            if claims is not None and claims.get("token_type") == "refresh":
                access = self._send("POST", "/api/token/refresh", {"refresh": token}, auth=None)
                self._auth = f"Bearer {access['access']}"
            elif claims is not None:
                self._auth = f"Bearer {token}"
            else:
                self._auth = f"Token {token}"
        return self._auth

    def _send(self, method: str, path: str, body: Any = None, *, auth: str | None, raw: bool = False) -> Any:
        headers = {"Accept": "application/json"}
        if auth:
            headers["Authorization"] = auth
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        what = f"Label Studio at {self.url}: {method} {path.split('?')[0]}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as e:
            detail = _error_detail(e.read())
            if e.code == 401:
                raise _Refused(
                    f"{what} refused the API token (401); copy the token from Account & Settings → "
                    f"Access Token into {KEY_ENV} (legacy tokens must be enabled in Organization → API Tokens)"
                ) from None
            if e.code == 404:
                raise LabelStudioError(f"{what}: not found (404){detail}") from None
            raise LabelStudioError(f"{what}: HTTP {e.code}{detail}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise LabelStudioError(
                f"cannot reach Label Studio at {self.url} ({reason}); start it (`label-studio start`) "
                f"or fix {URL_ENV}"
            ) from None
        if raw:
            return payload
        if not payload:
            return None
        try:
            return json.loads(payload)
        except json.JSONDecodeError:
            raise LabelStudioError(
                f"{what}: answered with something that is not JSON; is {self.url} a Label Studio server?"
            ) from None

    def call(self, method: str, path: str, body: Any = None, *, params: Mapping[str, Any] | None = None,
             raw: bool = False) -> Any:
        """One API call; ``path`` starts with ``/api/``; JSON in and out (bytes when ``raw``)."""
        if params:
            path += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        try:
            return self._send(method, path, body, auth=self._authorization(), raw=raw)
        except _Refused:
            if not (self._auth or "").startswith("Bearer") or self._refreshed:
                raise
            # An access token lives minutes; a step takes longer. Exchange the refresh token again, once.
            self._auth, self._refreshed = None, True
            return self._send(method, path, body, auth=self._authorization(), raw=raw)

    # -- the calls alloop makes ----------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """The user the token belongs to (checks URL and token in one call)."""
        return self.call("GET", "/api/current-user/whoami")

    def project(self, project_id: int) -> dict[str, Any]:
        """One project's settings."""
        return self.call("GET", f"/api/projects/{int(project_id)}/")

    def create_project(self, title: str, label_config: str, description: str = "") -> dict[str, Any]:
        """A new project with this labeling interface."""
        return self.call("POST", "/api/projects/",
                         {"title": title, "label_config": label_config, "description": description})

    def update_project(self, project_id: int, **fields: Any) -> dict[str, Any]:
        """Change project settings (label_config, title, …)."""
        return self.call("PATCH", f"/api/projects/{int(project_id)}/", fields)

    def tasks(self, project_id: int) -> Iterator[dict[str, Any]]:
        """Every task of a project (id, data, annotation counts), page by page."""
        page = 1
        while True:
            try:
                answer = self.call("GET", "/api/tasks/", params={"project": int(project_id), "page": page,
                                                                 "page_size": PAGE_SIZE})
            except LabelStudioError as e:
                if page > 1 and "(404)" in str(e):
                    return  # past the last page
                raise
            tasks = answer.get("tasks", []) if isinstance(answer, dict) else answer
            yield from tasks
            total = answer.get("total") if isinstance(answer, dict) else None
            if not tasks or len(tasks) < PAGE_SIZE or (total is not None and page * PAGE_SIZE >= total):
                return
            page += 1

    def import_tasks(self, project_id: int, tasks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Create tasks (with their predictions) in one request."""
        return self.call("POST", f"/api/projects/{int(project_id)}/import", list(tasks))

    def export_json(self, project_id: int, *, all_tasks: bool = False) -> list[dict[str, Any]]:
        """The project's Export → JSON: annotated tasks (every task with ``all_tasks``)."""
        answer = self.call("GET", f"/api/projects/{int(project_id)}/export",
                           params={"exportType": "JSON", "download_all_tasks": str(all_tasks).lower()})
        if not isinstance(answer, list):
            raise LabelStudioError(f"Label Studio at {self.url}: the JSON export of project {project_id} "
                                   "is not a list of tasks")
        return answer

    def export_file(self, project_id: int, export_type: str) -> bytes:
        """The project's export in another format (COCO, VOC, YOLO, JSON_MIN, …) as the bytes it downloads."""
        return self.call("GET", f"/api/projects/{int(project_id)}/export",
                         params={"exportType": export_type, "download_all_tasks": "true"}, raw=True)

    def create_annotation(self, task_id: int, result: Sequence[Mapping[str, Any]], **fields: Any) -> dict[str, Any]:
        """Submit an annotation for a task (what a labeler's Submit does)."""
        return self.call("POST", f"/api/tasks/{int(task_id)}/annotations/", {"result": list(result), **fields})

    def local_storages(self, project_id: int) -> list[dict[str, Any]]:
        """The project's Local Storage connections."""
        return self.call("GET", "/api/storages/localfiles/", params={"project": int(project_id)})

    def create_local_storage(self, project_id: int, path: str, title: str) -> dict[str, Any]:
        """A Local Storage connection (not synced: alloop creates the tasks itself)."""
        return self.call("POST", "/api/storages/localfiles/",
                         {"project": int(project_id), "path": path, "title": title, "use_blob_urls": True})

    def ml_backends(self, project_id: int) -> list[dict[str, Any]]:
        """The ML backends connected to a project."""
        return self.call("GET", "/api/ml/", params={"project": int(project_id)})

    def add_ml_backend(self, project_id: int, url: str, title: str) -> dict[str, Any]:
        """Connect an ML backend; Label Studio checks it with ``/health`` and ``/setup``."""
        return self.call("POST", "/api/ml/", {"project": int(project_id), "url": url, "title": title,
                                              "is_interactive": False})


def _error_detail(body: bytes) -> str:
    """Label Studio's own reason for an error, shortened to one line."""
    try:
        answer = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    if not isinstance(answer, dict):
        return ""
    reason = answer.get("validation_errors") or answer.get("detail") or answer.get("message")
    if not reason:
        return ""
    text = reason if isinstance(reason, str) else json.dumps(reason, ensure_ascii=False)
    text = " ".join(text.split())
    return f": {text[:300]}"


__all__ = ["KEY_ENV", "URL_ENV", "Client", "Connection", "LabelStudioError"]
