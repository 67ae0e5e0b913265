"""The synthetic orchard: valid COCO, deterministic, heterogeneous, boxes from visible pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from alloop.errors import ConfigError
from alloop.synthetic import (
    EMPTY_FRACTION,
    IMAGES_PER_ROW,
    MIN_VISIBLE_FRACTION,
    SCENES,
    Orchard,
    generate_orchard,
)
from alloop.synthetic.generate import _render_scene
from alloop.synthetic.layout import _Apple, _Leaf, _leaf_polygons
from alloop.synthetic.paint import _draw_apple, _draw_leaves, _visible_apples

SIZE = (128, 96)
SCENE = {s.name: s for s in SCENES}


@pytest.fixture(scope="module")
def orchard(tmp_path_factory: pytest.TempPathFactory) -> Orchard:
    return generate_orchard(tmp_path_factory.mktemp("orchard"), IMAGES_PER_ROW + 5, size=SIZE, seed=3)


def _coco(orchard: Orchard) -> dict:
    return json.loads(orchard.annotations.read_text())


def test_coco_loads_and_matches_files(orchard: Orchard) -> None:
    coco = COCO(str(orchard.annotations))
    assert len(coco.getImgIds()) == orchard.n_images == IMAGES_PER_ROW + 5
    assert len(coco.getAnnIds()) == orchard.n_boxes > 0
    assert coco.loadCats(coco.getCatIds()) == [{"id": 1, "name": "apple", "supercategory": "fruit"}]
    for img in coco.loadImgs(coco.getImgIds()):
        path = orchard.images_dir / img["file_name"]
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.size == (img["width"], img["height"]) == SIZE
        assert img["scene"] in SCENE
    assert sum(orchard.scene_counts.values()) == orchard.n_images


def test_boxes_lie_inside_their_image_with_positive_size(orchard: Orchard) -> None:
    data = _coco(orchard)
    sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
    ids = [a["id"] for a in data["annotations"]]
    assert ids == list(range(1, len(ids) + 1))
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        width, height = sizes[ann["image_id"]]
        assert w >= 4 and h >= 4, ann
        assert x >= 0 and y >= 0 and x + w <= width and y + h <= height, ann
        assert ann["area"] == w * h and ann["iscrowd"] == 0 and ann["category_id"] == 1
        assert MIN_VISIBLE_FRACTION <= ann["visibility"] <= 1.0


def test_rows_are_subfolders_for_recursive_discovery(orchard: Orchard, tmp_path: Path) -> None:
    names = [img["file_name"] for img in _coco(orchard)["images"]]
    assert names[0] == "row_01/img_00000.jpg" and names[-1] == f"row_02/img_{len(names) - 1:05d}.jpg"
    assert sorted(p.name for p in orchard.images_dir.iterdir()) == ["row_01", "row_02"]

    flat = generate_orchard(tmp_path, 2, size=SIZE, subfolders=False)
    assert [img["file_name"] for img in _coco(flat)["images"]] == ["img_00000.jpg", "img_00001.jpg"]
    assert sorted(p.name for p in flat.images_dir.iterdir()) == ["img_00000.jpg", "img_00001.jpg"]


def _pixels(orchard: Orchard, name: str) -> np.ndarray:
    with Image.open(orchard.images_dir / name) as im:
        return np.asarray(im)


def test_same_seed_same_bytes_and_image_i_does_not_depend_on_n(orchard: Orchard, tmp_path: Path) -> None:
    first = generate_orchard(tmp_path / "first", 8, size=SIZE, seed=3)
    again = generate_orchard(tmp_path / "again", 8, size=SIZE, seed=3)
    assert again.annotations.read_bytes() == first.annotations.read_bytes()
    name = _coco(first)["images"][5]["file_name"]
    assert np.array_equal(_pixels(again, name), _pixels(first, name))

    # The same images and boxes as the first 8 of the 30-image orchard with that seed.
    full, part = _coco(orchard), _coco(first)
    assert part["images"] == full["images"][:8]
    assert part["annotations"] == [a for a in full["annotations"] if a["image_id"] <= 8]
    assert np.array_equal(_pixels(orchard, name), _pixels(first, name))


def test_other_seed_gives_other_images_and_boxes(orchard: Orchard, tmp_path: Path) -> None:
    other = generate_orchard(tmp_path, 4, size=SIZE, seed=4)
    ours = [a for a in _coco(orchard)["annotations"] if a["image_id"] <= 4]
    assert _coco(other)["annotations"] != ours
    name = _coco(other)["images"][0]["file_name"]
    assert not np.array_equal(_pixels(other, name), _pixels(orchard, name))


def test_scene_mix_follows_skewed_weights_and_some_images_are_empty(tmp_path: Path) -> None:
    n = 200
    out = generate_orchard(tmp_path, n, size=(64, 48), seed=11, subfolders=False)
    total = sum(s.weight for s in SCENES)
    for scene in SCENES:
        share = out.scene_counts[scene.name] / n
        assert abs(share - scene.weight / total) < 0.08, (scene.name, share)
        assert out.scene_counts[scene.name] >= 1
    assert max(out.scene_counts, key=out.scene_counts.get) == "sunny_red"
    data = _coco(out)
    with_boxes = {a["image_id"] for a in data["annotations"]}
    empty = n - len(with_boxes)
    # Empty images come from EMPTY_FRACTION, plus the odd image whose apples are all hidden.
    assert 0.5 * EMPTY_FRACTION * n <= empty <= 4 * EMPTY_FRACTION * n


def test_scenes_differ_in_brightness_and_apple_size() -> None:
    def render(name: str, k: int) -> tuple[Image.Image, list]:
        return _render_scene(np.random.default_rng([99, k]), SCENE[name], (160, 120))

    def luminance(name: str) -> float:
        return float(np.mean([np.asarray(render(name, k)[0], np.float32).mean() for k in range(4)]))

    def median_box_area(name: str) -> float:
        areas = [(v.box[2] - v.box[0]) * (v.box[3] - v.box[1]) for k in range(4) for v in render(name, k)[1]]
        return float(np.median(areas))

    assert luminance("dusk") < 0.6 * luminance("sunny_red")
    assert median_box_area("far_canopy") * 10 < median_box_area("closeup")
    n_far = np.mean([len(render("far_canopy", k)[1]) for k in range(3)])
    n_close = np.mean([len(render("closeup", k)[1]) for k in range(3)])
    assert n_far > 3 * n_close


def _apple(cx: float, cy: float, r: float) -> _Apple:
    return _Apple(
        cx=cx, cy=cy, rx=r, ry=r, base=(0.6, 0.1, 0.1), blush=(0.8, 0.3, 0.1), blush_bias=0.2,
        blush_angle=0.0, streaks=8.0, streak_amp=0.1, stem=(0.0, -0.7),
    )


def _draw(apples: list[_Apple], leaves: list[_Leaf], size: tuple[int, int] = (80, 60)) -> list:
    width, height = size
    canvas = np.zeros((3, height, width), np.float32)
    owner = np.full((height, width), -1, np.int32)
    light = np.array([-0.5, -0.5, 0.7], np.float32)
    light /= np.linalg.norm(light)
    full = [_draw_apple(canvas, owner, i, a, light, 0.3, 0.5) for i, a in enumerate(apples)]
    _draw_leaves(canvas, owner, leaves)
    return _visible_apples(owner, full)


def _leaf(cx: float, cy: float, length: float, width: float, theta: float = 0.0) -> _Leaf:
    (outline,) = _leaf_polygons(*(np.array([value]) for value in (cx, cy, length, width, theta)))
    return _Leaf(outline, (0.2, 0.5, 0.1), 0.8)


def test_unoccluded_apple_box_is_its_full_mask() -> None:
    (v,) = _draw([_apple(40, 30, 10)], [])
    assert v.box == v.full_box == (30, 20, 50, 40)
    assert v.visible_fraction == 1.0


def test_leaf_over_an_apple_shrinks_its_box_and_visibility() -> None:
    # A vertical leaf over the apple's right side.
    (v,) = _draw([_apple(40, 30, 10)], [_leaf(50, 30, 40, 8, theta=np.pi / 2)])
    assert v.full_box == (30, 20, 50, 40)
    assert v.box[0] == 30 and v.box[2] < 50
    assert v.full_box[1] <= v.box[1] and v.box[3] <= v.full_box[3]
    assert MIN_VISIBLE_FRACTION <= v.visible_fraction < 0.9


def test_mostly_hidden_or_tiny_apples_get_no_box() -> None:
    assert _draw([_apple(40, 30, 10)], [_leaf(40, 30, 60, 26)]) == []
    assert _draw([_apple(40, 30, 1.5)], []) == []


def test_border_and_nearer_apples_cut_the_box() -> None:
    left, behind, front = _draw([_apple(0, 30, 10), _apple(40, 30, 9), _apple(52, 30, 10)], [])
    assert left.full_box[0] < 0 and left.box[0] == 0 and left.box[2] == left.full_box[2]
    assert 0.4 < left.visible_fraction < 0.6
    # Apples are drawn in order, so the later one hides the right side of the one behind it.
    assert behind.box[2] < behind.full_box[2] and behind.visible_fraction < 1.0
    assert front.box == front.full_box


def test_rendered_boxes_lie_within_full_apple_and_some_are_occluded() -> None:
    shrunk = 0
    for k in range(6):
        _, visible, _ = _render_scene(np.random.default_rng([5, k]), SCENE["overcast_green"], SIZE)
        for v in visible:
            x0, y0, x1, y1 = v.full_box
            clipped = (max(x0, 0), max(y0, 0), min(x1, SIZE[0]), min(y1, SIZE[1]))
            assert clipped[0] <= v.box[0] < v.box[2] <= clipped[2]
            assert clipped[1] <= v.box[1] < v.box[3] <= clipped[3]
            shrunk += v.box != clipped
    assert shrunk >= 3


def test_bad_arguments_raise_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="n_images must be >= 0, got -1"):
        generate_orchard(tmp_path, -1)
    with pytest.raises(ConfigError, match="at least 32x32, got 16x16"):
        generate_orchard(tmp_path, 1, size=(16, 16))
    assert not (tmp_path / "annotations.json").exists()


def test_cultivars_family_has_three_long_tailed_classes_and_a_cluttered_minority(tmp_path):
    from alloop.synthetic import CULTIVAR_SCENES

    out = generate_orchard(tmp_path, 60, size=(96, 72), seed=2, family="cultivars", subfolders=False)
    gt = json.loads(out.annotations.read_text())
    assert [c["name"] for c in gt["categories"]] == ["red", "green", "yellow"]
    per_class = np.bincount([a["category_id"] for a in gt["annotations"]], minlength=4)[1:]
    assert per_class.min() > 0 and per_class[2] < per_class[0]  # yellow is the tail
    assert set(out.scene_counts) == {s.name for s in CULTIVAR_SCENES}
    scene_of = {img["id"]: img["scene"] for img in gt["images"]}
    side = {s: np.median([min(a["bbox"][2:]) for a in gt["annotations"] if scene_of[a["image_id"]] == s])
            for s in ("cluttered_canopy", "sunny_mixed")}
    assert side["cluttered_canopy"] < side["sunny_mixed"]  # the minority's apples are small


def test_the_orchard_family_is_unchanged_by_the_family_option(tmp_path):
    a = generate_orchard(tmp_path / "a", 3, size=SIZE, seed=3)
    b = generate_orchard(tmp_path / "b", 3, size=SIZE, seed=3, family="orchard")
    assert a.annotations.read_text() == b.annotations.read_text()


def test_unknown_family_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown synthetic family 'forest'; known: orchard, cultivars"):
        generate_orchard(tmp_path, 1, family="forest")
