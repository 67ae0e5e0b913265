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
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from alloop.atomic import write_text
from alloop.config import ORCHARD
from alloop.errors import ConfigError

RGB = tuple[float, float, float]

# A fraction of images of every scene holds no apple at all: detectors must learn to stay silent.
EMPTY_FRACTION = 0.05
# MinneApple-like rules for what gets a box: enough of the apple shows, and it is not a speck.
MIN_VISIBLE_FRACTION = 0.3
MIN_BOX_SIDE = 4
IMAGES_PER_ROW = 25
JPEG_QUALITY = 90

# Apple cultivars as (base colour, secondary colour, how much secondary on average).
_PALETTES: dict[str, tuple[RGB, RGB, float]] = {
    "red": ((0.50, 0.04, 0.06), (0.85, 0.32, 0.10), 0.20),
    "green": ((0.50, 0.72, 0.20), (0.78, 0.82, 0.32), 0.25),
    "yellow": ((0.92, 0.80, 0.30), (0.92, 0.50, 0.14), 0.20),
    "blend": ((0.92, 0.66, 0.22), (0.70, 0.08, 0.07), 0.60),
}


@dataclass(frozen=True)
class Scene:
    """One scene type of the orchard: how often it occurs and every knob of its look."""

    name: str
    weight: float
    apples: tuple[int, int]  # apples placed per image (before visibility filtering)
    radius: tuple[float, float]  # apple radius as a fraction of the image's shorter side
    palettes: tuple[tuple[str, float], ...]  # cultivar mix
    sky: float  # 0 = closed canopy, 1 = open sky behind everything
    sky_top: RGB
    sky_low: RGB
    foliage_dark: RGB
    foliage_light: RGB
    fg_leaves: tuple[int, int]  # leaves in front of the apples
    leaf_length: tuple[float, float]  # fraction of the shorter side
    bg_leaves: int  # leaves drawn into the (blurred) background
    branches: tuple[int, int]
    light: tuple[float, float, float]  # direction towards the light, image coords (x right, y down, z out)
    ambient: float
    specular: float
    shadow: float  # darkening under apples and leaves
    brightness: tuple[float, float]
    contrast: float
    cast: RGB
    bg_blur: float  # depth of field, in pixels at a 240-pixel shorter side
    blur: float
    noise: float
    cluster_spread: float = 2.5  # apples of a cluster lie this many radii from its centre


