"""Image-name resolution: what label tools write -> the project's relative path."""

from __future__ import annotations

from pathlib import Path

import pytest

from alloop.errors import LabelError
from alloop.formats.names import ImageIndex, resolve_image_name

NAMES = ["row_01/apple_001.jpg", "row_01/apple_002.jpg", "row_02/apple_003.jpg", "apple_004.png",
         "row_02/apple_001.png", "a b/c+d.jpg"]


@pytest.mark.parametrize(
    "raw, want",
    [
        ("row_01/apple_002.jpg", "row_01/apple_002.jpg"),
        ("./row_01/apple_002.jpg", "row_01/apple_002.jpg"),
        ("row_01\\apple_002.jpg", "row_01/apple_002.jpg"),
        ("row_01/x/../apple_002.jpg", "row_01/apple_002.jpg"),
        ("apple_003.jpg", "row_02/apple_003.jpg"),
        ("/data/upload/3/1a2b3c4d-apple_003.jpg", "row_02/apple_003.jpg"),
        ("/data/upload/12/apple_004.png", "apple_004.png"),
        ("/data/local-files/?d=row_01/apple_002.jpg", "row_01/apple_002.jpg"),
        ("/data/local-files/?d=orchard/images/row_01/apple_002.jpg", "row_01/apple_002.jpg"),
        ("/data/local-files/?d=row_01%2Fapple_002.jpg", "row_01/apple_002.jpg"),
        ("http://localhost:8081/row_01/apple_002.jpg", "row_01/apple_002.jpg"),
        ("http://host:8080/static/images/row_02/apple_003.jpg?x=1", "row_02/apple_003.jpg"),
        ("s3://bucket/orchard/apple_004.png", "apple_004.png"),
        ("http://h/a%20b/c%2Bd.jpg", "a b/c+d.jpg"),
        ("images/row_01/apple_001.jpg", "row_01/apple_001.jpg"),
    ],
)
def test_resolves_tool_names(raw: str, want: str) -> None:
    assert resolve_image_name(raw, NAMES) == want


@pytest.mark.parametrize(
    "raw",
    [
        "../x.jpg",
        "a/../../x.jpg",
        "/etc/passwd",
        "..\\x.jpg",
        "..\\..\\windows\\win.ini",
        "%2e%2e/x.jpg",
        "%2E%2E%2Fx.jpg",
        "%252e%252e/x.jpg",
        "row_01/../../apple_004.png",
        "http://host/../../etc/passwd",
        "/data/local-files/?d=../../etc/passwd",
        "/data/local-files/?d=%2e%2e/secret.jpg",
        "C:\\Users\\x\\apple_004.png",
        "~/apple_004.png",
        "/home/user/orchard/apple_004.png",
    ],
)
def test_traversal_is_refused(raw: str) -> None:
    with pytest.raises(LabelError, match="path escapes the image root") as err:
        resolve_image_name(raw, NAMES, source="labels.json")
    assert str(err.value).startswith("labels.json")


def test_absolute_path_inside_the_image_root_resolves(tmp_path: Path) -> None:
    root = tmp_path / "orchard"
    index = ImageIndex(NAMES, root)
    assert index.resolve(str(root / "row_02" / "apple_003.jpg"), "f") == "row_02/apple_003.jpg"
    with pytest.raises(LabelError, match="path escapes the image root"):
        index.resolve(str(root / ".." / "apple_004.png"), "f")
    with pytest.raises(LabelError, match="path escapes the image root"):
        index.resolve(str(tmp_path / "orchard_evil" / "apple_004.png"), "f")


def test_ambiguous_base_name_lists_candidates() -> None:
    with pytest.raises(LabelError, match=r"labels\.json: image name 'apple_001' is ambiguous.*row_01/apple_001\.jpg"):
        ImageIndex(NAMES).resolve_stem("apple_001", "labels.json")


def test_ambiguous_upload_name() -> None:
    names = ["a/apple.jpg", "b/apple.jpg"]
    with pytest.raises(LabelError, match="ambiguous.*name it by its path relative to the image root"):
        resolve_image_name("/data/upload/3/1a2b3c4d-apple.jpg", names, source="export.json")


def test_unknown_image_names_the_file_and_the_raw_name() -> None:
    with pytest.raises(LabelError, match=r"^export\.json: task 3: image 'pear\.jpg' is not in the project"):
        resolve_image_name("pear.jpg", NAMES, source="export.json: task 3")


def test_empty_name() -> None:
    with pytest.raises(LabelError, match="empty image name"):
        resolve_image_name("  ", NAMES, source="f")


def test_nul_byte() -> None:
    with pytest.raises(LabelError, match="NUL byte"):
        resolve_image_name("apple_004.png\x00.txt", NAMES, source="f")


def test_stems() -> None:
    index = ImageIndex(NAMES)
    assert index.resolve_stem("row_01/apple_002", "f") == "row_01/apple_002.jpg"
    assert index.resolve_stem("train/row_01/apple_002", "f") == "row_01/apple_002.jpg"  # YOLO split folder
    assert index.resolve_stem("apple_003", "f") == "row_02/apple_003.jpg"
    assert index.resolve_stem("row_02__apple_003", "f") == "row_02/apple_003.jpg"  # alloop's flat KITTI names
    with pytest.raises(LabelError, match="path escapes the image root"):
        index.resolve_stem("../apple_004", "f")
    with pytest.raises(LabelError, match="not in the project"):
        index.resolve_stem("pear", "f")
