"""Image discovery, hashing and validation: bad files are reported, never a crash."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

from alloop import images
from alloop.config import CONFIG_FILE
from alloop.errors import ConfigError, ImageError
from alloop.pool import register
from alloop.project import Project, ProjectConfig, load_config


def _img(path, size=(32, 24), color=(200, 30, 30), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def test_discover_is_recursive_sorted_and_filters_extensions(tmp_path):
    _img(tmp_path / "b.jpg")
    _img(tmp_path / "row_1" / "a.PNG", fmt="PNG")
    _img(tmp_path / "row_1" / "deep" / "c.webp", fmt="WEBP")
    _img(tmp_path / ".hidden" / "x.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    found = [p.relative_to(tmp_path).as_posix() for p in images.discover(tmp_path)]
    assert found == ["b.jpg", "row_1/a.PNG", "row_1/deep/c.webp"]


def test_missing_folder_names_the_flag(tmp_path):
    with pytest.raises(ImageError, match="not found.*--images"):
        images.discover(tmp_path / "nope")


def test_empty_folder_names_the_flag(tmp_path):
    with pytest.raises(ImageError, match="no images found.*--images"):
        images.discover(tmp_path)


def test_corrupt_and_truncated_images_become_bad_images(tmp_path):
    good = _img(tmp_path / "good.jpg")
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    truncated = _img(tmp_path / "trunc.png", size=(64, 64), fmt="PNG")
    truncated.write_bytes(truncated.read_bytes()[:60])
    results = {r.path: r for r in images.inspect_all(images.discover(tmp_path), tmp_path)}
    assert isinstance(results["good.jpg"], images.ImageInfo)
    assert results["good.jpg"].width == 32 and results["good.jpg"].height == 24
    assert results["good.jpg"].sha256 == images.sha256_of(good)
    assert isinstance(results["garbage.jpg"], images.BadImage)
    assert isinstance(results["trunc.png"], images.BadImage)
    assert "cannot decode" in results["trunc.png"].reason


def test_exif_rotated_image_reports_the_displayed_size(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° CW on display
    img.save(tmp_path / "rot.jpg", exif=exif)
    info = images.inspect(tmp_path / "rot.jpg", tmp_path)
    assert (info.width, info.height) == (20, 40)
    assert images.load_rgb(tmp_path / "rot.jpg").size == (20, 40)


@pytest.mark.parametrize("rel", ["../x.jpg", "a/../../x.jpg", "/etc/passwd"])
def test_resolve_in_root_refuses_escapes(tmp_path, rel):
    with pytest.raises(ImageError, match="escapes the image root"):
        images.resolve_in_root(tmp_path / "root", rel)


def test_symlink_out_of_root_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    _img(tmp_path / "outside.jpg")
    (root / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    with pytest.raises(ImageError, match="escapes the image root"):
        images.resolve_in_root(root, "link.jpg")


def test_opening_against_a_label_size(tmp_path):
    """The trainers open images here too: the label's size picks the frame its boxes were drawn in."""
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert images.load_rgb(tmp_path / "rot.jpg", expect=(20, 40)).size == (20, 40)  # as a viewer shows it
    assert images.load_rgb(tmp_path / "rot.jpg", expect=(40, 20)).size == (40, 20)  # a tool that ignored EXIF
    with pytest.raises(ImageError, match=r"rot.jpg: the label says 30x30 but the image is 20x40; re-import"):
        images.load_rgb(tmp_path / "rot.jpg", expect=(30, 30))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ImageError, match=r"bad.jpg: cannot decode \(.*\); run `alloop doctor`"):
        images.load_rgb(tmp_path / "bad.jpg", expect=(20, 40))


# --- issue 19: decompression bombs, links, unreadable folders, formats alloop does not take ---------


def _bomb_png(path, side=27000):
    """A real PNG of side x side black pixels (grayscale): ~0.7 MB on disk, side² bytes decoded."""
    compress = zlib.compressobj(9)
    block = b"\0" * (1 + side) * 1000  # filter byte + one row, 1000 rows at a time
    data = b"".join(compress.compress(block[: (1 + side) * min(1000, side - r)]) for r in range(0, side, 1000))
    data += compress.flush()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return _bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")


