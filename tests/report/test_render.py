"""The HTML page: every section present, self-contained, user strings escaped, notes instead of crashes."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from alloop.errors import ProjectError
from alloop.report import gather_report_data, write_report
from alloop.report.render import render_html

SECTIONS = ("summary", "learning-curve", "batch", "embedding-map", "scores", "classes", "per-class-ap",
            "timings", "config")
XSS = "<script>alert(1)</script>"


class _Collector(HTMLParser):
    """Ids, <img> sources, <script> tags and every URL-valued attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.imgs: list[dict[str, str]] = []
        self.scripts = 0
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.imgs.append(a)
        if tag == "script":
            self.scripts += 1
        self.urls += [v for k, v in attrs if k in ("src", "href", "action", "poster", "data") and v]


def parse(html: str) -> _Collector:
    c = _Collector()
    c.feed(html)
    return c


def test_step_report_has_every_section_and_only_embedded_resources(report_project):
    project = report_project(steps=2, baseline=True)
    html = render_html(gather_report_data(project, 2))
    page = parse(html)
    for section in SECTIONS:
        assert section in page.ids, section
    # figures: curve, map, histogram, classes, training; plus one thumbnail per selected image
    assert len(page.imgs) == 5 + 4
    assert all(img["src"].startswith("data:image/") for img in page.imgs)
    assert not re.search(r"https?://", html)
    assert all(not u.startswith(("http:", "https:", "//")) for u in page.urls)
    assert page.scripts == 0
    assert "default-src 'none'" in html  # the page itself forbids network loads
    assert "Why these images?" in html and "Is it improving?" in html
    assert "random selection reached" in html  # the simulation baseline is compared


def test_iteration_zero_report_renders_with_notes(report_project):
    project = report_project(steps=0)
    html = render_html(gather_report_data(project, 0))
    page = parse(html)
    assert set(SECTIONS) <= set(page.ids)
    assert "No model trained yet" in html
    assert "No uncertainty scores at iteration 0" in html
    assert "No per-class AP yet" in html
    assert all(img["src"].startswith("data:image/") for img in page.imgs)
    assert len(page.imgs) == 4 + 1  # thumbnails + the embedding map


def test_missing_pieces_become_notes(report_project):
    project = report_project(steps=1, embeddings=False, predictions=False)
    html = render_html(gather_report_data(project, 1))
    assert "No cached embeddings under ssl-test0001" in html
    assert "No predictions stored for iteration 1" in html
    assert set(SECTIONS) <= set(parse(html).ids)


def test_file_and_class_names_are_escaped(report_project):
    names = [f"{XSS}.png"] + [f"img_{k:02d}.png" for k in range(1, 16)]
    project = report_project(steps=1, names=names, classes=(XSS, "pear"))
    # Put the hostile file into this iteration's batch so it shows in the grid.
    store = project.store
    hostile = next(r for r in store.images() if r.path == f"{XSS}.png")
    assert hostile.id in store.labeled_ids()  # it was in the first batch: label + class tables
    html = render_html(gather_report_data(project, 1))
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert parse(html).scripts == 0


def test_hostile_name_in_the_batch_grid_is_escaped(report_project):
    names = [f"img_{k:02d}.png" for k in range(15)] + [f"{XSS}.png"]
    project = report_project(steps=0, names=names)
    store = project.store
    hostile = next(r for r in store.images() if r.path == f"{XSS}.png")
    store.delete_tag("initial-selection")
    store.create_tag("initial-selection", iteration=0, method="coreset", members=[(hostile.id, 1.0, None)])
    html = render_html(gather_report_data(project, 0))
    assert XSS not in html
    assert 'alt="&lt;script&gt;alert(1)&lt;/script&gt;.png"' in html


def test_thumbnail_grid_is_capped(report_project):
    project = report_project(steps=1)
    html = render_html(gather_report_data(project, 1), max_thumbnails=2)
    assert "Showing the first 2 picks; 2 more are listed in selection.csv" in html
    assert len(parse(html).imgs) == 5 + 2


def test_missing_image_file_gets_a_placeholder(report_project):
    project = report_project(steps=1)
    first = project.store.tag_members("iteration-1")[0]
    (project.image_root / first.path).unlink()
    page = parse(render_html(gather_report_data(project, 1)))
    thumb = next(i for i in page.imgs if i.get("alt") == first.path)
    assert thumb["src"].startswith("data:image/png;base64,")


@pytest.mark.parametrize("iteration", [0, 1])
def test_write_report_writes_page_and_data_atomically(report_project, iteration):
    project = report_project(steps=1)
    path = write_report(project, iteration)
    assert path == project.report_dir(iteration) / "index.html"
    names = sorted(p.name for p in path.parent.iterdir())
    assert not [n for n in names if n.endswith(".tmp")]
    assert {"index.html", "selection.csv", "learning_curve.csv", "classes.csv", "report.json"} <= set(names)
    assert ("scores.csv" in names) == (iteration == 1)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_report_links_to_earlier_reports(report_project):
    project = report_project(steps=2)
    write_report(project, 1)
    html = write_report(project, 2).read_text(encoding="utf-8")
    assert 'href="../iteration-1/index.html"' in html
    assert 'href="../iteration-0/index.html"' not in html  # never written, so not linked


def test_write_project_report_defaults_to_the_latest_iteration(report_project):
    from alloop.report import write_project_report

    project = report_project(steps=1)
    path = write_project_report(project.root)
    assert path == project.report_dir(1) / "index.html" and path.exists()
    with pytest.raises(ProjectError, match="no iteration 5"):
        write_project_report(project.root, 5)


def test_verdicts_answer_the_two_questions(report_project):
    from alloop.report.render import progress_verdict, selection_verdict

    project = report_project(steps=2, baseline=True)
    data = gather_report_data(project, 2)
    assert progress_verdict(data) == "Yes: mAP@0.5 +0.150 since iteration 1, +0.230 against random."
    assert selection_verdict(data).startswith("Uncertain and diverse; the typical pick is more uncertain than")
    assert progress_verdict(gather_report_data(project, 1)) == "First measurement: mAP@0.5 = 0.450."
    assert progress_verdict(gather_report_data(project, 0)) == "Not measured yet."
    assert selection_verdict(gather_report_data(project, 0)) == "Diverse: together they cover the pool."
    project.store.update_iteration(2, map50=0.40)
    assert progress_verdict(gather_report_data(project, 2)).startswith("No: mAP@0.5 -0.050 since iteration 1")


def test_auto_batches_are_explained_by_the_strategy_their_regime_chose(report_project):
    import dataclasses

    from alloop.report import gather_report_data
    from alloop.report.render import explain_selection, selection_verdict

    data = gather_report_data(report_project(steps=1), 1)
    auto = dataclasses.replace(data, summary=dataclasses.replace(data.summary, method="auto"),
                               batch_options={"regime": "low-budget", "strategy": "maxherding"})
    assert "auto (low-budget regime) → coverage (MaxHerding)" in explain_selection(auto)[0]
    assert selection_verdict(auto).startswith("Covering")