SCENES: tuple[Scene, ...] = (
    Scene(
        name="sunny_red", weight=0.45, apples=(6, 16), radius=(0.045, 0.075),
        palettes=(("red", 0.6), ("blend", 0.3), ("yellow", 0.1)),
        sky=0.3, sky_top=(0.30, 0.55, 0.92), sky_low=(0.68, 0.82, 0.96),
        foliage_dark=(0.04, 0.15, 0.03), foliage_light=(0.38, 0.58, 0.12),
        fg_leaves=(8, 20), leaf_length=(0.08, 0.15), bg_leaves=260, branches=(1, 3),
        light=(-0.5, -0.6, 0.62), ambient=0.30, specular=0.55, shadow=0.45,
        brightness=(1.0, 1.12), contrast=1.15, cast=(1.04, 1.0, 0.92),
        bg_blur=1.0, blur=0.4, noise=0.010,
    ),
    Scene(
        name="overcast_green", weight=0.20, apples=(5, 14), radius=(0.04, 0.07),
        palettes=(("green", 0.8), ("yellow", 0.2)),
        sky=0.12, sky_top=(0.80, 0.82, 0.84), sky_low=(0.88, 0.89, 0.90),
        foliage_dark=(0.10, 0.22, 0.06), foliage_light=(0.38, 0.52, 0.18),
        fg_leaves=(14, 28), leaf_length=(0.08, 0.15), bg_leaves=320, branches=(0, 2),
        light=(0.0, -0.3, 0.95), ambient=0.60, specular=0.12, shadow=0.15,
        brightness=(0.82, 0.98), contrast=0.85, cast=(0.97, 1.0, 1.0),
        bg_blur=0.8, blur=0.5, noise=0.015,
    ),
    Scene(
        name="dusk", weight=0.12, apples=(4, 12), radius=(0.04, 0.07),
        palettes=(("red", 0.7), ("blend", 0.3)),
        sky=0.25, sky_top=(0.32, 0.22, 0.45), sky_low=(0.98, 0.55, 0.25),
        foliage_dark=(0.03, 0.07, 0.03), foliage_light=(0.22, 0.30, 0.10),
        fg_leaves=(8, 20), leaf_length=(0.08, 0.15), bg_leaves=260, branches=(1, 3),
        light=(0.85, -0.2, 0.45), ambient=0.22, specular=0.30, shadow=0.30,
        brightness=(0.5, 0.72), contrast=0.9, cast=(1.18, 0.85, 0.62),
        bg_blur=1.3, blur=0.8, noise=0.035,
    ),
    Scene(
        name="closeup", weight=0.10, apples=(1, 4), radius=(0.16, 0.30),
        palettes=(("red", 0.4), ("blend", 0.3), ("yellow", 0.15), ("green", 0.15)),
        sky=0.2, sky_top=(0.35, 0.58, 0.92), sky_low=(0.70, 0.83, 0.95),
        foliage_dark=(0.05, 0.16, 0.04), foliage_light=(0.36, 0.56, 0.14),
        fg_leaves=(2, 6), leaf_length=(0.25, 0.45), bg_leaves=90, branches=(0, 2),
        light=(-0.45, -0.55, 0.7), ambient=0.30, specular=0.50, shadow=0.40,
        brightness=(0.95, 1.10), contrast=1.1, cast=(1.02, 1.0, 0.96),
        bg_blur=6.0, blur=0.3, noise=0.010, cluster_spread=1.6,
    ),
    Scene(
        name="far_canopy", weight=0.08, apples=(25, 60), radius=(0.016, 0.028),
        palettes=(("red", 0.7), ("blend", 0.3)),
        sky=0.35, sky_top=(0.60, 0.72, 0.88), sky_low=(0.82, 0.87, 0.92),
        foliage_dark=(0.06, 0.16, 0.05), foliage_light=(0.34, 0.50, 0.16),
        fg_leaves=(25, 45), leaf_length=(0.03, 0.06), bg_leaves=500, branches=(0, 2),
        light=(-0.4, -0.6, 0.7), ambient=0.40, specular=0.30, shadow=0.25,
        brightness=(0.95, 1.1), contrast=0.8, cast=(0.95, 1.0, 1.08),
        bg_blur=0.6, blur=0.6, noise=0.015, cluster_spread=6.0,
    ),
    Scene(
        name="bare_branches", weight=0.05, apples=(3, 10), radius=(0.045, 0.08),
        palettes=(("yellow", 0.4), ("red", 0.35), ("blend", 0.25)),
        sky=1.0, sky_top=(0.50, 0.66, 0.86), sky_low=(0.84, 0.88, 0.92),
        foliage_dark=(0.20, 0.18, 0.08), foliage_light=(0.55, 0.48, 0.18),
        fg_leaves=(0, 4), leaf_length=(0.06, 0.12), bg_leaves=12, branches=(4, 7),
        light=(0.5, -0.7, 0.2), ambient=0.35, specular=0.30, shadow=0.05,
        brightness=(0.9, 1.1), contrast=1.2, cast=(1.0, 1.0, 1.0),
        bg_blur=0.6, blur=0.4, noise=0.015, cluster_spread=1.8,
    ),
)


# A second family for the benchmarks, built to be hard for active learning in the ways real data is:
# three classes (the cultivars) with a long tail (yellow is rare), and a cluttered minority scene
# (21% of the pool) of tiny apples behind dense leaves where an early detector finds little or
# nothing: the blind spot that uncertainty computed from kept boxes alone cannot see (issue 20).
CULTIVAR_SCENES: tuple[Scene, ...] = (
    Scene(
        name="sunny_mixed", weight=0.50, apples=(5, 12), radius=(0.05, 0.08),
        palettes=(("red", 0.55), ("green", 0.33), ("yellow", 0.12)),
        sky=0.3, sky_top=(0.30, 0.55, 0.92), sky_low=(0.68, 0.82, 0.96),
        foliage_dark=(0.04, 0.15, 0.03), foliage_light=(0.38, 0.58, 0.12),
        fg_leaves=(6, 16), leaf_length=(0.08, 0.15), bg_leaves=240, branches=(1, 3),
        light=(-0.5, -0.6, 0.62), ambient=0.30, specular=0.55, shadow=0.45,
        brightness=(1.0, 1.12), contrast=1.15, cast=(1.04, 1.0, 0.92),
        bg_blur=1.0, blur=0.4, noise=0.010,
    ),
    Scene(
        name="overcast_mixed", weight=0.29, apples=(4, 11), radius=(0.045, 0.075),
        palettes=(("green", 0.5), ("red", 0.4), ("yellow", 0.1)),
        sky=0.12, sky_top=(0.80, 0.82, 0.84), sky_low=(0.88, 0.89, 0.90),
        foliage_dark=(0.10, 0.22, 0.06), foliage_light=(0.38, 0.52, 0.18),
        fg_leaves=(10, 22), leaf_length=(0.08, 0.15), bg_leaves=300, branches=(0, 2),
        light=(0.0, -0.3, 0.95), ambient=0.60, specular=0.12, shadow=0.15,
        brightness=(0.82, 0.98), contrast=0.85, cast=(0.97, 1.0, 1.0),
        bg_blur=0.8, blur=0.5, noise=0.015,
    ),
    Scene(
        # Backlit dense canopy at dusk: small, dim apples behind many leaves, a look the common
        # scenes never show, so a first model trained without it keeps (almost) no box on it.
        name="cluttered_canopy", weight=0.21, apples=(18, 40), radius=(0.024, 0.034),
        palettes=(("red", 0.45), ("green", 0.35), ("yellow", 0.20)),
        sky=0.08, sky_top=(0.30, 0.22, 0.42), sky_low=(0.95, 0.55, 0.28),
        foliage_dark=(0.02, 0.05, 0.03), foliage_light=(0.16, 0.24, 0.10),
        fg_leaves=(35, 60), leaf_length=(0.04, 0.08), bg_leaves=700, branches=(3, 6),
        light=(0.85, -0.2, 0.45), ambient=0.20, specular=0.25, shadow=0.35,
        brightness=(0.45, 0.62), contrast=0.8, cast=(1.2, 0.85, 0.65),
        bg_blur=0.3, blur=0.8, noise=0.035, cluster_spread=5.0,
    ),
)


