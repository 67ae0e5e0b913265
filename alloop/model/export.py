"""``alloop export-model``: one iteration's detector as a file that runs without alloop.

ONNX (``torch.onnx.export``, opset 17, dynamic image size) or TorchScript (``torch.jit.script``) of
:class:`alloop.model.deploy.DeployableDetector`, with ``<file>.json`` beside it (``model.json`` for
``--out model.onnx``): classes, input and its pre-processing, thresholds, the source iteration and its
held-out mAP, training counts, versions. Both files are written under temporary names and renamed
at the end, so a failed export leaves nothing behind.

The TAO trainer's checkpoints are exported by TAO itself: ``<network> export`` runs in TAO's
container the way training did (:meth:`alloop.trainers.tao.TaoTrainer.export`), to ONNX only, and
the same ``model.json`` records TAO's input, pre-processing (outside that model) and outputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alloop import __version__, atomic
from alloop.errors import ConfigError, TrainerError
from alloop.images import sha256_of
from alloop.model.registry import ChosenModel, choose_model
from alloop.project import Project
from alloop.report.model_card import gather_model_card
from alloop.store import now

EXPORT_FORMATS = ("onnx", "torchscript")
EXPORT_FORMAT = "onnx"  # when --format is not given
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}  # of the default --out
ONNX_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "labels", "scores")


@dataclass(frozen=True)
class ExportResult:
    """The exported file, its metadata file and what they hold."""

    path: Path
    metadata_path: Path
    format: str
    chosen: ChosenModel
    metadata: Mapping[str, Any]


def metadata_path_for(out: Path) -> Path:
    """``model.onnx`` → ``model.json`` beside it."""
    return Path(out).with_suffix(".json")


def export_model(
    project_dir: Path,
    *,
    fmt: str | None = None,
    out: Path | None = None,
    iteration: int | None = None,
    score_threshold: float | None = None,
    force: bool = False,
    announce: Callable[[ChosenModel], None] | None = None,
) -> ExportResult:
    """Export the chosen iteration's detector (default: best held-out mAP@0.5) to ``out``.

    ``fmt`` None: ONNX; ``out`` None: ``PROJECT/artifacts/models/iteration-N.onnx`` (``.pt``).
    ``announce`` is told the chosen model before the export runs.
    """
    fmt = fmt or EXPORT_FORMAT
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown model format {fmt!r}; --format takes one of {', '.join(EXPORT_FORMATS)}")
    if out is not None:
        _check_out(Path(out), force)
    if score_threshold is not None and not 0.0 <= score_threshold < 1.0:
        raise ConfigError(f"--score-threshold must be in [0, 1), got {score_threshold}")
    if fmt == "onnx":
        _require_onnx()

    with Project.open(Path(project_dir), lock=False) as project:
        chosen = choose_model(project, iteration)
        if project.config.trainer == "tao":
            if fmt != "onnx":
                raise ConfigError(f"--format {fmt}: the tao trainer's models export to onnx only (TAO's own "
                                  "export); use --format onnx")
            return _export_tao(project, chosen, out, force, score_threshold, announce)
        if project.config.trainer != "torchvision":
            raise TrainerError(
                f"export-model exports torchvision detectors; this project's trainer is "
                f"'{project.config.trainer}': use that trainer's own export tool"
            )
        if out is None:
            out = project.artifacts / "models" / f"iteration-{chosen.model.iteration}{SUFFIXES[fmt]}"
        out = Path(out)
        _check_out(out, force)
        if announce is not None:
            announce(chosen)
        classes = tuple(project.store.classes())
        module = _deployable(chosen, classes, score_threshold)
        example = _example_image(project)
        meta = _metadata(project, chosen, classes, module, fmt, out)

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(out) as tmp:
        if fmt == "onnx":
            _write_onnx(module, example, tmp)
        else:
            _write_torchscript(module, tmp)
    meta["sha256"] = sha256_of(out)
    atomic.write_json(metadata_path_for(out), meta)
    return ExportResult(out, metadata_path_for(out), fmt, chosen, meta)


def _export_tao(project: Project, chosen: ChosenModel, out: Path | None, force: bool,
                score_threshold: float | None, announce: Callable[[ChosenModel], None] | None) -> ExportResult:
    """TAO's ``export`` of the chosen checkpoint (the container, as in training) and its ``model.json``."""
    from alloop.loop import build_trainer
    from alloop.trainers.tao.export import EXPORT_OPSET, NMS_PLUGIN, OUTPUTS, preprocessing

    if out is None:
        out = project.artifacts / "models" / f"iteration-{chosen.model.iteration}.onnx"
    out = Path(out)
    _check_out(out, force)
    classes = tuple(project.store.classes())
    trainer = build_trainer(project, classes, "cpu")
    trainer.model_record(chosen.model.checkpoint, "exporting")  # refused before the model is announced
    if announce is not None:
        announce(chosen)
    card = gather_model_card(project, chosen.model.iteration)
    tao = trainer.export(chosen.model.checkpoint, out, opset=EXPORT_OPSET, score_threshold=score_threshold)
    spec, graph = tao["spec"], tao["graph"]
    # TAO numbers classes in the order of their sorted lower-cased names (its labels.txt).
    by_kitti = dict(zip(tao["kitti_names"], classes))
    m = chosen.model
    meta = {
        "format": "onnx",
        "file": out.name,
        "exported_by": f"TAO {tao['network']} export (--target_opset {EXPORT_OPSET}); see {tao['log']}",
        "classes": [by_kitti[k] for k in sorted(by_kitti)],
        "input": {"name": next(iter(graph["inputs"])), "dtype": "float32", "shape": next(iter(graph["inputs"].values())),
                  "layout": "NCHW, BGR, prepared as preprocessing says"},
        "preprocessing_inside_model": None,
        "preprocessing": preprocessing(spec),
        "outputs": {name: OUTPUTS.get(name, "") for name in graph["outputs"]},
        "runtime": f"the graph ends in TensorRT's {NMS_PLUGIN} plugin: build an engine with `tao deploy "
                   f"{tao['network']} gen_trt_engine` or DeepStream; onnxruntime cannot run it",
        "score_threshold": float(spec["nms_confidence"]),
        "nms_threshold": float(spec["nms_iou"]),
        "detections_per_image": int(spec["top_k"]),
        "postprocessing": "TAO's per-class NMS inside the model (BatchedNMS); boxes x input width/height, "
                          "divided by the resize scale, are image pixels",
        "deepstream": tao["deepstream"],
        "source": {"project": str(project.root.resolve()), "iteration": m.iteration,
                   "checkpoint": project.relpath(m.checkpoint), "chosen": chosen.reason,
                   "architecture": f"{tao['network']} {spec['arch']}{spec['nlayers']}", "tao_epoch": tao["epoch"]},
        "metrics": {"heldout_map50": m.map50, "heldout_map": m.map, "tao_val_map50": tao["tao_val_map50"],
                    "names": {"heldout_map50": "COCO mAP@0.5 on the held-out labeled images (pycocotools)",
                              "heldout_map": "COCO mAP@[.5:.95] on the same images",
                              "tao_val_map50": "TAO's own validation mAP@0.5 at that epoch"}},
        "training": {"labeled_images": card.labeled, "train_images": card.train, "heldout_images": card.heldout,
                     "boxes_per_class": dict(card.boxes_train), "epochs": card.epochs, "steps": card.steps},
        "versions": {"alloop": __version__, "onnx_opset": graph["opset"]},
        "created_at": now(),
        "sha256": sha256_of(out),
    }
    try:
        atomic.write_json(metadata_path_for(out), meta)
    except BaseException:
        out.unlink(missing_ok=True)  # no model without its metadata
        raise
    return ExportResult(out, metadata_path_for(out), "onnx", chosen, meta)


