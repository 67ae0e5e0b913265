"""Find, hash, open and validate images.

A corrupt or unsupported file is reported and skipped, never a crash: registration returns the
good images and a list of (path, reason) for the bad ones.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, ImageOps, UnidentifiedImageError

from alloop.errors import ImageError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")

# MinneApple's photos are ~1280x720 but users bring 50-megapixel drone shots; refuse only the
# absurd (decompression bombs) rather than PIL's conservative default.
Image.MAX_IMAGE_PIXELS = 400_000_000

# What PIL raises for a file it cannot decode (truncated, not an image, absurdly large...).
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass(frozen=True)
class ImageInfo:
    """A readable image: relative posix path, content hash, size."""

    path: str
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class BadImage:
    """A file that looked like an image but could not be used."""

    path: str
    reason: str


def discover(root: Path) -> list[Path]:
    """Every image file under ``root`` (recursively, sorted), by extension, hidden dirs skipped."""
    root = Path(root)
    if not root.exists():
        raise ImageError(f"{root}: image folder not found; pass an existing folder with --images")
    if not root.is_dir():
        raise ImageError(f"{root}: not a folder; pass the folder that holds your images with --images")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(EXTENSIONS):
                found.append(Path(dirpath) / name)
    found.sort()
    if not found:
        raise ImageError(
            f"{root}: no images found (looked recursively for {', '.join(EXTENSIONS)}); "
            "point --images at the folder that holds them"
        )
    return found


def relative_name(path: Path, root: Path) -> str:
    """The posix path of ``path`` relative to ``root``; an error if it lies outside."""
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError as exc:
        raise ImageError(f"{path}: lies outside the image root {root}; keep images under the root") from exc
    return PurePosixPath(rel).as_posix()


def resolve_in_root(root: Path, rel: str) -> Path:
    """The absolute path of a stored relative name, refusing anything that escapes ``root``."""
    root = Path(root).resolve()
    candidate = (root / rel).resolve()
    if candidate != root and root not in candidate.parents:
        raise ImageError(f"{rel}: path escapes the image root {root}; the store or a label file is tampered with")
    return candidate


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inspect(path: Path, root: Path) -> ImageInfo | BadImage:
    """Hash and fully decode one image; a failure becomes a BadImage with the reason."""
    rel = relative_name(path, root)
    try:
        with Image.open(path) as img:
            img.load()  # verify() misses truncated data; a full decode does not
            width, height = oriented_size(img)
    except DECODE_ERRORS as exc:
        return BadImage(rel, f"cannot decode: {exc}".replace("\n", " "))
    if width < 2 or height < 2:
        return BadImage(rel, f"image is {width}x{height} pixels; too small to use")
    return ImageInfo(rel, sha256_of(path), width, height)


def inspect_all(paths: Sequence[Path], root: Path, *, workers: int = 4) -> Iterator[ImageInfo | BadImage]:
    """Inspect many images with a small thread pool (decoding and hashing release the GIL)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(lambda p: inspect(p, root), paths)


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) as a viewer shows the image, i.e. after its EXIF orientation."""
    # Orientations 5-8 swap the axes. Labeling tools (browsers) display the rotated image and
    # their box coordinates refer to it, so alloop uses the same frame everywhere.
    orientation = img.getexif().get(0x0112, 1)
    return (img.height, img.width) if orientation in (5, 6, 7, 8) else (img.width, img.height)


def open_rgb(path: Path, min_side: int | None = None, *, expect: tuple[int, int] | None = None) -> Image.Image:
    """An image as RGB in the orientation a viewer shows (EXIF applied), as labels refer to it.

    With ``min_side``, a JPEG decodes at 1/2, 1/4 or 1/8 scale (draft mode) while keeping both
    sides >= ``min_side``: most of the cost saved when embedding or thumbnailing large photos.
    With ``expect`` = (width, height) from a label, the image must have that size; when only the
    file's raw (un-rotated) size matches, the raw pixels are returned, so boxes drawn by a tool
    that ignores EXIF still fit; another size is an ImageError. Raises one of :data:`DECODE_ERRORS`.
    """
    with Image.open(path) as img:
        if min_side is not None and expect is None and img.format == "JPEG":
            img.draft("RGB", (min_side, min_side))
        image = ImageOps.exif_transpose(img)
        if expect is not None and image.size != tuple(expect):
            if img.size != tuple(expect):
                raise ImageError(
                    f"{path}: the label says {expect[0]}x{expect[1]} but the image is "
                    f"{image.size[0]}x{image.size[1]}; re-import the labels for this image"
                )
            image = img
        return image.convert("RGB")


def load_rgb(path: Path, *, expect: tuple[int, int] | None = None) -> Image.Image:
    """:func:`open_rgb` at full size, with a decode failure as a one-line ImageError."""
    try:
        return open_rgb(path, expect=expect)
    except DECODE_ERRORS as exc:
        raise ImageError(
            f"{path}: cannot decode ({_one_line(exc)}); run `alloop doctor` to find changed images"
        ) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
