#!/usr/bin/env python
"""Fetch MinneApple's detection set and turn its instance masks into a COCO box file for alloop.

MinneApple (Häni, Roy, Isler, "MinneApple: A Benchmark Dataset for Apple Detection and
Segmentation", IEEE RA-L 2020; data: https://hdl.handle.net/11299/206575, doi:10.13020/8ecp-3r13;
licence CC BY-NC-SA 3.0 US) ships ``detection.tar.gz`` (about 1.8 GB) laid out as::

    detection/train/images/*.png   670 orchard photos (720x1280)
    detection/train/masks/*.png    one instance mask per photo, same file name
    detection/test/images/*.png    331 photos without labels in this archive

A mask holds one integer id per apple and 0 for background. Boxes are made exactly as the
authors' loader does (``data/apple_dataset.py`` in github.com/nicolaihaeni/MinneApple):

- every distinct non-zero value is one apple, even when its pixels fall in several pieces;
- its box is the min and max of its pixel columns and rows: ``x1 = max(col)``, ``y1 = max(row)``,
  with **no +1**, so a box spans pixel *centres* and is one pixel narrower than the pixels it
  covers (alloop's xyxy boxes are continuous coordinates, so it takes these numbers unchanged);
- a box with ``x0 == x1`` or ``y0 == y1`` (a one-pixel-wide or one-pixel-tall object) is dropped;
- COCO ``bbox`` is ``[x0, y0, x1 - x0, y1 - y0]`` and ``area`` the box area ``(x1-x0)*(y1-y0)``,
  as their ``utility/coco_utils.py:convert_to_coco_api`` writes them; one category, id 1.

Deviations, each on purpose:

- ``--min-area`` (default 0: exactly the authors' boxes) can also drop boxes whose area is below it: specks left by occlusion
  that no detector can find but that would count as misses. ``--min-area 0`` gives exactly the
  authors' boxes.
- images and masks are paired by file name, not by position in two sorted listings as the
  authors' loader does, so an image without a mask is skipped (with a warning) instead of
  shifting every later pair; a mask without an image is ignored.
- background is the value 0 only; the authors drop the smallest value found, which is the same
  on every real mask (all have background pixels).
- a mask that is not single-channel, cannot be read, or differs in size from its image is skipped
  with a warning (the authors' loader would crash or mis-place boxes).

Run ``python scripts/fetch_minneapple.py --help`` for the options; it ends by printing the
``alloop init`` and ``alloop simulate`` commands for the converted data.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import json
import os
import shlex
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

try:
    from alloop import atomic
    from alloop.boxes import xyxy_to_xywh
    from alloop.errors import AlloopError
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from alloop import atomic
    from alloop.boxes import xyxy_to_xywh
    from alloop.errors import AlloopError

# The conservancy's DSpace REST "content" endpoint for detection.tar.gz: it answers with the file
# itself, not a web page. Other published links to the same file, for --url if this one moves:
# https://conservancy.umn.edu/bitstreams/3ef26f04-6467-469b-9857-f443ffa1bb61/download and the
# pre-2024 https://conservancy.umn.edu/bitstream/handle/11299/206575/detection.tar.gz?sequence=2
DEFAULT_URL = (
    "https://conservancy.umn.edu/server/api/core/bitstreams/3ef26f04-6467-469b-9857-f443ffa1bb61/content"
)
DATASET_PAGE = "https://hdl.handle.net/11299/206575"
ARCHIVE_NAME = "detection.tar.gz"
# Published by a third party (not the authors) next to the same URL; a mismatch is a warning.
KNOWN_MD5 = "d24a2f70144f1a3c5a52ffef66c50630"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CATEGORY = {"id": 1, "name": "apple", "supercategory": "fruit"}
CHUNK = 1 << 20


class FetchError(AlloopError):
    """The download, the archive or the extracted folder cannot be used."""


Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ConversionStats:
    """What ``convert`` wrote and what it left out."""

    out_json: Path
    images: int
    boxes: int
    images_without_apples: int
    dropped_degenerate: int
    dropped_small: int
    missing_mask: tuple[str, ...] = ()
    unusable_mask: tuple[str, ...] = ()
    orphan_masks: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), repr=False)


# -- masks to boxes --------------------------------------------------------------------------------

def _instance_boxes(mask: np.ndarray) -> list[Box]:
    """One (x0, y0, x1, y1) per distinct non-zero id, ascending id; max without +1 (authors)."""
    if mask.ndim != 2:
        raise FetchError(
            f"instance mask must be one channel (H x W) of integer ids, got shape {mask.shape}; "
            "MinneApple's masks are single-channel PNGs"
        )
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return []
    # One pass over the foreground pixels instead of one full-image comparison per id.
    _, inverse = np.unique(mask[rows, cols], return_inverse=True)
    n = int(inverse.max()) + 1
    x0 = np.full(n, np.iinfo(np.int64).max)
    y0 = np.full(n, np.iinfo(np.int64).max)
    x1 = np.full(n, -1)
    y1 = np.full(n, -1)
    np.minimum.at(x0, inverse, cols)
    np.minimum.at(y0, inverse, rows)
    np.maximum.at(x1, inverse, cols)
    np.maximum.at(y1, inverse, rows)
    return [(int(a), int(b), int(c), int(d)) for a, b, c, d in zip(x0, y0, x1, y1)]


def _is_degenerate(box: Box) -> bool:
    return box[0] == box[2] or box[1] == box[3]


def _area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def masks_to_boxes(mask: np.ndarray, min_area: float = 0) -> list[Box]:
    """Instance-id mask (H x W, 0 = background) to xyxy boxes as MinneApple's loader makes them.

    Box = (min col, min row, max col, max row) of each id's pixels, no +1; boxes with zero width or
    height are dropped (authors), and so are boxes with area < ``min_area`` (alloop's addition).
    """
    return [b for b in _instance_boxes(np.asarray(mask)) if not _is_degenerate(b) and _area(b) >= min_area]


# -- conversion ------------------------------------------------------------------------------------

def _read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode not in ("L", "P", "I", "I;16", "I;16L", "I;16B", "1"):
            raise FetchError(f"mode {im.mode!r} is not a single-channel instance-id image")
        return np.asarray(im)


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size  # (width, height), read from the header only


def convert(
    detection_dir: Path, out_json: Path, split: str = "train", min_area: float = 0
) -> ConversionStats:
    """Write ``detection_dir/<split>`` masks as a COCO JSON whose file_name is relative to images/."""
    split_dir = Path(detection_dir) / split
    images_dir, masks_dir = split_dir / "images", split_dir / "masks"
    if not images_dir.is_dir():
        raise FetchError(f"{images_dir}: no such folder; pass --out to the folder that holds detection/")
    if not masks_dir.is_dir():
        raise FetchError(
            f"{masks_dir}: no such folder; MinneApple's detection archive has masks only for 'train' "
            "(use --split train)"
        )
    image_files = sorted(
        p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not image_files:
        raise FetchError(f"{images_dir}: no images; the extraction is incomplete, rerun with --force")
    image_names = {p.name for p in image_files}
    orphans = tuple(sorted(p.name for p in masks_dir.iterdir() if p.is_file() and p.name not in image_names))

    warnings: list[str] = []
    missing: list[str] = []
    unusable: list[str] = []
    coco_images: list[dict] = []
    annotations: list[dict] = []
    degenerate = small = empty = 0
    for image_path in image_files:
        mask_path = masks_dir / image_path.name
        if not mask_path.is_file():
            missing.append(image_path.name)
            warnings.append(f"{image_path}: no mask {mask_path.name} in {masks_dir}; image skipped")
            continue
        try:
            width, height = _image_size(image_path)
            mask = _read_mask(mask_path)
            all_boxes = _instance_boxes(mask)
        except (OSError, UnidentifiedImageError, FetchError) as exc:
            unusable.append(image_path.name)
            warnings.append(f"{mask_path}: cannot read it or its image ({exc}); image skipped")
            continue
        if mask.shape != (height, width):
            unusable.append(image_path.name)
            warnings.append(
                f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}; "
                "image skipped"
            )
            continue
        image_id = len(coco_images) + 1
        coco_images.append({"id": image_id, "file_name": image_path.name, "width": width, "height": height})
        kept = 0
        for box in all_boxes:
            if _is_degenerate(box):
                degenerate += 1
                continue
            if _area(box) < min_area:
                small += 1
                continue
            kept += 1
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": CATEGORY["id"],
                "bbox": list(xyxy_to_xywh(*box)),
                "area": _area(box),
                "iscrowd": 0,
            })
        empty += kept == 0
    if not coco_images:
        raise FetchError(f"{split_dir}: no image has a usable mask; nothing written (see the warnings)")

    doc = {
        "info": {
            "description": f"MinneApple detection/{split}: instance masks converted to boxes "
                           f"(scripts/fetch_minneapple.py, min_area={min_area:g})",
            "url": DATASET_PAGE,
            "license": "CC BY-NC-SA 3.0 US",
        },
        "images": coco_images,
        "annotations": annotations,
        "categories": [CATEGORY],
    }
    atomic.write_json(Path(out_json), doc)
    return ConversionStats(
        out_json=Path(out_json), images=len(coco_images), boxes=len(annotations), images_without_apples=empty,
        dropped_degenerate=degenerate, dropped_small=small, missing_mask=tuple(missing),
        unusable_mask=tuple(unusable), orphan_masks=orphans, warnings=tuple(warnings),
    )


# -- download --------------------------------------------------------------------------------------

def _one_line(exc: BaseException) -> str:
    # tarfile's "r:*" lists each method it tried on its own line; the CLI prints one line.
    return " ".join(str(exc).split())


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _progress(done: int, total: int | None) -> str:
    return f"  {_mb(done)}" + (f" / {_mb(total)} ({100 * done / total:.0f}%)" if total else "")


def download(url: str, dest: Path, *, echo: Callable[[str], None] = print, timeout: float = 60) -> Path:
    """Stream ``url`` to ``dest``; a leftover ``dest.part`` is resumed with a Range request.

    A server that ignores the Range header answers 200: the partial file is then restarted.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "alloop-fetch-minneapple/1"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part is already complete (or longer than the file)
            part.unlink()
            echo("partial download does not fit the file on the server; starting again")
            return download(url, dest, echo=echo, timeout=timeout)
        raise FetchError(
            f"{url}: HTTP {exc.code} {exc.reason}; download {ARCHIVE_NAME} from {DATASET_PAGE} "
            "in a browser and pass it with --archive"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(
            f"{url}: cannot connect ({reason}); check the network, or download {ARCHIVE_NAME} "
            f"elsewhere and pass it with --archive"
        ) from exc
    with response:
        if "html" in (response.headers.get("Content-Type") or "").lower():
            raise FetchError(
                f"{url}: the server sent a web page, not the archive; download {ARCHIVE_NAME} from "
                f"{DATASET_PAGE} in a browser and pass it with --archive"
            )
        resumed = response.status == 206 and have > 0
        if resumed and not (response.headers.get("Content-Range") or "").startswith(f"bytes {have}-"):
            part.unlink()  # a range we did not ask for: trust nothing on disk and start over
            echo("server answered the resume request with another range; starting again")
            response.close()
            return download(url, dest, echo=echo, timeout=timeout)
        if have and not resumed:
            echo(f"server ignored the resume request; restarting {dest.name} from 0")
        start = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        echo(f"downloading {url}\n  -> {dest}" + (f" (resuming at {_mb(start)})" if resumed else ""))
        done, last = start, 0.0
        with open(part, "ab" if resumed else "wb") as out:
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    now = time.monotonic()
                    if now - last >= 1.0:
                        last = now
                        echo(_progress(done, total))
            except (OSError, http.client.HTTPException) as exc:
                raise FetchError(
                    f"{url}: download stopped at {_mb(done)} ({_one_line(exc) or type(exc).__name__}); "
                    "rerun the same command to resume"
                ) from exc
    if total is not None and done != total:
        raise FetchError(
            f"{url}: connection closed at {_mb(done)} of {_mb(total)}; rerun the same command to resume"
        )
    os.replace(part, dest)
    echo(f"  {_mb(done)} done")
    return dest


def file_digests(path: Path) -> tuple[str, str]:
    """(md5, sha256) of a file, read in chunks."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


# -- extraction ------------------------------------------------------------------------------------

def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")) or ".." in name.parts:
        raise FetchError(
            f"{archive}: refusing to extract {member.name!r} (absolute path or '..'); this is not "
            "the MinneApple archive, or it was tampered with"
        )
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        if target.is_absolute() or ".." in target.parts:
            raise FetchError(
                f"{archive}: refusing to extract link {member.name!r} -> {member.linkname!r}; "
                "this is not the MinneApple archive, or it was tampered with"
            )
    elif not (member.isfile() or member.isdir()):
        raise FetchError(f"{archive}: refusing to extract {member.name!r} (device or fifo entry)")


def safe_extract(archive: Path, data_dir: Path, *, force: bool = False) -> Path:
    """Extract ``archive`` into ``data_dir`` and return ``data_dir/detection``.

    Each member is checked before it is written (no absolute path, no '..', no link out of the
    folder, no device) and extracted with tarfile's ``data`` filter where this Python has it. The
    archive is unpacked into a staging folder first, so a failure leaves no half-extracted set.
    """
    archive, data_dir = Path(archive), Path(data_dir)
    target = data_dir / "detection"
    if target.exists() and not force:
        raise FetchError(f"{target}: already exists; pass --force to extract again")
    staging = data_dir / ".detection.extracting"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    filter_kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:  # one pass: the archive is 1.8 GB of compressed PNGs
                    _check_member(member, archive)
                    tar.extract(member, staging, **filter_kw)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise FetchError(
                f"{archive}: not a readable .tar.gz ({type(exc).__name__}: {_one_line(exc)}); delete it and "
                "download again"
            ) from exc
        except OSError as exc:
            raise FetchError(
                f"{archive}: cannot extract into {data_dir} ({_one_line(exc)}); check free space"
            ) from exc
        if not (staging / "detection").is_dir():
            raise FetchError(
                f"{archive}: no top-level detection/ folder; pass MinneApple's {ARCHIVE_NAME} "
                "(not counting.tar.gz or test_data.zip)"
            )
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging / "detection", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# -- command line ----------------------------------------------------------------------------------

def next_commands(images_dir: Path, coco_json: Path) -> list[str]:
    """The alloop commands to run on the converted set."""
    images, labels = shlex.quote(str(images_dir)), shlex.quote(str(coco_json))
    return [
        f"alloop init myproj --images {images} --n 100",
        f"alloop simulate --images {images} --labels {labels} --budget-per-round 50 --rounds 6 "
        "--methods random,coreset,coral --seeds 3 --out sim-minneapple",
    ]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fetch_minneapple.py",
        description=(
            "Download MinneApple's detection set (detection.tar.gz, ~1.8 GB, CC BY-NC-SA 3.0 US), "
            "extract it safely into DATA_DIR/detection, convert the instance masks of one split to a "
            "COCO box file DATA_DIR/minneapple_<split>_coco.json the way the dataset authors' loader "
            "makes boxes, and print the alloop commands to run on it. The download and the extraction "
            "are skipped when their output exists (--force redoes them); the conversion always runs."
        ),
        epilog=f"Dataset page: {DATASET_PAGE}. Without internet, download the archive elsewhere and "
               "pass --archive.",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DATA_DIR",
                        help="Folder for the archive, the extracted detection/ folder and the COCO file.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--archive", type=Path, metavar="PATH",
                        help="Use this local detection.tar.gz instead of downloading.")
    source.add_argument("--url", default=DEFAULT_URL,
                        help="Download from this URL (default: the University of Minnesota conservancy). "
                             "An interrupted download resumes from DATA_DIR/detection.tar.gz.part.")
    parser.add_argument("--split", default="train",
                        help="Which split to convert; only 'train' has masks in this archive "
                             "(default: train).")
    parser.add_argument("--min-area", type=float, default=0.0,
                        help="Drop boxes with area (w*h, pixels) below this; 0 keeps exactly the authors' "
                             "boxes (default: 0).")
    parser.add_argument("--force", action="store_true",
                        help="Download and extract again even when DATA_DIR already holds them.")
    return parser


def _fail(message: str) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.min_area < 0:
        return _fail(f"--min-area must be >= 0, got {args.min_area:g}")
    data_dir: Path = args.out
    data_dir.mkdir(parents=True, exist_ok=True)
    detection = data_dir / "detection"
    coco_json = data_dir / f"minneapple_{args.split}_coco.json"
    try:
        if args.force or not (detection / args.split / "images").is_dir():
            if args.archive is not None:
                archive = args.archive
                if not archive.is_file():
                    raise FetchError(f"{archive}: no such file; check --archive")
            else:
                archive = data_dir / ARCHIVE_NAME
                if args.force or not archive.is_file():
                    download(args.url, archive)
            md5, sha256 = file_digests(archive)
            print(f"{archive}: md5 {md5}  sha256 {sha256}")
            if md5 != KNOWN_MD5:
                print(f"note: md5 differs from {KNOWN_MD5}, the value published for the conservancy's "
                      f"{ARCHIVE_NAME}; fine for a repacked archive, otherwise download it again")
            print(f"extracting into {detection}")
            safe_extract(archive, data_dir, force=True)
        else:
            print(f"{detection}: already extracted (pass --force to redo)")

        # Always rebuilt: seconds for 670 masks, and --min-area or --split may have changed.
        stats = convert(detection, coco_json, args.split, args.min_area)
        for line in stats.warnings[:20]:
            print(f"warning: {line}", file=sys.stderr)
        if len(stats.warnings) > 20:
            print(f"warning: ... and {len(stats.warnings) - 20} more like these", file=sys.stderr)
        if stats.orphan_masks:
            print(f"warning: {len(stats.orphan_masks)} mask(s) without an image ignored, e.g. "
                  f"{stats.orphan_masks[0]}", file=sys.stderr)
        print(f"wrote {coco_json}: {stats.images} images, {stats.boxes} apples "
              f"({stats.images_without_apples} images without apples); dropped "
              f"{stats.dropped_degenerate} one-pixel-thin and {stats.dropped_small} boxes under "
              f"--min-area {args.min_area:g}; skipped {len(stats.missing_mask)} images without a mask "
              f"and {len(stats.unusable_mask)} with an unusable one")
    except AlloopError as exc:
        return _fail(str(exc))

    print("\nnext:")
    for command in next_commands(detection / args.split / "images", coco_json):
        print(f"  {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
