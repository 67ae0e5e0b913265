"""Where things go in a synthetic image: apples, leaves and branches, and what stays visible."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from alloop.synthetic.scenes import _PALETTES, RGB, Scene


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
