"""A synthetic orchard: apple images with COCO ground truth, deterministic by seed.

Stands in for MinneApple in tests, the demo and the label-efficiency benchmark. The pool is a
skewed mixture of scene types that look and detect differently (common sunny red apples, rare
tiny far-canopy apples, dark dusk shots...), because active learning only beats random sampling
when the pool has structure for it to find. Each box is the extent of an apple's *visible* pixels,
computed from a rendered mask after occlusion by later apples, leaves and the image border.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from alloop.atomic import write_text
from alloop.config import ORCHARD
from alloop.errors import ConfigError
from alloop.synthetic.layout import _Apple, _branches, _leaf_geometry, _place_apples, _Visible
from alloop.synthetic.paint import (
    _background,
    _camera,
    _canopy,
    _draw_apple,
    _draw_leaves,
    _shadow_maps,
    _visible_apples,
)
from alloop.synthetic.scenes import EMPTY_FRACTION, FAMILIES, IMAGES_PER_ROW, JPEG_QUALITY, SCENES, Scene


@dataclass(frozen=True)
class Orchard:
    """What :func:`generate_orchard` wrote: image root, COCO file and counts."""

    images_dir: Path
    annotations: Path
    n_images: int
    n_boxes: int
    scene_counts: dict[str, int]  # images per scene type


def generate_orchard(
    out_dir: Path,
    n_images: int,
    *,
    size: tuple[int, int] = ORCHARD.size,
    seed: int = ORCHARD.seed,
    subfolders: bool = True,
    progress: bool = False,
    family: str = "orchard",
) -> Orchard:
    """Write ``n_images`` orchard JPEGs under ``out_dir/images`` and their COCO ground truth.

    ``family``: ``orchard`` (one class, six scenes: the demo's) or ``cultivars`` (three classes with a
    long tail and a cluttered minority of tiny apples; see :data:`CULTIVAR_SCENES`).
    """
    if family not in FAMILIES:
        raise ConfigError(f"unknown synthetic family {family!r}; known: {', '.join(FAMILIES)}")
    fam = FAMILIES[family]
    category_id = {name: i + 1 for i, name in enumerate(fam.classes)}
    if n_images < 0:
        raise ConfigError(f"n_images must be >= 0, got {n_images}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    width, height = size
    if width < 32 or height < 32:
        raise ConfigError(f"image size must be at least 32x32, got {width}x{height}")
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)

    indices: Iterable[int] = range(n_images)
    if progress:
        from rich.progress import track

        indices = track(indices, description="orchard", total=n_images)

    coco_images: list[dict] = []
    coco_annotations: list[dict] = []
    scene_counts = {s.name: 0 for s in fam.scenes}
    for index in indices:
        scene, image, visible, cultivars = _render_image(seed, index, size, fam.scenes)
        scene_counts[scene.name] += 1
        # Rows of an orchard, one folder each, so importers exercise recursive discovery.
        rel = f"img_{index:05d}.jpg"
        if subfolders:
            rel = f"row_{index // IMAGES_PER_ROW + 1:02d}/{rel}"
        path = images_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_jpeg(image))
        image_id = index + 1
        coco_images.append(
            {"id": image_id, "file_name": rel, "width": width, "height": height, "scene": scene.name}
        )
        for v, cultivar in zip(visible, cultivars):
            x0, y0, x1, y1 = v.box
            coco_annotations.append(
                {
                    "id": len(coco_annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id[fam.class_of[cultivar]],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                    "visibility": round(v.visible_fraction, 3),
                }
            )

    coco = {
        "info": {"description": f"alloop synthetic {family}, seed {seed}", "version": "1"},
        "images": coco_images,
        "annotations": coco_annotations,
        "categories": [{"id": i, "name": name, "supercategory": "fruit"} for name, i in category_id.items()],
    }
    annotations = out_dir / "annotations.json"
    # Written last and atomically: a crash mid-run leaves no ground truth that names missing images.
    write_text(annotations, json.dumps(coco, sort_keys=True, indent=1) + "\n")
    return Orchard(images_dir, annotations, n_images, len(coco_annotations), scene_counts)


def _jpeg(image: Image.Image) -> bytes:
    """Encode an image as JPEG."""
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _render_image(
    seed: int, index: int, size: tuple[int, int], scenes: tuple[Scene, ...] = SCENES
) -> tuple[Scene, Image.Image, list[_Visible], list[str]]:
    """Render image ``index`` of the orchard ``seed``: its scene, the image, its labelled apples and
    each labelled apple's cultivar."""
    # Seeded by (seed, index) alone so image i is the same whatever n_images is.
    rng = np.random.default_rng([seed, index])
    weights = np.array([s.weight for s in scenes])
    scene = scenes[int(rng.choice(len(scenes), p=weights / weights.sum()))]
    empty = bool(rng.random() < EMPTY_FRACTION)
    image, visible, apples = _render_scene(rng, scene, size, empty=empty)
    return scene, image, visible, [apples[v.apple].cultivar for v in visible]


def _render_scene(
    rng: np.random.Generator, scene: Scene, size: tuple[int, int], *, empty: bool = False
) -> tuple[Image.Image, list[_Visible], list[_Apple]]:
    """Draw one image of ``scene``: background, shadows, apples, leaves on top, then camera effects."""
    width, height = size
    unit = min(width, height)
    scale = unit / 240.0

    branches = _branches(rng, scene, width, height, scale)
    canopy, tone = _canopy(rng, scene, width, height, scale)
    apples = [] if empty else _place_apples(rng, scene, width, height, branches, canopy)
    leaves = _leaf_geometry(rng, scene, apples, width, height)

    light = np.array(scene.light, np.float32)
    light /= np.linalg.norm(light)
    # Shadows fall away from the light, further for a lower sun.
    shadow_dir = -light[:2] / max(np.linalg.norm(light[:2]), 1e-6) * (0.35 + 0.4 * (1 - abs(light[2])))
    apple_shadow, leaf_shadow = _shadow_maps(apples, leaves, shadow_dir, width, height, scale)

    # Colour planes (3, H, W): per-colour broadcasts then run along whole rows, which is several
    # times faster in numpy than pixels of three interleaved channels.
    canvas = _background(rng, scene, branches, canopy, tone, width, height, scale)
    canvas *= 1.0 - scene.shadow * np.maximum(apple_shadow, leaf_shadow)

    owner = np.full((height, width), -1, np.int32)
    full_masks: list[tuple[int, tuple[int, int, int, int]]] = []
    for i, apple in enumerate(apples):
        full_masks.append(_draw_apple(canvas, owner, i, apple, light, scene.ambient, scene.specular))
    if apples:
        canvas *= np.where(owner >= 0, 1.0 - scene.shadow * leaf_shadow, 1.0)

    _draw_leaves(canvas, owner, leaves)
    visible = _visible_apples(owner, full_masks)
    return _camera(rng, scene, canvas, scale), visible, apples


# --- geometry ------------------------------------------------------------------------------------
