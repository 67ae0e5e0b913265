"""Image discovery, hashing and validation: bad files are reported, never a crash."""

from __future__ import annotations

import pytest
from PIL import Image

from alloop import images
from alloop.errors import ImageError


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
