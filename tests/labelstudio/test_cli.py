"""`alloop labelstudio` and `alloop serve` at the edge: one-line errors, the token never printed."""

from __future__ import annotations

from typer.testing import CliRunner

from alloop.cli import app
from alloop.project import Project, ProjectConfig


def _bare_project(tmp_path):
    with Project.create(tmp_path / "p", ProjectConfig(image_root=str(tmp_path))):
        pass
    return tmp_path / "p"


def _one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    return lines[0]


def test_push_without_a_url_says_which_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    project = _bare_project(tmp_path)
    line = _one_line(CliRunner().invoke(app, ["labelstudio", "push", str(project)]))
    assert "no Label Studio URL: set LABEL_STUDIO_URL" in line
    assert not (project / "artifacts" / "labelstudio").exists()


def test_unreachable_server(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "secret-token-123")
    project = _bare_project(tmp_path)
    result = CliRunner().invoke(app, ["labelstudio", "push", str(project), "--url", "http://127.0.0.1:9"])
    assert "cannot reach Label Studio at http://127.0.0.1:9" in _one_line(result)
    assert "secret-token-123" not in result.output


def test_a_wrong_token_is_refused_and_never_printed(label_studio, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "0123456789wrongtoken")
    project = _bare_project(tmp_path)
    result = CliRunner().invoke(app, ["labelstudio", "pull", str(project)])
    assert "refused the API token (401)" in _one_line(result) and "wrongtoken" not in result.output


def test_pull_before_push_says_to_push(label_studio, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    project = _bare_project(tmp_path)
    result = CliRunner().invoke(app, ["labelstudio", "pull", str(project)])
    assert "is not linked to a Label Studio project yet; run `alloop labelstudio push" in _one_line(result)
    assert label_studio.token not in result.output


def test_serve_connect_needs_a_linked_project(stepped, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "secret-token-123")
    (stepped / "artifacts" / "labelstudio" / "link.json").unlink(missing_ok=True)
    result = CliRunner().invoke(app, ["serve", str(stepped), "--port", "0", "--connect"])
    assert "--connect: " in _one_line(result) and "linked to no Label Studio project" in result.output


def test_step_from_names_the_sources_and_excludes_labels(tmp_path) -> None:
    project = _bare_project(tmp_path)
    line = _one_line(CliRunner().invoke(app, ["step", str(project), "--from", "labelbox"]))
    assert "--from labelbox: unknown; live label sources: labelstudio" in line
    line = _one_line(CliRunner().invoke(app, ["step", str(project), "--from", "labelstudio", "--labels", "x.json"]))
    assert "--labels and --from labelstudio exclude each other" in line


def test_a_personal_access_token_is_exchanged_for_access_tokens(label_studio) -> None:
    """Label Studio 1.23's Access Token page shows a personal access token (a JWT refresh token)."""
    from alloop.labelstudio import Client, Connection

    from .conftest import api

    pat = api(label_studio, "POST", "/api/token/")["token"]
    client = Client(Connection(label_studio.url, pat))
    assert client.whoami()["email"] == "alloop-tests@example.com"
    assert client._auth.startswith("Bearer ") and pat not in client._auth