@dataclass(frozen=True)
class Family:
    """A kind of synthetic pool: its scene mixture and how an apple's cultivar maps to a class."""

    name: str
    scenes: tuple[Scene, ...]
    classes: tuple[str, ...]
    class_of: dict[str, str]  # cultivar (palette name) -> class name


FAMILIES: dict[str, Family] = {
    "orchard": Family("orchard", SCENES, ("apple",), {p: "apple" for p in _PALETTES}),
    "cultivars": Family("cultivars", CULTIVAR_SCENES, ("red", "green", "yellow"),
                        {"red": "red", "blend": "red", "green": "green", "yellow": "yellow"}),
}


@dataclass(frozen=True)
class Orchard:
    """What :func:`generate_orchard` wrote: image root, COCO file and counts."""

    images_dir: Path
    annotations: Path
    n_images: int
    n_boxes: int
    scene_counts: dict[str, int]  # images per scene type


@dataclass(frozen=True)
class _Apple:
    """Geometry and look of one apple, before rendering."""

    cx: float
    cy: float
    rx: float
    ry: float
    base: RGB
    blush: RGB
    blush_bias: float
    blush_angle: float
    streaks: float  # streak frequency across the apple
    streak_amp: float
    stem: tuple[float, float]  # stem dimple position in unit apple coordinates
    cultivar: str = "red"  # the palette it was drawn from (the class, in the "cultivars" family)


@dataclass(frozen=True)
class _Leaf:
    """One foreground leaf: outline (upper edge tip to tip, then lower edge back), colour, shading."""

    outline: np.ndarray  # (2K, 2) float, image pixels
    colour: RGB
    side: float  # brightness of the shaded half relative to the lit half


@dataclass(frozen=True)
class _Visible:
    """One rendered apple: its visible box (the label), its full unclipped box, and how much shows."""

    box: tuple[int, int, int, int]  # xyxy of visible pixels, x1/y1 exclusive
    full_box: tuple[int, int, int, int]  # xyxy of the whole apple mask, may extend past the image
    visible_fraction: float
    apple: int = -1  # index into the image's apples (drawing order)


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


def _branches(
    rng: np.random.Generator, scene: Scene, width: int, height: int, scale: float
) -> list[np.ndarray]:
    """Random-walk polylines entering from the image border, as (K, 3) arrays of x, y, thickness."""
    out = []
    for _ in range(int(rng.integers(scene.branches[0], scene.branches[1] + 1))):
        side = rng.integers(4)
        if side == 0:
            x, y, ang = 0.0, rng.uniform(0, height), rng.uniform(-0.6, 0.6)
        elif side == 1:
            x, y, ang = float(width), rng.uniform(0, height), math.pi + rng.uniform(-0.6, 0.6)
        elif side == 2:
            x, y, ang = rng.uniform(0, width), 0.0, math.pi / 2 + rng.uniform(-0.7, 0.7)
        else:
            x, y, ang = rng.uniform(0, width), float(height), -math.pi / 2 + rng.uniform(-0.7, 0.7)
        thick = rng.uniform(4, 11) * scale * (1.4 if scene.sky >= 1 else 1.0)
        pts = [(x, y, thick)]
        for _ in range(int(rng.integers(5, 9))):
            ang += rng.normal(0, 0.35)
            step = rng.uniform(0.08, 0.16) * (width + height) / 2
            x, y = x + step * math.cos(ang), y + step * math.sin(ang)
            thick = max(1.5 * scale, thick * rng.uniform(0.7, 0.92))
            pts.append((x, y, thick))
        out.append(np.array(pts, np.float32))
    return out


