"""Images placed where and how TAO reads them: one flat root, upright, in a format it opens."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from alloop.boxes import ImageAnnotation
from alloop.errors import TrainerError
from alloop.trainers.base import Example

TRAIN_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})
INFER_SUFFIXES = frozenset({".jpg", ".jpeg", ".JPG", ".JPEG", ".png", ".PNG"})


def common_root(train: Sequence[Example], val: Sequence[Example],
                 data_dir: Path) -> tuple[Path, list[ImageAnnotation], list[ImageAnnotation]]:
    """The image root the examples' file names are relative to, or a link tree that makes one."""
    roots = set()
    for e in (*train, *val):
        path, name = Path(os.path.abspath(e.path)).as_posix(), e.annotation.file_name
        roots.add(path[: -len(name)] if path.endswith("/" + name) else None)
    if len(roots) == 1 and None not in roots:
        return Path(roots.pop()), [e.annotation for e in train], [e.annotation for e in val]
    # Examples from several roots (or renamed): link each file under its annotation's name.
    from alloop.formats.staging import place_image

    tree = data_dir.parent / "sources"
    if tree.exists():
        shutil.rmtree(tree)
    for e in (*train, *val):
        place_image(Path(e.path), tree / e.annotation.file_name)
    return tree, [e.annotation for e in train], [e.annotation for e in val]


def inference_dir(checkpoint: Path) -> Path:
    """``<run>/inference`` for a model in TAO's ``<run>/results/weights/``, else beside the model."""
    if checkpoint.parent.name == "weights" and checkpoint.parent.parent.name == "results":
        return checkpoint.parent.parent.parent / "inference"
    return checkpoint.parent / "alloop_inference"


def needs_rewrite(path: Path, suffixes: frozenset[str]) -> bool:
    from PIL import Image

    if path.suffix not in suffixes:
        return True
    with Image.open(path) as img:
        return img.getexif().get(0x0112, 1) != 1  # TAO ignores EXIF orientation; alloop's boxes follow it


def make_tao_readable(images_dir: Path, suffixes: frozenset[str]) -> None:
    """Rewrite as PNG (upright) each exported image TAO would skip or read rotated."""
    from alloop.images import load_rgb

    for p in sorted(images_dir.iterdir()):
        if p.is_file() and needs_rewrite(p, suffixes):
            img = load_rgb(p)
            p.unlink()  # first: the export hard-links the user's file, writing through it would change it
            img.save(p.with_suffix(".png"))


def stage_image(src: Path, stem: Path, *, hflip: bool) -> tuple[int, int]:
    """Place ``src`` as ``stem.<ext>`` for TAO inference (mirrored when ``hflip``); its upright size."""
    from PIL import Image, ImageOps

    from alloop.formats.staging import place_image
    from alloop.images import load_rgb

    if not src.is_file():
        raise TrainerError(f"{src}: image file is missing; restore it or remove the image from the project")
    if not hflip and not needs_rewrite(src, INFER_SUFFIXES):
        with Image.open(src) as img:
            size = img.size
        place_image(src, stem.with_suffix(src.suffix))
        return size
    img = load_rgb(src)
    if hflip:
        img = ImageOps.mirror(img)
    img.save(stem.with_suffix(".png"))
    return img.size

