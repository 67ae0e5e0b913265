"""Scene types and families of the synthetic orchard: how each kind of photo looks and what it holds."""

from __future__ import annotations

from dataclasses import dataclass

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