def _place_apples(
    rng: np.random.Generator,
    scene: Scene,
    width: int,
    height: int,
    branches: list[np.ndarray],
    canopy: np.ndarray,
) -> list[_Apple]:
    """Apples in clusters (often hanging off a branch), some cut by the border, small ones first."""
    unit = min(width, height)
    n = int(rng.integers(scene.apples[0], scene.apples[1] + 1))
    base_r = rng.uniform(*scene.radius) * unit
    names = [p[0] for p in scene.palettes]
    probs = np.array([p[1] for p in scene.palettes])
    probs /= probs.sum()
    n_clusters = max(1, int(round(n / rng.uniform(2.5, 5))))
    # Points along the branches that lie in the frame: clusters hang just below them.
    steps = np.linspace(0.0, 1.0, 8, endpoint=False, dtype=np.float32)[None, :, None]
    on_branch = [(b[:-1, None, :2] + steps * np.diff(b[:, None, :2], axis=0)).reshape(-1, 2)
                 for b in branches]
    hooks = np.concatenate(on_branch) if on_branch else np.zeros((0, 2), np.float32)
    hooks = hooks[(hooks[:, 0] >= 0) & (hooks[:, 0] < width) & (hooks[:, 1] >= 0) & (hooks[:, 1] < height)]
    centres = []
    for _ in range(n_clusters):
        if len(hooks) and rng.random() < (0.9 if scene.sky >= 1 else 0.4):
            x, y = hooks[int(rng.integers(len(hooks)))].tolist()
            centres.append((x, y + base_r))
        else:
            centres.append((rng.uniform(-0.05, 1.05) * width, rng.uniform(-0.05, 1.05) * height))

    # Rejection sampling over candidates drawn in one go: apples may overlap, not sit inside
    # each other, and may be cut by the border by up to about half their width.
    m = n * 6
    r = np.maximum(3.0, base_r * np.exp(rng.normal(0, 0.15, m)))
    centre = np.array(centres)[rng.integers(0, len(centres), m)]
    cx = centre[:, 0] + rng.normal(0, 1, m) * scene.cluster_spread * r
    cy = centre[:, 1] + rng.normal(0, 1, m) * scene.cluster_spread * r * 0.8
    palette = rng.choice(len(names), m, p=probs)
    jitter = rng.normal(0, 0.04, (m, 6))
    aspect = rng.uniform(0.9, 1.08, m)
    bias = rng.normal(0, 0.12, m)
    angle = rng.uniform(0, 2 * math.pi, m)
    streaks = rng.uniform(5, 12, m)
    streak_amp = rng.uniform(0.03, 0.15, m)
    stem = np.stack([rng.normal(0, 0.15, m), rng.uniform(-0.95, -0.45, m)], 1)
    inside = (cx > -0.6 * r) & (cx < width + 0.6 * r) & (cy > -0.6 * r) & (cy < height + 0.6 * r)
    if scene.sky < 1:
        # Apples grow in the tree, not in the sky: most candidates in a canopy gap are dropped.
        ch, cw = canopy.shape
        gx = np.clip(cx * cw / width, 0, cw - 1).astype(int)
        gy = np.clip(cy * ch / height, 0, ch - 1).astype(int)
        inside &= rng.random(m) < canopy[gy, gx] + 0.1
    chosen: list[int] = []
    for j in np.flatnonzero(inside).tolist():
        if len(chosen) == n:
            break
        if chosen:
            k = np.array(chosen)
            if np.any((cx[k] - cx[j]) ** 2 + (cy[k] - cy[j]) ** 2 < (0.75 * (r[k] + r[j])) ** 2):
                continue
        chosen.append(j)
    apples = []
    for j in chosen:
        base, blush, mean_blush = _PALETTES[names[palette[j]]]
        apples.append(
            _Apple(
                cx=float(cx[j]), cy=float(cy[j]), rx=float(r[j] * aspect[j]), ry=float(r[j]),
                base=tuple(np.clip(np.array(base) + jitter[j, :3], 0, 1).tolist()),
                blush=tuple(np.clip(np.array(blush) + jitter[j, 3:], 0, 1).tolist()),
                blush_bias=float(np.clip(mean_blush + bias[j], 0, 1)),
                blush_angle=float(angle[j]),
                streaks=float(streaks[j]),
                streak_amp=float(streak_amp[j]),
                stem=(float(stem[j, 0]), float(stem[j, 1])),
                cultivar=names[palette[j]],
            )
        )
    # Smaller apples are further away, so they are drawn first and larger ones may hide them.
    apples.sort(key=lambda a: a.ry)
    return apples


_LEAF_S = np.linspace(0.0, 1.0, 9, dtype=np.float32)
# Half-width profile of an ovate apple leaf: widest before the middle, pointed tip.
_LEAF_W = (np.sin(np.pi * _LEAF_S**0.8) * (1 - 0.25 * _LEAF_S)).astype(np.float32)