def _check_out(out: Path, force: bool) -> None:
    if out.suffix.lower() == ".json":
        raise ConfigError(
            f"--out {out}: the metadata is written as {metadata_path_for(out).name}; name the model file .onnx or .pt"
        )
    for path in (out, metadata_path_for(out)):
        if path.exists() and not force:
            raise ConfigError(f"{path} already exists; choose another --out or pass --force to replace it")


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError(
            "ONNX export needs the onnx package: pip install 'alloop[onnx]' (onnx + onnxruntime)"
        ) from None


def _deployable(chosen: ChosenModel, classes: tuple[str, ...], score_threshold: float | None):
    from alloop.model.deploy import DeployableDetector
    from alloop.trainers.torchvision import load_detector

    detector = load_detector(chosen.model.checkpoint, "cpu")
    n_out = detector.roi_heads.box_predictor.cls_score.out_features
    if n_out != len(classes) + 1:
        raise TrainerError(
            f"{chosen.model.checkpoint} predicts {n_out - 1} classes but the project has {len(classes)} "
            f"({', '.join(classes)}); export the iteration trained after the classes changed (--iteration)"
        )
    if score_threshold is not None:
        detector.roi_heads.score_thresh = float(score_threshold)
    return DeployableDetector(detector)


def _example_image(project: Project):
    """A real image of the project (its pixels steer nothing: every size and box count is dynamic)."""
    import torch

    from alloop import images as imagelib

    for row in project.store.images():
        if row.state == "ok":
            try:
                img = imagelib.open_rgb(project.image_root / row.path)
            except (*imagelib.DECODE_ERRORS, FileNotFoundError):
                continue
            return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
    return torch.full((240, 320, 3), 77, dtype=torch.uint8)


