"""Fixtures for the format tests: a tiny project (image names, sizes, classes) and its files."""

from __future__ import annotations

from pathlib import Path

import pytest

from alloop.boxes import Box, ImageAnnotation

DATA = Path(__file__).resolve().parent.parent / "data" / "formats"
CLASSES = ("apple", "leaf")
SAMPLE_IMAGES = {
    "row_01/apple_001.jpg": (640, 480),
    "row_01/apple_002.jpg": (640, 480),
    "row_02/apple_003.jpg": (640, 480),
    "apple_004.png": (320, 240),
}


@pytest.fixture
def images() -> dict[str, tuple[int, int]]:
    return dict(SAMPLE_IMAGES)


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """The sample images as small files (formats never decode them, they link or list them)."""
    root = tmp_path / "images"
    for name in SAMPLE_IMAGES:
        f = root / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"not really an image: " + name.encode())
    return root


@pytest.fixture
def labeled() -> list[ImageAnnotation]:
    """Annotations covering the cases a round trip must keep: fractions, edges, 0 boxes, attributes."""
    return [
        ImageAnnotation(
            "row_01/apple_001.jpg",
            640,
            480,
            (
                Box(64.0, 60.0, 224.0, 136.8, "apple"),
                Box(300.25, 200.5, 340.25, 230.5125, "leaf", attributes=(("occluded", "1"),)),
                Box(0.0, 0.0, 640.0, 480.0, "apple"),
            ),
        ),
        ImageAnnotation("row_01/apple_002.jpg", 640, 480, ()),
        ImageAnnotation(
            "apple_004.png",
            320,
            240,
            (Box(10.333, 20.667, 30.5, 41.0, "leaf", attributes=(("occluded", "2"), ("truncated", "0.5"))),),
        ),
    ]


def assert_same(got, want, *, tol: float = 1e-6, attributes: bool = True) -> None:
    """Two sequences of ImageAnnotation equal up to float tolerance (by file name, in order of boxes)."""
    got_by = {a.file_name: a for a in got}
    assert set(got_by) == {a.file_name for a in want}
    for w in want:
        g = got_by[w.file_name]
        assert (g.width, g.height) == (w.width, w.height)
        assert len(g.boxes) == len(w.boxes), (w.file_name, g.boxes, w.boxes)
        for gb, wb in zip(g.boxes, w.boxes):
            assert gb.label == wb.label
            for a, b in zip((gb.x0, gb.y0, gb.x1, gb.y1), (wb.x0, wb.y0, wb.x1, wb.y1)):
                assert abs(a - b) <= tol, (w.file_name, gb, wb)
            if attributes:
                assert gb.attributes == wb.attributes, (w.file_name, gb, wb)
