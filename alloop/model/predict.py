"""``alloop predict``: run one iteration's detector on new images and write what it found.

The detector runs through the project's own trainer plugin (``Trainer.predict``), the very call
the loop's infer stage makes, so the boxes equal the ones the loop stores for the same images and
checkpoint. Outputs are written into a hidden sibling folder and moved into place at the end: a
run that fails leaves no half-written folder, and an existing folder is replaced only with ``force``.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, ImageDraw

from alloop import formats
from alloop import images as imagelib
from alloop.boxes import Detections, detections_to_boxes, xyxy_to_cxcywh_norm
from alloop.device import resolve_device
from alloop.errors import ConfigError, ImageError
from alloop.model.registry import ChosenModel, choose_model
from alloop.project import Project

PREDICT_FORMATS = ("coco", "labelstudio", "yolo")
PREDICT_FORMAT = "coco"  # when --format is not given
DRAW_DIR = "drawn"  # --draw writes <out>/drawn/<image>.jpg
_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")


@dataclass(frozen=True)
class InputImage:
    """One image to predict on: its file, the name outputs use, and its size as viewers show it."""

    path: Path
    name: str  # posix path relative to the common folder of the inputs
    width: int
    height: int


@dataclass(frozen=True)
class Predictions:
    """A detector's boxes on new images (original pixels), with where they came from."""

    chosen: ChosenModel
    classes: tuple[str, ...]
    images: tuple[InputImage, ...]
    detections: tuple[Detections, ...]
    score_threshold: float | None  # None: the trainer's own (its config's score_threshold)
    device: str
    seconds: float  # wall time of the detector over all images (loading the model included)

    @property
    def images_per_second(self) -> float:
        return len(self.images) / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class PredictResult:
    """What :func:`predict` wrote."""

    predictions: Predictions
    out_dir: Path
    files: tuple[Path, ...]  # the main files written (format file, drawn folder)


def collect_images(inputs: Sequence[Path]) -> tuple[InputImage, ...]:
    """The image files named by ``inputs`` (files, or folders searched recursively), each checked
    to be an image; names are relative to the inputs' common folder. ImageError on the first bad one."""
    if not inputs:
        raise ImageError("no images given; pass image files or folders")
    paths: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            paths += imagelib.discover(item)
        elif item.is_file():
            paths.append(item)
        else:
            raise ImageError(f"{item}: no such image file or folder; check the path")
    resolved = list(dict.fromkeys(p.resolve() for p in paths))
    common = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    out = []
    for path in resolved:
        width, height = _header_size(path)
        out.append(InputImage(path, PurePosixPath(path.relative_to(common)).as_posix(), width, height))
    return tuple(out)


def _header_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF rotation, from the header alone (the detector decodes the pixels)."""
    try:
        with Image.open(path) as img:
            width, height = imagelib.oriented_size(img)
    except imagelib.DECODE_ERRORS as exc:
        raise ImageError(f"{path}: not a readable image ({_one_line(exc)}); remove it or fix the file") from exc
    if width < 2 or height < 2:
        raise ImageError(f"{path}: image is {width}x{height} pixels, too small to predict on; remove it")
    return width, height


def _first_undecodable(paths: Sequence[Path]) -> tuple[Path, BaseException] | None:
    for path in paths:
        try:
            imagelib.open_rgb(path)
        except imagelib.DECODE_ERRORS as exc:
            return path, exc
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def run_detector(
    project: Project,
    inputs: Sequence[InputImage],
    *,
    iteration: int | None = None,
    chosen: ChosenModel | None = None,
    score_threshold: float | None = None,
    device: str | None = None,
    progress: bool = True,
) -> Predictions:
    """Detections on ``inputs`` of ``chosen``, or of :func:`choose_model`'s pick for ``iteration``."""
    from alloop.loop import build_trainer  # the loop's own trainer construction, not a second one

    if score_threshold is not None and not 0.0 <= score_threshold < 1.0:
        raise ConfigError(f"--score-threshold must be in [0, 1), got {score_threshold}")
    chosen = chosen if chosen is not None else choose_model(project, iteration)
    classes = tuple(project.store.classes())
    device = resolve_device(device or project.config.device)
    trainer = build_trainer(project, classes, device)
    paths = [im.path for im in inputs]
    start = time.perf_counter()
    try:
        dets = trainer.predict(chosen.model.checkpoint, paths, score_threshold=score_threshold, progress=progress)
    except imagelib.DECODE_ERRORS as exc:
        # Headers were fine; the pixels of one file are not. Name it.
        bad = _first_undecodable(paths)
        path, err = bad if bad is not None else (paths[0], exc)
        raise ImageError(f"{path}: cannot decode ({_one_line(err)}); remove it or fix the file") from exc
    seconds = time.perf_counter() - start
    return Predictions(chosen, classes, tuple(inputs), tuple(dets), score_threshold, device, seconds)