def _write_onnx(module, example, path: Path) -> None:
    import onnx
    import torch

    try:
        with warnings.catch_warnings():
            # Tracing warns about every Python int it sees; the exporter handles torchvision's.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_axes={INPUT_NAME: {0: "height", 1: "width"},
                              **{name: {0: "detections"} for name in OUTPUT_NAMES}},
            )
        onnx.checker.check_model(str(path))
    except Exception as exc:  # the exporter raises many types; the user needs one line
        raise TrainerError(f"ONNX export failed: {' '.join(str(exc).split())[:300]}") from exc


def _write_torchscript(module, path: Path) -> None:
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.script(module)
        scripted.save(str(path))
    except Exception as exc:
        raise TrainerError(f"TorchScript export failed: {' '.join(str(exc).split())[:300]}") from exc


def _architecture(project: Project, classes: tuple[str, ...]) -> str:
    """The detector's name as the trainer's config resolves it (its default when alloop.toml has none)."""
    from alloop.loop import build_trainer

    return str(build_trainer(project, classes, "cpu").config.model)


def _metadata(project: Project, chosen: ChosenModel, classes: tuple[str, ...], module, fmt: str,
              out: Path) -> dict[str, Any]:
    import torch
    import torchvision

    det = module.detector
    transform, heads = det.transform, det.roi_heads
    m = chosen.model
    card = gather_model_card(project, m.iteration)  # the same counts as the iteration's model card
    return {
        "format": fmt,
        "file": out.name,
        "classes": list(classes),
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "shape": ["height", "width", 3],
            "layout": "HWC, RGB, as decoded (EXIF orientation applied), any size",
        },
        "preprocessing_inside_model": {
            "scale": "x / 255",
            "resize": {"min_size": list(transform.min_size), "max_size": transform.max_size,
                       "rule": "shorter side to min_size unless the longer side would pass max_size"},
            "normalize": {"mean": list(transform.image_mean), "std": list(transform.image_std)},
        },
        "outputs": {
            "boxes": "float32 (N, 4): x0, y0, x1, y1 in input image pixels",
            "labels": "int64 (N,): index into classes",
            "scores": "float32 (N,): probability of the label",
        },
        "score_threshold": float(heads.score_thresh),
        "nms_threshold": float(heads.nms_thresh),
        "detections_per_image": int(heads.detections_per_img),
        "postprocessing": "one box per proposal (its most probable class), score > threshold, class-aware NMS",
        "source": {
            "project": str(project.root.resolve()),
            "iteration": m.iteration,
            "checkpoint": project.relpath(m.checkpoint),
            "chosen": chosen.reason,
            "architecture": _architecture(project, classes),
        },
        "metrics": {
            "heldout_map50": m.map50,
            "heldout_map": m.map,
            "names": {"heldout_map50": "COCO mAP@0.5 on the held-out labeled images (pycocotools)",
                      "heldout_map": "COCO mAP@[.5:.95] on the same images"},
        },
        "training": {"labeled_images": card.labeled, "train_images": card.train, "heldout_images": card.heldout,
                     "boxes_per_class": dict(card.boxes_train), "epochs": card.epochs, "steps": card.steps},
        "versions": {"alloop": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
                     **({"onnx_opset": ONNX_OPSET} if fmt == "onnx" else {})},
        "created_at": now(),
    }


__all__ = ["EXPORT_FORMAT", "EXPORT_FORMATS", "ExportResult", "export_model", "metadata_path_for"]