def _leaf_geometry(
    rng: np.random.Generator, scene: Scene, apples: list[_Apple], width: int, height: int
) -> list[_Leaf]:
    """Foreground leaves, many of them right next to an apple."""
    unit = min(width, height)
    n = int(rng.integers(scene.fg_leaves[0], scene.fg_leaves[1] + 1))
    length = rng.uniform(*scene.leaf_length, n) * unit
    xs, ys = rng.uniform(0, width, n), rng.uniform(0, height, n)
    near = rng.random(n) < 0.6
    ang = rng.uniform(0, 2 * math.pi, n)
    dist = rng.uniform(0.6, 1.6, n)
    pick = rng.integers(0, max(1, len(apples)), n)
    if apples:
        # Leaves that sit next to fruit are what make apples partly hidden.
        ax = np.array([apples[k].cx for k in pick])
        ay = np.array([apples[k].cy for k in pick])
        ar = np.array([apples[k].ry for k in pick]) * dist + 0.3 * length
        xs = np.where(near, ax + ar * np.cos(ang), xs)
        ys = np.where(near, ay + ar * np.sin(ang), ys)
    half_width = length * rng.uniform(0.22, 0.32, n)
    outlines = _leaf_polygons(xs, ys, length, half_width, rng.uniform(0, 2 * math.pi, n))
    tone = rng.uniform(0.0, 1.0, n)[:, None]
    dark, light = np.array(scene.foliage_dark), np.array(scene.foliage_light)
    colours = (dark + (light - dark) * tone) * rng.uniform(1.0, 1.5, n)[:, None]
    side = rng.uniform(0.65, 0.9, n)
    return [_Leaf(outlines[k], tuple(colours[k].tolist()), float(side[k])) for k in range(n)]


# --- rendering -----------------------------------------------------------------------------------