def test_a_decompression_bomb_is_refused_from_its_header_without_decoding(bomb):
    # Issue 19: a 27000x27000 PNG (775 KB) registered as a good image at a peak of 5.7 GB.
    assert bomb.stat().st_size < 1_000_000
    # VmHWM: this process's peak memory (ru_maxrss would include the pytest process it was forked from).
    code = (
        "import re, sys; from pathlib import Path; from alloop import images; "
        "r = images.inspect(Path(sys.argv[1]), Path(sys.argv[1]).parent, max_pixels=100_000_000); "
        "print(type(r).__name__); print(r.reason); "
        "print(re.search(r'VmHWM:\\s+(\\d+) kB', Path('/proc/self/status').read_text()).group(1))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, check=True)
    kind, reason, peak_kib = out.stdout.strip().splitlines()
    assert kind == "BadImage"
    assert reason == ("27000x27000 is 729 megapixels, over the project's limit of 100 (max_image_pixels in "
                      "alloop.toml); downscale or tile it, or raise the limit")
    assert int(peak_kib) < 400 * 1024, f"peak {int(peak_kib) // 1024} MB: the image was decoded"


def test_the_pixel_limit_is_the_projects_and_the_bomb_is_listed_with_the_unreadable(tmp_path, bomb):
    root = tmp_path / "imgs"
    _img(root / "small.png", size=(40, 30), fmt="PNG")
    _img(root / "wide.png", size=(80, 30), fmt="PNG")
    shutil.copy(bomb, root / "bomb.png")
    with Project.create(tmp_path / "p", ProjectConfig(image_root=str(root), max_image_pixels=2000)) as p:
        reg = register(p, progress=False)
        assert reg.added == 1 and [r.path for r in p.store.images()] == ["small.png"]
        bad = dict(p.store.bad_images())
    assert set(bad) == {"bomb.png", "wide.png"}
    assert bad["wide.png"].startswith("80x30 is 0 megapixels, over the project's limit of 0.002 (max_image_pixels")
    assert bad["bomb.png"].startswith("27000x27000 is 729 megapixels")


@pytest.mark.parametrize("value", ["0", "true", "1.5", "900000000", '"100M"'])
def test_max_image_pixels_is_checked_at_load(tmp_path, value):
    (tmp_path / CONFIG_FILE).write_text(f'[project]\nimage_root = "imgs"\nmax_image_pixels = {value}\n')
    with pytest.raises(ConfigError, match=rf"\[project\] max_image_pixels = {re.escape(value)}: must be a "
                                          r"whole number of pixels from 1 to 800000000"):
        load_config(tmp_path / CONFIG_FILE)


def test_links_out_of_the_root_and_broken_ones_are_listed_and_skipped(tmp_path):
    # Issue 19: one symlink pointing outside the image root stopped init/add with nothing registered.
    root = tmp_path / "root"
    _img(root / "a.jpg")
    _img(root / "sub" / "b.jpg")
    _img(tmp_path / "outside" / "o.jpg")
    (root / "out.jpg").symlink_to(tmp_path / "outside" / "o.jpg")
    (root / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (root / "inside.jpg").symlink_to(root / "sub" / "b.jpg")
    (root / "linked").symlink_to(tmp_path / "outside")
    found = images.scan(root)
    assert [p.relative_to(root).as_posix() for p in found.files] == ["a.jpg", "inside.jpg", "sub/b.jpg"]
    skipped = {b.path: b.reason for b in found.skipped}
    assert skipped == {
        "out.jpg": f"a link to {tmp_path / 'outside' / 'o.jpg'}, outside the image root {root}; "
                   "move or copy the file under the image root",
        "gone.jpg": f"broken link (to {tmp_path / 'nowhere.jpg'}); restore its target or remove the link",
        "linked/": "a link to a folder, not followed; move or copy its images under the image root",
    }
    # inspect itself never raises for a link out of the root (it used to, stopping the whole scan)
    assert isinstance(images.inspect(root / "out.jpg", root), images.BadImage)


def test_formats_pillow_reads_but_alloop_does_not_take_are_listed(tmp_path):
    _img(tmp_path / "a.jpg")
    _img(tmp_path / "anim.gif", fmt="GIF")
    _img(tmp_path / "photo.jfif", fmt="JPEG")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "labels.json").write_text("{}")
    found = images.scan(tmp_path)
    assert [p.name for p in found.files] == ["a.jpg"]
    assert {b.path: b.reason for b in found.skipped} == {
        "anim.gif": "GIF (.gif) is not a format alloop takes (.jpg, .jpeg, .png, .tif, .tiff, .bmp, .webp); "
                    "convert it, e.g. to PNG",
        "photo.jfif": "JPEG under the extension .jfif, which alloop does not take; rename it to .jpg",
    }


def test_a_folder_of_only_gifs_names_them_in_the_no_images_error(tmp_path):
    _img(tmp_path / "anim.gif", fmt="GIF")
    with pytest.raises(ImageError, match=r"no images found .*; skipped 1 \(first: anim.gif: GIF \(.gif\) is not"):
        images.scan(tmp_path)


@contextlib.contextmanager
def _as_nobody():
    """Run as an unprivileged user: root reads every folder whatever its mode (CI runs as root)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_an_unreadable_subfolder_is_reported_and_an_unreadable_file_says_so():
    # Issue 19: an unreadable subfolder was skipped silently.
    top = Path(tempfile.mkdtemp())  # under /tmp, which the unprivileged user can traverse (tmp_path: not)
    try:
        top.chmod(0o755)
        _img(top / "a.jpg")
        _img(top / "secret.jpg").chmod(0)
        _img(top / "locked" / "b.jpg")
        (top / "locked").chmod(0)
        (top / "a.jpg").chmod(0o644)
        with _as_nobody():
            found = images.scan(top)
            inspected = [images.inspect(p, top) for p in found.files]
        assert [p.name for p in found.files] == ["a.jpg", "secret.jpg"]
        assert [(b.path, b.reason) for b in found.skipped] == [
            ("locked/", "folder not readable (Permission denied); fix its permissions, then `alloop add`")]
        assert isinstance(inspected[0], images.ImageInfo)
        assert inspected[1] == images.BadImage(
            "secret.jpg", "file not readable (Permission denied); fix its permissions, then `alloop add`")
    finally:
        (top / "locked").chmod(0o755)
        shutil.rmtree(top)


def test_a_jpeg_decoded_at_reduced_scale_is_refused_exactly_when_a_full_decode_fails(tmp_path):
    # Registration decodes JPEGs in draft mode (1/8 scale) for speed; the size comes from the header.
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    scan = data.index(b"\xff\xda")  # start of scan: damage the entropy-coded data after it
    damaged = {"half.jpg": data[: len(data) // 2], "end.jpg": data[:-20],
               "garbled.jpg": data[: scan + 400] + b"\xff\xd9" * 50 + data[scan + 500:]}
    for name, content in damaged.items():
        (tmp_path / name).write_bytes(content)
    good = images.inspect(tmp_path / "full.jpg", tmp_path)
    assert (good.width, good.height) == (640, 480) and good.sha256 == images.sha256_of(tmp_path / "full.jpg")
    for name in damaged:
        try:
            with Image.open(tmp_path / name) as img:
                img.load()
            full_decode_fails = False
        except OSError:
            full_decode_fails = True
        result = images.inspect(tmp_path / name, tmp_path)
        assert isinstance(result, images.BadImage) == full_decode_fails, name
    assert isinstance(images.inspect(tmp_path / "half.jpg", tmp_path), images.BadImage)
    assert "cannot decode" in images.inspect(tmp_path / "end.jpg", tmp_path).reason


def test_inspect_all_keeps_the_order_across_windows(tmp_path):
    paths = [_img(tmp_path / f"{i:02d}.png", size=(8 + i, 6), fmt="PNG") for i in range(7)]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    paths.insert(3, tmp_path / "bad.png")
    results = list(images.inspect_all(paths, tmp_path, workers=2, window=3))
    assert [r.path for r in results] == [p.name for p in paths]
    assert isinstance(results[3], images.BadImage)
    assert [r.width for r in results if isinstance(r, images.ImageInfo)] == [8 + i for i in range(7)]
