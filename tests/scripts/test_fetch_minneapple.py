"""scripts/fetch_minneapple.py: masks to boxes as MinneApple's authors do, safe extraction, resumable
download, and the whole command on a tiny archive of the real layout, all without the internet."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alloop.errors import AlloopError
from alloop.formats import read_labels

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "fetch_minneapple.py"
FIXTURE = ROOT / "tests" / "data" / "minneapple"  # detection/{train/{images,masks},test/images}


def _load_script():
    spec = importlib.util.spec_from_file_location("fetch_minneapple", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


fm = _load_script()


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


@pytest.fixture()
def archive(tmp_path: Path) -> Path:
    """The fixture folder packed as MinneApple packs it: one top-level detection/ folder."""
    path = tmp_path / "detection.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(FIXTURE / "detection", arcname="detection")
    return path


def _evil_archive(path: Path, name: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member_name in ("detection/train/images/ok.png", name):
            info = tarfile.TarInfo(member_name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    return path


# -- masks_to_boxes ---------------------------------------------------------------------------------

def test_masks_to_boxes_follows_the_authors_loader():
    mask = np.zeros((24, 32), np.uint8)
    mask[2:7, 2:9] = 1  # rows 2..6, cols 2..8
    mask[12:14, 3:5] = 3  # one id in two pieces is still one apple ...
    mask[18:21, 9:12] = 3  # ... whose box spans both
    mask[10:12, 25:27] = 200  # 2x2 pixels: box (25,10,26,11), area 1
    mask[20, 2:8] = 9  # one row: x0 < x1 but y0 == y1, dropped as the authors do
    mask[0:5, 31] = 4  # one column at the right edge: dropped too

    assert fm.masks_to_boxes(mask, min_area=0) == [(2, 2, 8, 6), (3, 12, 11, 20), (25, 10, 26, 11)]
    # max(col)/max(row) without +1: the 7x5-pixel block is 6 wide and 4 high.
    assert fm.masks_to_boxes(mask, min_area=5) == [(2, 2, 8, 6), (3, 12, 11, 20)]
    assert fm.masks_to_boxes(mask, min_area=65) == []


def test_masks_to_boxes_background_only_and_16_bit_ids():
    assert fm.masks_to_boxes(np.zeros((4, 5), np.uint8)) == []
    mask = np.zeros((10, 10), np.uint16)
    mask[1:4, 1:5] = 300
    mask[6:9, 5:9] = 70
    assert fm.masks_to_boxes(mask) == [(5, 6, 8, 8), (1, 1, 4, 3)]  # ascending id, like np.unique


def test_masks_to_boxes_refuses_a_colour_mask():
    with pytest.raises(AlloopError, match=r"one channel .*shape \(4, 5, 3\)"):
        fm.masks_to_boxes(np.zeros((4, 5, 3), np.uint8))


def _authors_boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The box loop of MinneApple's data/apple_dataset.py (AppleDataset.__getitem__), restated."""
    ids = np.unique(mask)[1:]  # they drop the first (smallest) value as background
    boxes = []
    for i in ids:
        rows, cols = np.where(mask == i)
        x0, x1, y0, y1 = cols.min(), cols.max(), rows.min(), rows.max()
        if x0 == x1 or y0 == y1:
            continue
        boxes.append((int(x0), int(y0), int(x1), int(y1)))  # their clip to [0, w] / [0, h] is a no-op
    return boxes


@pytest.mark.parametrize("seed", range(5))
def test_masks_to_boxes_matches_the_authors_loop_on_random_masks(seed: int):
    rng = np.random.default_rng(seed)
    mask = np.zeros((40, 60), np.uint8)
    for apple in rng.choice(np.arange(1, 255), size=rng.integers(1, 30), replace=False):
        y, x = rng.integers(0, 40), rng.integers(0, 60)
        h, w = rng.integers(1, 8), rng.integers(1, 8)
        mask[y:y + h, x:x + w] = apple  # later apples occlude earlier ones, as in an orchard
    assert fm.masks_to_boxes(mask, min_area=0) == _authors_boxes(mask)


# -- convert ----------------------------------------------------------------------------------------