def predict(
    project_dir: Path,
    inputs: Sequence[Path],
    out: Path | None = None,
    *,
    fmt: str | None = None,
    iteration: int | None = None,
    score_threshold: float | None = None,
    draw: bool = False,
    force: bool = False,
    device: str | None = None,
    progress: bool = True,
    announce: Callable[[ChosenModel], None] | None = None,
) -> PredictResult:
    """Run the chosen model on ``inputs`` and write ``out/`` in ``fmt`` (+ ``drawn/`` JPEGs with ``draw``).

    ``out`` None: ``PROJECT/artifacts/predict/iteration-N-<UTC time>``; ``fmt`` None: COCO.
    ``announce`` is told the chosen model before the detector runs.
    """
    fmt = fmt or PREDICT_FORMAT
    if fmt not in PREDICT_FORMATS:
        raise ConfigError(f"unknown prediction format {fmt!r}; --format takes one of {', '.join(PREDICT_FORMATS)}")
    if out is not None:
        _check_out(Path(out), force)
    images = collect_images(inputs)
    # No lock: predicting only reads the store and the checkpoint, so it may run beside a step.
    with Project.open(Path(project_dir), lock=False) as project:
        chosen = choose_model(project, iteration)
        if out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            out = project.artifacts / "predict" / f"iteration-{chosen.model.iteration}-{stamp}"
        out = Path(out)
        _check_out(out, force)
        if announce is not None:
            announce(chosen)
        preds = run_detector(project, images, chosen=chosen, score_threshold=score_threshold,
                             device=device, progress=progress)
    with _staged(out, force) as tmp:
        files = [write_predictions(preds, tmp, fmt)]
        if draw:
            files.append(draw_predictions(preds, tmp / DRAW_DIR))
    return PredictResult(preds, out, tuple(out / f.relative_to(tmp) for f in files))


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists; choose another --out folder or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder; choose another --out")


@contextmanager
def _staged(out: Path, force: bool) -> Iterator[Path]:
    """A hidden sibling folder that becomes ``out`` only when everything in it was written."""
    tmp = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        yield tmp
        _check_out(out, force)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _boxes(preds: Predictions, k: int):
    return detections_to_boxes(preds.detections[k], preds.classes)


def write_predictions(preds: Predictions, out_dir: Path, fmt: str) -> Path:
    """Write ``preds`` under ``out_dir`` in ``fmt``; returns the main file."""
    version = f"alloop iteration-{preds.chosen.model.iteration}"
    if fmt in ("coco", "labelstudio"):
        items = [
            formats.BatchItem(file_name=im.name, path=im.path, width=im.width, height=im.height,
                              predictions=_boxes(preds, k))
            for k, im in enumerate(preds.images)
        ]
        return formats.export_batch(fmt, items, out_dir / fmt, classes=preds.classes, model_version=version)
    if fmt == "yolo":
        return _write_yolo(preds, out_dir / fmt)
    raise ConfigError(f"unknown prediction format {fmt!r}; --format takes one of {', '.join(PREDICT_FORMATS)}")


def _write_yolo(preds: Predictions, out_dir: Path) -> Path:
    """Ultralytics ``predict save_txt save_conf`` layout: ``labels/<image stem>.txt`` with
    ``class cx cy w h conf`` (normalised), and ``classes.txt`` (one name per line, line = class id)."""
    ids = {c: i for i, c in enumerate(preds.classes)}
    labels = out_dir / "labels"
    for k, im in enumerate(preds.images):
        lines = []
        for b in _boxes(preds, k):
            cx, cy, w, h = xyxy_to_cxcywh_norm(b.x0, b.y0, b.x1, b.y1, im.width, im.height)
            lines.append(f"{ids[b.label]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f} {b.score:.6f}\n")
        target = labels / PurePosixPath(im.name).with_suffix(".txt")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(lines), encoding="utf-8")
    labels.mkdir(parents=True, exist_ok=True)  # also when there were no images with boxes
    classes = out_dir / "classes.txt"
    classes.write_text("".join(f"{c}\n" for c in preds.classes), encoding="utf-8")
    return labels


def draw_predictions(preds: Predictions, out_dir: Path) -> Path:
    """``out_dir/<image>.jpg``: each image with its boxes, class names and scores drawn on it."""
    for k, im in enumerate(preds.images):
        image = imagelib.load_rgb(im.path)
        pen = ImageDraw.Draw(image)
        width = max(1, round(min(image.size) / 200))
        for b in _boxes(preds, k):
            colour = _COLOURS[preds.classes.index(b.label) % len(_COLOURS)]
            pen.rectangle((b.x0, b.y0, b.x1, b.y1), outline=colour, width=width)
            text = f"{b.label} {b.score:.2f}"
            left, top, right, bottom = pen.textbbox((b.x0, b.y0), text)
            y = max(0.0, b.y0 - (bottom - top) - 2)
            pen.rectangle((b.x0, y, b.x0 + (right - left) + 4, y + (bottom - top) + 2), fill=colour)
            pen.text((b.x0 + 2, y), text, fill="white")
        target = out_dir / PurePosixPath(im.name).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, quality=90)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


__all__ = [
    "DRAW_DIR",
    "PREDICT_FORMAT",
    "PREDICT_FORMATS",
    "InputImage",
    "PredictResult",
    "Predictions",
    "collect_images",
    "draw_predictions",
    "predict",
    "run_detector",
    "write_predictions",
]
