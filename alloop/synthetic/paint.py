"""Rendering the synthetic orchard: background canopy, branches, shaded apples, leaves and the camera."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from alloop.synthetic.layout import _LEAF_S, _Apple, _Leaf, _leaf_polygons, _Visible
from alloop.synthetic.scenes import MIN_BOX_SIDE, MIN_VISIBLE_FRACTION, RGB, Scene


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