def test_convert_writes_coco_that_alloop_reads(tmp_path: Path):
    out = tmp_path / "gt.json"
    stats = fm.convert(FIXTURE / "detection", out, "train", min_area=5)

    assert (stats.images, stats.boxes, stats.images_without_apples) == (3, 4, 1)
    assert (stats.dropped_degenerate, stats.dropped_small) == (1, 1)
    assert stats.missing_mask == ("img_003.png",)
    assert "img_003.png" in stats.warnings[0] and "skipped" in stats.warnings[0]

    doc = json.loads(out.read_text())
    assert [(i["file_name"], i["width"], i["height"]) for i in doc["images"]] == [
        ("img_000.png", 32, 24), ("img_001.png", 32, 24), ("img_002.png", 32, 24)]
    assert doc["categories"] == [{"id": 1, "name": "apple", "supercategory": "fruit"}]
    by_image = {i["id"]: i["file_name"] for i in doc["images"]}
    got = [(by_image[a["image_id"]], a["bbox"], a["area"]) for a in doc["annotations"]]
    assert got == [
        ("img_001.png", [10, 4, 7, 5], 35),  # rows 4..9, cols 10..17
        ("img_002.png", [2, 2, 6, 4], 24),
        ("img_002.png", [3, 12, 8, 8], 64),  # id 3 in two pieces
        ("img_002.png", [20, 15, 10, 7], 70),
    ]

    sizes = {name: (32, 24) for name in by_image.values()}
    labels, warnings = read_labels(out, format="coco", images=sizes, classes=["apple"])
    boxes = {a.file_name: [(b.x0, b.y0, b.x1, b.y1) for b in a.boxes] for a in labels.images}
    assert boxes == {"img_000.png": [], "img_001.png": [(10, 4, 17, 9)],
                     "img_002.png": [(2, 2, 8, 6), (3, 12, 11, 20), (20, 15, 30, 22)]}


def test_convert_skips_unusable_masks_with_a_warning(tmp_path: Path):
    detection = tmp_path / "detection"
    shutil.copytree(FIXTURE / "detection", detection)
    masks = detection / "train" / "masks"
    Image.new("RGB", (32, 24)).save(masks / "img_000.png")  # colour, not instance ids
    Image.new("L", (24, 32)).save(masks / "img_001.png")  # transposed size
    Image.new("L", (32, 24)).save(masks / "img_999.png")  # no image of that name

    stats = fm.convert(detection, tmp_path / "gt.json", "train", min_area=5)

    assert stats.unusable_mask == ("img_000.png", "img_001.png")
    assert stats.orphan_masks == ("img_999.png",)
    assert stats.images == 1 and stats.boxes == 3  # only img_002 is left
    assert any("mode 'RGB'" in w for w in stats.warnings)
    assert any("mask is 24x32 but the image is 32x24" in w for w in stats.warnings)


def test_convert_min_area_zero_keeps_exactly_the_authors_boxes(tmp_path: Path):
    stats = fm.convert(FIXTURE / "detection", tmp_path / "gt.json", "train", min_area=0)
    assert (stats.boxes, stats.dropped_small, stats.dropped_degenerate) == (5, 0, 1)


def test_convert_test_split_has_no_masks(tmp_path: Path):
    with pytest.raises(AlloopError, match=r"masks only for 'train' \(use --split train\)"):
        fm.convert(FIXTURE / "detection", tmp_path / "gt.json", "test", min_area=5)
    assert not (tmp_path / "gt.json").exists()


# -- the command, end to end ------------------------------------------------------------------------

def test_cli_with_local_archive(tmp_path: Path, archive: Path):
    data = tmp_path / "data"
    r = _run("--out", str(data), "--archive", str(archive), "--min-area", "5")

    assert r.returncode == 0, r.stderr
    assert "md5 " in r.stdout and "sha256 " in r.stdout
    assert "img_003.png" in r.stderr and "skipped" in r.stderr
    images = data / "detection" / "train" / "images"
    coco = data / "minneapple_train_coco.json"
    assert f"alloop init myproj --images {images} --n 100" in r.stdout
    assert (f"alloop simulate --images {images} --labels {coco} --budget-per-round 50 --rounds 6 "
            "--methods random,coreset,coral --seeds 3 --out sim-minneapple") in r.stdout
    assert len(json.loads(coco.read_text())["annotations"]) == 4
    assert sorted(p.name for p in data.iterdir()) == ["detection", "minneapple_train_coco.json"]

    again = _run("--out", str(data), "--archive", str(archive))  # default: the authors' boxes exactly
    assert again.returncode == 0, again.stderr
    assert "already extracted" in again.stdout and "md5" not in again.stdout
    assert len(json.loads(coco.read_text())["annotations"]) == 5  # reconverted with the new --min-area


def _main(capsys, *args: str) -> tuple[int, str, str]:
    """The command in-process (same code path as the subprocess, without its start-up cost)."""
    code = fm.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        fm.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for flag in ("--out", "--archive", "--url", "--split", "--min-area", "--force", "MinneApple", "authors"):
        assert flag in out