def _noise(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """Smooth value noise in [0, 1]: a small random grid upsampled bicubically."""
    gw, gh = cells + 1, max(2, int(round(cells * height / width)) + 1)
    grid = Image.fromarray((rng.random((gh, gw)) * 255).astype(np.uint8))
    return np.asarray(grid.resize((width, height), Image.BICUBIC), np.float32) / 255.0


def _canopy(
    rng: np.random.Generator, scene: Scene, width: int, height: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Where the tree is (1) or sky shows (0), and the foliage tone, at the background's resolution."""
    res = _background_res(scene, scale)
    bw, bh = math.ceil(width * res), math.ceil(height * res)
    y = np.linspace(0.0, 1.0, bh, dtype=np.float32)[:, None]
    coarse = _noise(rng, bw, bh, 3)
    mid = _noise(rng, bw, bh, 9)
    fine = _noise(rng, bw, bh, 30)
    # Sky shows through gaps in the canopy, more often near the top of the frame.
    gaps = 0.6 * coarse + 0.4 * mid - (1 - y) * 0.35 * scene.sky
    canopy = np.clip((gaps - (scene.sky - 0.15)) * 6.0, 0.0, 1.0)
    tone = np.clip(0.55 * mid + 0.45 * fine, 0, 1)
    return canopy, tone


def _background_res(scene: Scene, scale: float) -> float:
    """Resolution of the background layer relative to the image.

    An out-of-focus background is drawn at half resolution and upsampled: that costs a quarter
    and blurs by itself. A sharp one (bare branches against the sky) needs every pixel.
    """
    return 0.5 if scene.bg_blur * scale >= 0.8 else 1.0


def _background(
    rng: np.random.Generator,
    scene: Scene,
    branches: list[np.ndarray],
    canopy: np.ndarray,
    tone: np.ndarray,
    width: int,
    height: int,
    scale: float,
) -> np.ndarray:
    """Sky, canopy texture, branches and background leaves, out of focus: (3, H, W) floats in [0, 1]."""
    res = _background_res(scene, scale)
    bh, bw = canopy.shape
    y = np.linspace(0.0, 1.0, bh, dtype=np.float32)[:, None]
    top, low = _plane(scene.sky_top), _plane(scene.sky_low)
    sky = top + (low - top) * y
    dark, light = _plane(scene.foliage_dark), _plane(scene.foliage_light)
    bg = sky + (dark + (light - dark) * tone - sky) * canopy

    img = _to_image(bg)
    draw = ImageDraw.Draw(img)
    # Background leaves mostly where there is canopy, a few stray ones against the sky.
    n_leaves = int(scene.bg_leaves * (width * height) / (320 * 240))
    xs = rng.uniform(0, bw, n_leaves * 2)
    ys = rng.uniform(0, bh, n_leaves * 2)
    keep = rng.random(n_leaves * 2) < canopy[ys.astype(int), xs.astype(int)] + 0.08
    xs, ys = xs[keep][:n_leaves], ys[keep][:n_leaves]
    n = len(xs)
    length = rng.uniform(*scene.leaf_length, n) * min(bw, bh) * 0.8
    theta = rng.uniform(0, 2 * math.pi, n)
    tones = rng.uniform(0, 1, n)[:, None]
    cols = dark[:, 0, 0] + (light - dark)[:, 0, 0] * tones
    cols = np.clip(cols * rng.uniform(0.6, 1.3, n)[:, None], 0, 1) * 255
    cols = [tuple(c) for c in cols.astype(int).tolist()]
    polys = _leaf_polygons(xs, ys, length, length * 0.27, theta)
    polys = [p.ravel().tolist() for p in polys]
    half = n // 2
    for k in range(n):
        if k == half:
            # Branches in the middle of the leaf stack: partly hidden, partly in front.
            _draw_branches(draw, branches, scene, res)
        draw.polygon(polys[k], fill=cols[k])
    if n < 2:
        _draw_branches(draw, branches, scene, res)
    # Upsampling from half resolution blurs by about a pixel, but leaf edges still need anti-aliasing.
    radius = max(0.5, scene.bg_blur * scale * res - 0.5) if res < 1 else scene.bg_blur * scale
    if radius > 0.2:
        # A sub-pixel box blur is a 3-tap kernel: same look as a Gaussian there, a third of the cost.
        img = img.filter(ImageFilter.BoxBlur(radius) if radius <= 1 else ImageFilter.GaussianBlur(radius))
    if res < 1:
        img = img.resize((width, height), Image.BILINEAR)
    return _from_image(img)


def _plane(colour: RGB) -> np.ndarray:
    """A colour as a (3, 1, 1) array that broadcasts over (3, H, W) planes."""
    return np.array(colour, np.float32)[:, None, None]


def _to_image(planes: np.ndarray) -> Image.Image:
    """(3, H, W) floats in [0, 1] to an RGB image."""
    u8 = (np.clip(planes, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return Image.merge("RGB", [Image.fromarray(p) for p in u8])


def _from_image(img: Image.Image) -> np.ndarray:
    """An RGB image to (3, H, W) float32 planes in [0, 1]."""
    return np.stack([np.asarray(band, np.float32) for band in img.split()]) * np.float32(1 / 255)


def _leaf_polygons(
    xs: np.ndarray, ys: np.ndarray, length: np.ndarray, half_width: np.ndarray, theta: np.ndarray
) -> np.ndarray:
    """Outlines of N leaves as an (N, 2K, 2) array: upper edge tip to tip, then the lower edge back."""
    along = (_LEAF_S - 0.5)[None, :] * length[:, None]
    across = _LEAF_W[None, :] * half_width[:, None]
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    x, y = xs[:, None] + along * c, ys[:, None] + along * s
    upper = np.stack([x - across * s, y + across * c], -1)
    lower = np.stack([x + across * s, y - across * c], -1)
    return np.concatenate([upper, lower[:, ::-1]], 1)


def _draw_branches(draw: ImageDraw.ImageDraw, branches: list[np.ndarray], scene: Scene, res: float) -> None:
    """Bark-brown tapering branches with a lit upper edge, coordinates scaled by ``res``."""
    dark = (58, 44, 34) if scene.sky < 1 else (48, 38, 32)
    lit = (104, 84, 62) if scene.sky < 1 else (92, 78, 64)
    for b in branches:
        pts = b * res
        for k in range(len(pts) - 1):
            (xa, ya, wa), (xb, yb, wb) = pts[k].tolist(), pts[k + 1].tolist()
            dx, dy = xb - xa, yb - ya
            norm = math.hypot(dx, dy) or 1.0
            nx, ny = -dy / norm, dx / norm
            if ny > 0:  # the normal that points up, towards the sky
                nx, ny = -nx, -ny
            # A trapezoid per segment plus a round joint of the narrower width: a smooth taper.
            draw.polygon(
                [xa + nx * wa / 2, ya + ny * wa / 2, xb + nx * wb / 2, yb + ny * wb / 2,
                 xb - nx * wb / 2, yb - ny * wb / 2, xa - nx * wa / 2, ya - ny * wa / 2],
                fill=dark,
            )
            draw.ellipse([xb - wb / 2, yb - wb / 2, xb + wb / 2, yb + wb / 2], fill=dark)
            draw.polygon(
                [xa + nx * wa * 0.4, ya + ny * wa * 0.4, xb + nx * wb * 0.4, yb + ny * wb * 0.4,
                 xb + nx * wb * 0.15, yb + ny * wb * 0.15, xa + nx * wa * 0.15, ya + ny * wa * 0.15],
                fill=lit,
            )


def _shadow_maps(
    apples: list[_Apple], leaves: list[_Leaf], direction: np.ndarray, width: int, height: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Soft shadows cast by apples (onto the background) and by leaves (onto everything), in [0, 1]."""
    # Soft shadows carry no detail: draw and blur them at half resolution.
    bw, bh = (width + 1) // 2, (height + 1) // 2
    apple_img = Image.new("L", (bw, bh), 0)
    draw = ImageDraw.Draw(apple_img)
    for a in apples:
        cx, cy = (a.cx + direction[0] * a.ry) / 2, (a.cy + direction[1] * a.ry) / 2
        draw.ellipse([cx - a.rx / 2, cy - a.ry / 2, cx + a.rx / 2, cy + a.ry / 2], fill=255)
    leaf_img = Image.new("L", (bw, bh), 0)
    draw = ImageDraw.Draw(leaf_img)
    # Leaves hang in front of the fruit, so their shadows land a little further off.
    offset = direction * 6 * scale
    for leaf in leaves:
        draw.polygon(((leaf.outline + offset) / 2).ravel().tolist(), fill=200)
    blur = ImageFilter.GaussianBlur(1.5 * scale)
    return tuple(
        np.asarray(im.filter(blur).resize((width, height), Image.BILINEAR), np.float32) / 255.0
        for im in (apple_img, leaf_img)
    )


def _draw_apple(
    canvas: np.ndarray,
    owner: np.ndarray,
    index: int,
    apple: _Apple,
    light: np.ndarray,
    ambient: float,
    specular: float,
) -> tuple[int, tuple[int, int, int, int]]:
    """Shade one apple into ``canvas``, claim its pixels in ``owner``; return its full mask's area and box.

    The full mask is computed on the unclipped grid, so an apple cut by the border still knows
    its whole area and extent.
    """
    height, width = owner.shape
    x0, x1 = math.floor(apple.cx - apple.rx - 1), math.ceil(apple.cx + apple.rx + 1)
    y0, y1 = math.floor(apple.cy - apple.ry * 1.4 - 1), math.ceil(apple.cy + apple.ry + 1)
    u = ((np.arange(x0, x1, dtype=np.float32) + 0.5 - apple.cx) / apple.rx)[None, :]
    v = ((np.arange(y0, y1, dtype=np.float32) + 0.5 - apple.cy) / apple.ry)[:, None]
    d2 = u * u + v * v
    # Anti-aliased edge about one pixel wide; a pixel belongs to the apple when it is mostly apple.
    alpha = _unit((1.0 - np.sqrt(d2)) * min(apple.rx, apple.ry) + 0.5)
    full = alpha >= 0.5
    rows, cols = np.flatnonzero(full.any(1)), np.flatnonzero(full.any(0))
    full_area = int(np.count_nonzero(full))
    full_box = (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)

    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx0 >= cx1 or cy0 >= cy1:
        return full_area, full_box
    win = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
    u, v = u[:, win[1]], v[win[0], :]
    alpha, full = alpha[win], full[win]
    nz = np.sqrt(1.0 - np.minimum(d2[win], 1.0))
    detailed = apple.ry >= 6  # streaks, stem and dimple are invisible on a far-away apple

    # Cultivar colour: a blush across one side, plus streaks running from stem to calyx.
    t = apple.blush_bias + 0.45 * (u * math.cos(apple.blush_angle) + v * math.sin(apple.blush_angle))
    if detailed:
        longitude = u / np.sqrt(np.maximum(1.0 - v * v, 0.05))
        t = t + apple.streak_amp * np.sin(apple.streaks * longitude + 3.0 * apple.blush_angle)
    base = _plane(apple.base)
    col = base + (_plane(apple.blush) - base) * _unit(t)

    shade = ambient + (1 - ambient) * _unit(u * light[0] + v * light[1] + nz * light[2])
    shade *= 0.7 + 0.3 * nz
    su, sv = apple.stem
    if detailed:
        # Stem cavity: a dark dimple near the top.
        shade *= 1.0 - 0.5 * np.exp(-((u - su) ** 2) / 0.03 - ((v - sv) ** 2) / 0.008)
    half = light + np.array([0.0, 0.0, 1.0], np.float32)
    half /= np.linalg.norm(half)
    spec = _unit(u * half[0] + v * half[1] + nz * half[2]) ** 30 * specular
    col = col * shade + spec

    patch = canvas[:, cy0:cy1, cx0:cx1]
    patch += (col - patch) * alpha
    if detailed:
        # A short stem out of the dimple, drawn over fruit and background alike.
        ex, ey = 0.12, -0.4
        tt = _unit(((u - su) * ex + (v - sv) * ey) / (ex * ex + ey * ey))
        dpx = np.sqrt((u - su - tt * ex) ** 2 + (v - sv - tt * ey) ** 2) * apple.ry
        stem_a = _unit(0.06 * apple.ry + 0.5 - dpx) * 0.9
        patch += (_plane((0.25, 0.17, 0.08)) - patch) * stem_a
    owner[cy0:cy1, cx0:cx1][full] = index
    return full_area, full_box


def _unit(x: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] in place; np.clip's Python overhead dominates on small patches."""
    np.maximum(x, 0.0, out=x)
    return np.minimum(x, 1.0, out=x)


def _draw_leaves(canvas: np.ndarray, owner: np.ndarray, leaves: list[_Leaf]) -> None:
    """Draw foreground leaves over ``canvas`` and take their pixels away from whatever apple had them."""
    height, width = owner.shape
    img = Image.new("RGB", (width, height))
    mask = Image.new("L", (width, height), 0)
    draw, mdraw = ImageDraw.Draw(img), ImageDraw.Draw(mask)
    k = len(_LEAF_S)
    for leaf in leaves:
        # Two halves in different light read as a leaf folded along its midrib.
        lit = tuple(int(min(255, c * 255)) for c in leaf.colour)
        shaded = tuple(int(min(255, c * 255 * leaf.side)) for c in leaf.colour)
        draw.polygon(leaf.outline[:k].ravel().tolist(), fill=lit)
        draw.polygon(leaf.outline[k:].ravel().tolist(), fill=shaded)
        draw.line(leaf.outline[[0, k - 1]].ravel().tolist(), fill=tuple(min(255, int(c * 1.3)) for c in lit))
        mdraw.polygon(leaf.outline.ravel().tolist(), fill=255)
    m = np.asarray(mask) > 0
    canvas[:] = np.where(m, _from_image(img), canvas)
    owner[m] = -1


def _visible_apples(
    owner: np.ndarray, full_masks: list[tuple[int, tuple[int, int, int, int]]]
) -> list[_Visible]:
    """Boxes of the apples that still show enough after occlusion; in drawing order."""
    height, width = owner.shape
    out = []
    for i, (full_area, full_box) in enumerate(full_masks):
        x0, y0 = max(full_box[0], 0), max(full_box[1], 0)
        x1, y1 = min(full_box[2], width), min(full_box[3], height)
        if x0 >= x1 or y0 >= y1:
            continue
        mine = owner[y0:y1, x0:x1] == i
        area = int(mine.sum())
        if area == 0 or area < MIN_VISIBLE_FRACTION * full_area:
            continue
        rows, cols = np.flatnonzero(mine.any(1)), np.flatnonzero(mine.any(0))
        box = (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)
        if box[2] - box[0] < MIN_BOX_SIDE or box[3] - box[1] < MIN_BOX_SIDE:
            continue
        out.append(_Visible(box, full_box, area / full_area, i))
    return out


def _camera(rng: np.random.Generator, scene: Scene, canvas: np.ndarray, scale: float) -> Image.Image:
    """Exposure, contrast, colour cast, vignette, lens blur and sensor noise, as the final RGB image."""
    _, height, width = canvas.shape
    gain = rng.uniform(*scene.brightness)
    cast = np.array(scene.cast, np.float32) * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    contrast = scene.contrast * rng.uniform(0.92, 1.08)
    mean = float(canvas.mean())
    y = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    vignette = (1.0 - rng.uniform(0.1, 0.3) * (x * x + y * y) / 2) * (gain * 255)
    # ((c - mean) * contrast + mean) * vignette * cast, folded into one multiply and one add,
    # already scaled to 0..255 so the uint8 conversion needs no further pass.
    mul = vignette * (cast * contrast)[:, None, None]
    img = canvas * mul
    img += mul * (mean * (1 - contrast) / contrast)
    img = _soften(img, scene.blur * scale * rng.uniform(0.6, 1.4))
    # Sensor noise: uniform with the variance of N(0, sigma); the eye cannot tell them apart and
    # uniform draws cost a quarter. One field, read at a different offset for each channel.
    sigma = scene.noise * 255 * rng.uniform(0.7, 1.3)
    grain = rng.random((height, width + 14), dtype=np.float32) * np.float32(sigma * math.sqrt(12))
    grain += np.float32(0.5 - sigma * math.sqrt(3))  # centre the noise; +0.5 rounds in the uint8 cast
    for c in range(3):
        img[c] += grain[:, 7 * c : 7 * c + width]
    np.clip(img, 0.0, 255.0, out=img)
    return Image.merge("RGB", [Image.fromarray(p) for p in img.astype(np.uint8)])


def _soften(img: np.ndarray, sigma: float) -> np.ndarray:
    """A separable 3-tap Gaussian blur of (3, H, W) planes: lens softness of ``sigma`` pixels."""
    if sigma < 0.2:
        return img
    w = math.exp(-1.0 / (2.0 * sigma * sigma))
    centre, side = np.float32(1.0 / (1.0 + 2.0 * w)), np.float32(w / (1.0 + 2.0 * w))
    for axis in (2, 1):
        n = img.shape[axis]
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        lo, hi = tuple(lo), tuple(hi)
        nb = img * side
        out = img * centre
        out[hi] += nb[lo]
        out[lo] += nb[hi]
        # Edge pixels miss one neighbour: they get their own share back, so borders do not darken.
        first, last = [slice(None)] * 3, [slice(None)] * 3
        first[axis], last[axis] = 0, n - 1
        out[tuple(first)] += nb[tuple(first)]
        out[tuple(last)] += nb[tuple(last)]
        img = out
    return img


__all__ = ["CULTIVAR_SCENES", "EMPTY_FRACTION", "FAMILIES", "SCENES", "Family", "Orchard", "Scene",
           "generate_orchard"]
