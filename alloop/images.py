"""Find, hash, open and validate images.

A corrupt or unsupported file is reported and skipped, never a crash: registration returns the
good images and a list of (path, reason) for the bad ones. So is everything a scan passes over
that a user may have meant as an image: an unreadable folder, a broken link or one leading out of
the image root, a linked folder, and a format Pillow reads that alloop does not take (.gif...).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from alloop.config import MAX_IMAGE_PIXELS_CEILING
from alloop.errors import ImageError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")

# The project's own limit (max_image_pixels in alloop.toml) is checked from the header before any
# decode. Pillow's, which it enforces inside every Image.open (a warning above it, an error above
# twice it), is the backstop for images opened outside a project: at the ceiling of the project's
# limit, it neither refuses nor warns about an image that the project's check is about to refuse.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS_CEILING

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


@dataclass(frozen=True)
class Scan:
    """What a walk of an image folder found: the image files to inspect, and what it skipped with why."""

    files: tuple[Path, ...]
    skipped: tuple[BadImage, ...]


def discover(root: Path) -> list[Path]:
    """Every image file under ``root`` (recursively, sorted), by extension, hidden dirs skipped."""
    return list(scan(root).files)


def scan(root: Path, *, image_root: Path | None = None) -> Scan:
    """Image files under ``root`` (recursively, sorted; hidden entries passed over) and the skipped ones.

    Skipped, each with its reason and its path relative to ``image_root`` (default ``root``): a
    folder that cannot be read, a linked folder (never followed), a link that is broken or leads
    out of ``image_root``, and a file in a format Pillow reads but alloop does not take.
    """
    root = Path(root)
    base = Path(image_root) if image_root is not None else root
    if not root.exists():
        raise ImageError(f"{root}: image folder not found; pass an existing folder with --images")
    if not root.is_dir():
        raise ImageError(f"{root}: not a folder; pass the folder that holds your images with --images")
    found: list[Path] = []
    skipped: list[BadImage] = []
    unreadable: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable.append, followlinks=False):
        here = Path(dirpath)
        kept = []
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            if (here / name).is_symlink():
                skipped.append(BadImage(_entry_name(here / name, base) + "/", _LINKED_FOLDER))
            else:
                kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            if name.startswith("."):
                continue
            path = here / name
            reason = _not_taken(path, base)
            if reason:
                skipped.append(BadImage(_entry_name(path, base), reason))
            elif os.path.splitext(name)[1].lower() in EXTENSIONS:
                found.append(path)
    for exc in unreadable:
        folder = Path(exc.filename) if exc.filename else root
        if folder == root:
            raise ImageError(f"{root}: cannot read the image folder ({exc.strerror}); fix its permissions")
        skipped.append(BadImage(_entry_name(folder, base) + "/",
                                f"folder not readable ({exc.strerror}); fix its permissions, then `alloop add`"))
    found.sort()
    skipped.sort(key=lambda b: b.path)
    if not found:
        also = f"; skipped {len(skipped)} (first: {skipped[0].path}: {skipped[0].reason})" if skipped else ""
        raise ImageError(
            f"{root}: no images found (looked recursively for {', '.join(EXTENSIONS)}){also}; "
            "point --images at the folder that holds them"
        )
    return Scan(tuple(found), tuple(skipped))


_LINKED_FOLDER = "a link to a folder, not followed; move or copy its images under the image root"


def _other_formats() -> dict[str, str]:
    """Extension -> format of what Pillow can decode but alloop does not take under that extension."""
    Image.init()
    out = {}
    for ext, fmt in Image.registered_extensions().items():
        factory = Image.OPEN.get(fmt, (None,))[0]
        # Stub formats (HDF5, GRIB, WMF...) are only recognised by Pillow, never decoded.
        stub = isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)
        if ext not in EXTENSIONS and factory is not None and not stub:
            out[ext] = fmt
    return out


_OTHER_FORMATS = _other_formats()
_TAKEN_FORMATS = {Image.registered_extensions()[ext]: ext for ext in reversed(EXTENSIONS)}


def _not_taken(path: Path, base: Path) -> str | None:
    """Why the file ``path`` is skipped (a bad link, a format alloop does not take), or None."""
    ext = os.path.splitext(path.name)[1].lower()
    if ext not in EXTENSIONS:
        fmt = _OTHER_FORMATS.get(ext)
        if fmt is None:
            return None  # not an image at all (notes, label files...): nothing to report
        if fmt in _TAKEN_FORMATS:
            return f"{fmt} under the extension {ext}, which alloop does not take; rename it to {_TAKEN_FORMATS[fmt]}"
        return (f"{fmt} ({ext}) is not a format alloop takes ({', '.join(EXTENSIONS)}); "
                "convert it, e.g. to PNG")
    if not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing target, or a loop of links
        return f"broken link (to {os.readlink(path)}); restore its target or remove the link"
    if not target.is_relative_to(Path(base).resolve()):
        return f"a link to {target}, outside the image root {base}; move or copy the file under the image root"
    return None


def _entry_name(path: Path, base: Path) -> str:
    """The posix path of an entry relative to ``base`` without following the entry itself if a link."""
    path = Path(path)
    try:
        return PurePosixPath((path.parent.resolve() / path.name).relative_to(Path(base).resolve())).as_posix()
    except ValueError:
        return str(path)


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


def inspect(path: Path, root: Path, *, max_pixels: int | None = None) -> ImageInfo | BadImage:
    """Hash and fully decode one image; a failure becomes a BadImage with the reason.

    An image of more than ``max_pixels`` pixels (read from its header) is refused before decoding:
    a small file can hold a huge image (a decompression bomb) that would take gigabytes to decode.
    """
    try:
        rel = relative_name(path, root)
    except ImageError as exc:
        return BadImage(_entry_name(path, root), str(exc))
    try:
        with Image.open(path) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                return BadImage(rel, _too_large(img.width, img.height, max_pixels))
            width, height = oriented_size(img)  # from the header: draft mode below shrinks img.size
            if img.format == "JPEG":
                # At 1/8 scale libjpeg still entropy-decodes every byte, so a truncated or corrupt
                # JPEG fails as at full size, in under half the time (registering a large pool).
                img.draft(None, (1, 1))
            img.load()  # verify() misses truncated data; a full decode does not
    except PermissionError as exc:
        return BadImage(rel, f"file not readable ({exc.strerror}); fix its permissions, then `alloop add`")
    except DECODE_ERRORS as exc:
        return BadImage(rel, f"cannot decode: {exc}".replace("\n", " "))
    if width < 2 or height < 2:
        return BadImage(rel, f"image is {width}x{height} pixels; too small to use")
    return ImageInfo(rel, sha256_of(path), width, height)


def inspect_all(paths: Sequence[Path], root: Path, *, workers: int = 4, max_pixels: int | None = None,
                window: int = 4096) -> Iterator[ImageInfo | BadImage]:
    """Inspect many images with a small thread pool (decoding and hashing release the GIL), in order.

    At most ``window`` images are in flight: submitting a million at once held a future per image.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), window):
            yield from pool.map(lambda p: inspect(p, root, max_pixels=max_pixels), paths[start:start + window])


def _too_large(width: int, height: int, max_pixels: int) -> str:
    return (f"{width}x{height} is {width * height / 1e6:.0f} megapixels, over the project's limit of "
            f"{max_pixels / 1e6:g} (max_image_pixels in alloop.toml); downscale or tile it, or raise the limit")


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