@pytest.mark.parametrize("name", ["../escaped.txt", "/tmp/alloop-escaped.txt", "detection/../../escaped.txt"])
def test_path_traversal_is_refused(tmp_path: Path, capsys, name: str):
    bad = _evil_archive(tmp_path / "evil.tar.gz", name)
    data = tmp_path / "data"
    code, _, err = _main(capsys, "--out", str(data), "--archive", str(bad))

    assert code == 1
    assert err.strip().count("\n") == 0  # one line
    assert err.startswith("error: ") and "refusing to extract" in err and repr(name) in err
    assert list(data.iterdir()) == []  # nothing half-extracted, nothing written beside it
    assert not (tmp_path / "escaped.txt").exists()


def test_link_out_of_the_folder_is_refused(tmp_path: Path):
    path = tmp_path / "link.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("detection/train/images/x.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(AlloopError, match="refusing to extract link"):
        fm.safe_extract(path, tmp_path / "data")
    assert not (tmp_path / "data" / "detection").exists()


def _assert_corrupt_error(code: int, err: str, path: Path, data: Path) -> None:
    assert code == 1
    assert err.strip().count("\n") == 0  # tarfile's own message spans lines; ours must not
    assert err.startswith(f"error: {path}: not a readable .tar.gz")
    assert "download again" in err
    assert not (data / "detection").exists() and not (data / ".detection.extracting").exists()


def test_corrupt_archive_is_a_one_line_error(tmp_path: Path):
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"<html>not an archive</html>" * 40)
    r = _run("--out", str(tmp_path / "data"), "--archive", str(garbage))
    _assert_corrupt_error(r.returncode, r.stderr, garbage, tmp_path / "data")


def test_truncated_archive_is_a_one_line_error(tmp_path: Path, archive: Path, capsys):
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])  # cut mid-stream
    code, _, err = _main(capsys, "--out", str(tmp_path / "data"), "--archive", str(broken))
    _assert_corrupt_error(code, err, broken, tmp_path / "data")


def test_archive_without_detection_folder(tmp_path: Path, capsys):
    other = tmp_path / "counting.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.add(FIXTURE / "detection" / "train" / "images", arcname="counting/train/images")
    code, _, err = _main(capsys, "--out", str(tmp_path / "data"), "--archive", str(other))
    assert code == 1
    assert "no top-level detection/ folder" in err and "counting.tar.gz" in err
    assert list((tmp_path / "data").iterdir()) == []


def test_missing_archive_names_the_flag(tmp_path: Path, capsys):
    code, _, err = _main(capsys, "--out", str(tmp_path / "data"), "--archive", str(tmp_path / "nope.tar.gz"))
    assert code == 1
    assert err.strip() == f"error: {tmp_path / 'nope.tar.gz'}: no such file; check --archive"


# -- download ---------------------------------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 40


class _Server:
    """A local HTTP server for PAYLOAD that honours Range (or not), recording the requests."""

    def __init__(self, *, ranges: bool, content_type: str = "application/octet-stream", cut_first: int = 0):
        self.range_headers: list[str | None] = []
        self.cut = cut_first  # the first answer stops after this many bytes (0: never)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                rng = self.headers.get("Range")
                outer.range_headers.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng and ranges else 0
                body = PAYLOAD[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut:
                    body, outer.cut = body[: outer.cut], 0
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/detection.tar.gz"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("ranges", [True, False], ids=["resumed", "restarted"])
def test_download_resumes_a_partial_file_or_restarts(tmp_path: Path, ranges: bool):
    dest = tmp_path / "detection.tar.gz"
    (tmp_path / "detection.tar.gz.part").write_bytes(PAYLOAD[:1000])
    said: list[str] = []
    with _Server(ranges=ranges) as server:
        fm.download(server.url, dest, echo=said.append)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "detection.tar.gz.part").exists()
    assert server.range_headers == ["bytes=1000-"]
    assert any(("resuming at" in s) if ranges else ("restarting" in s) for s in said)


def test_download_refuses_a_web_page(tmp_path: Path):
    with _Server(ranges=True, content_type="text/html; charset=utf-8") as server:
        with pytest.raises(AlloopError, match=r"sent a web page.*--archive"):
            fm.download(server.url, tmp_path / "detection.tar.gz", echo=lambda s: None)
    assert not (tmp_path / "detection.tar.gz").exists()


def test_interrupted_download_fails_then_the_rerun_resumes(tmp_path: Path):
    dest = tmp_path / "detection.tar.gz"
    with _Server(ranges=True, cut_first=4000) as server:
        with pytest.raises(AlloopError, match="rerun the same command to resume"):
            fm.download(server.url, dest, echo=lambda s: None)
        assert (tmp_path / "detection.tar.gz.part").read_bytes() == PAYLOAD[:4000]
        assert not dest.exists()

        fm.download(server.url, dest, echo=lambda s: None)
    assert dest.read_bytes() == PAYLOAD
    assert server.range_headers == [None, "bytes=4000-"]
