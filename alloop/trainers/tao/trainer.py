"""The TAO trainer: YOLOv4 trained and run in TAO's container behind alloop's Trainer protocol."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from alloop import atomic
from alloop.boxes import Detections
from alloop.errors import ConfigError, LabelError, TrainerError
from alloop.trainers.base import Example, TrainResult, config_from_mapping
from alloop.trainers.tao.command import check_mounts_file, tao_command, write_mounts_file
from alloop.trainers.tao.config import NETWORKS, TaoConfig
from alloop.trainers.tao.export import EXPORT_OPSET, export_args, export_dir, read_exported
from alloop.trainers.tao.labels import check_tao_sees_the_labels
from alloop.trainers.tao.paths import check_tao_path
from alloop.trainers.tao.record import (
    SIDECAR_FORMAT,
    SIDECAR_SUFFIX,
    digest_run,
    jsonable,
    read_sidecar,
    reuse_run,
)
from alloop.trainers.tao.results import (
    check_run_finished,
    detections_from_boxes,
    find_checkpoints,
    pick_checkpoint,
    read_training_log,
    validation_map50,
)
from alloop.trainers.tao.runner import run_tao
from alloop.trainers.tao.spec import render_spec, spec_context
from alloop.trainers.tao.staging import (
    TRAIN_SUFFIXES,
    common_root,
    inference_dir,
    make_tao_readable,
    stage_image,
)
from alloop.trainers.tao.start import choose_anchors, starting_point

log = logging.getLogger(__name__)


class TaoTrainer:
    """NVIDIA TAO YOLOv4 behind alloop's Trainer protocol (the container does the work)."""

    name: ClassVar[str] = "tao"
    Config: ClassVar[type] = TaoConfig

    def __init__(self, config: TaoConfig | Mapping[str, Any], classes: Sequence[str], device: str = "auto"):
        if isinstance(config, Mapping):
            config = config_from_mapping(TaoConfig, config, where="alloop.toml [trainer.options] (trainer tao)")
        if not isinstance(config, TaoConfig):
            raise ConfigError(f"tao trainer: expected a TaoConfig, got {type(config).__name__}")
        classes = tuple(classes)
        if not classes or not all(isinstance(c, str) and c.strip() for c in classes):
            raise ConfigError(f"tao trainer: classes must be non-empty names, got {list(classes)}")
        from alloop.formats.kitti import kitti_name

        kitti = [kitti_name(c) for c in classes]
        bad = [c for c, k in zip(classes, kitti) if '"' in k or "\\" in k]
        if bad:
            raise ConfigError(f"tao trainer: class name {bad[0]!r} has a quote or backslash, which TAO's "
                              "spec cannot hold; rename the class")
        if len(set(kitti)) != len(kitti):
            raise ConfigError(
                f"tao trainer: classes {list(classes)} collide once lower-cased with spaces as '_' (TAO's "
                "class names); rename one"
            )
        self.config = config
        self.classes = classes
        self.kitti_names = tuple(kitti)
        # TAO runs on the GPUs its container sees (gpus / gpu_index), whatever torch's device is here.
        self.device = device

    # -- training ------------------------------------------------------------------------------

    def train(
        self,
        train: Sequence[Example],
        val: Sequence[Example],
        out_dir: Path,
        *,
        resume_from: Path | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> TrainResult:
        """Export KITTI, render the spec, run ``<network> train``; returns TAO's model file."""
        cfg = self.config
        if not train:
            raise TrainerError("tao trainer: no training images; label some images first")
        # Real paths: the launcher mounts real paths, so a symlinked path would not exist in the container.
        out_dir = Path(os.path.realpath(out_dir))
        check_tao_path(out_dir, "checkpoint directory")
        out_dir.mkdir(parents=True, exist_ok=True)
        data_dir = out_dir / "data"
        self._export(train, val, data_dir)
        make_tao_readable(data_dir / "train" / "images", TRAIN_SUFFIXES)
        has_val = (data_dir / "val" / "labels").is_dir()
        if not has_val:
            log.warning("tao: no held-out images; TAO's in-training mAP is measured on the training images")
        val_dir = data_dir / ("val" if has_val else "train")
        if has_val:
            make_tao_readable(data_dir / "val" / "images", TRAIN_SUFFIXES)

        start = starting_point(cfg, self.classes, resume_from)
        resume_path, pretrain_path, start_epoch = start.resume_model, start.pretrain_model, start.epoch
        if start.anchors is None:
            anchors = choose_anchors(cfg, train, seed)
        else:  # TAO keeps a model's anchors in its layers; the spec must give the encoder the same
            anchors = start.anchors
            if cfg.anchors != "default":
                log.info("tao: resuming keeps the anchors %s was built with; anchors=%s takes effect in a "
                         "fresh or resume_mode=pretrain run", resume_path, cfg.anchors)
        num_epochs = start_epoch + cfg.epochs
        context = spec_context(cfg, self.kitti_names, train_dir=data_dir / "train", val_dir=val_dir,
                               anchors=anchors, num_epochs=num_epochs, seed=seed,
                               resume_model_path=resume_path, pretrain_model_path=pretrain_path)
        spec = render_spec(context, network=cfg.network, template=cfg.spec_template)
        spec_file = out_dir / "specs" / "train.txt"
        spec_file.parent.mkdir(parents=True, exist_ok=True)
        spec_file.write_text(spec, encoding="utf-8")
        check_tao_sees_the_labels(spec, data_dir / "train" / "labels", self.classes, self.kitti_names, train,
                                  spec_file=spec_file)

        results = out_dir / "results"
        digest = digest_run(spec, data_dir)
        done = out_dir / "train_done.json"
        reused = reuse_run(done, digest)
        if reused is None:
            done.unlink(missing_ok=True)
            if results.exists():
                shutil.rmtree(results)  # a half-finished run: its partial checkpoints must not be picked up
            results.mkdir(parents=True)
            args = ["-e", str(spec_file), "-r", str(results)]
            if cfg.key:
                args += ["-k", cfg.key]
            args += ["--gpus", str(cfg.gpus)]
            if cfg.gpu_index is not None and cfg.runner == "launcher":
                args += ["--gpu_index", *(str(i) for i in cfg.gpu_index)]
            args += list(cfg.extra_args)
            mounts = [out_dir, *(p.parent for p in (resume_path, pretrain_path) if p is not None)]
            cmd, env = self._command("train", args, mounts, out_dir)
            run_tao(cmd, what="train", log_file=out_dir / "logs" / "train.log", config=cfg, env=env,
                    progress=progress)
        checkpoints = find_checkpoints(results / "weights")
        if not checkpoints:
            raise TrainerError(
                f"TAO train finished but wrote no model in {results / 'weights'}: the launcher exits 0 also "
                f"when it fails before starting the task; its error is in {out_dir / 'logs' / 'train.log'}"
            )
        csv_log = results / f"{NETWORKS[cfg.network].prefix}_training_log_{self._arch_name()}.csv"
        history = read_training_log(csv_log)
        check_run_finished(checkpoints, history, num_epochs, spec=spec,
                           log_file=out_dir / "logs" / "train.log")
        epoch = pick_checkpoint(checkpoints, history, cfg.checkpoint)
        checkpoint = checkpoints[epoch]
        tao_map = validation_map50(history, epoch)
        sidecar = {
            "format": SIDECAR_FORMAT,
            "classes": list(self.classes),
            "kitti_names": list(self.kitti_names),
            "network": cfg.network,
            "arch": cfg.arch,
            "nlayers": cfg.nlayers,
            "epoch": epoch,
            "anchors": [list(p) for p in anchors],  # built into the model: a resumed run must keep them
            "spec": context,
            "config": jsonable(dataclasses.asdict(cfg)),
            "tao_val_map50": tao_map,
            "val_is_train": not has_val,
        }
        atomic.write_json(Path(str(checkpoint) + SIDECAR_SUFFIX), sidecar)
        if reused is None:
            atomic.write_json(done, {"digest": digest, "checkpoint": checkpoint.name})
        steps_per_epoch = math.ceil(len(train) / (cfg.batch_size * cfg.gpus))
        return TrainResult(
            checkpoint=checkpoint,
            epochs=epoch - start_epoch,
            steps=(epoch - start_epoch) * steps_per_epoch,
            best_metric=None,  # TAO measures mAP@0.5 only; alloop's mAP@[.5:.95] comes from evaluate()
            history=tuple(history),
            extra={"spec": str(spec_file), "log": str(out_dir / "logs" / "train.log"),
                   "tao_val_map50": tao_map, "start_epoch": start_epoch, "reused": reused is not None},
        )

    def _export(self, train: Sequence[Example], val: Sequence[Example], data_dir: Path) -> None:
        from alloop import formats

        root, anns, val_anns = common_root(train, val, data_dir)
        try:
            formats.export_training_set("kitti", anns, data_dir, image_root=root, classes=self.classes,
                                        val=val_anns, layout="tao")
        except LabelError as exc:
            raise TrainerError(f"tao trainer: cannot export the labeled images as KITTI: {exc}") from exc

    def _arch_name(self) -> str:
        cfg = self.config
        depths = NETWORKS[cfg.network].archs[cfg.arch]
        return f"{cfg.arch}{cfg.nlayers}" if depths is not None else cfg.arch

    def _command(
        self, task: str, args: list[str], mounts: list[Path], work: Path
    ) -> tuple[list[str], dict[str, str]]:
        cfg = self.config
        for p in mounts:
            check_tao_path(p, "mounted")
        env: dict[str, str] = {}
        if cfg.runner == "launcher":
            if cfg.mounts_file is None:
                env["LAUNCHER_MOUNTS"] = str(write_mounts_file(work / "tao_mounts.json", mounts,
                                                               docker_user=cfg.docker_user))
            else:
                path = Path(os.path.expanduser(cfg.mounts_file))
                check_mounts_file(path, mounts)
                env["LAUNCHER_MOUNTS"] = str(path)
        return tao_command(cfg, task, args, mounts=mounts), env

    # -- inference -----------------------------------------------------------------------------

    def predict(
        self,
        checkpoint: Path,
        images: Sequence[Path],
        *,
        score_threshold: float = 0.05,
        hflip: bool = False,
        progress: bool = True,
    ) -> list[Detections]:
        """Run ``<network> inference`` on ``images``; Detections per image in original pixels."""
        cfg = self.config
        checkpoint = Path(os.path.realpath(checkpoint))
        info = self.model_record(checkpoint, "predicting")
        if not images:
            return []
        work = inference_dir(checkpoint) / ("hflip" if hflip else "plain")
        check_tao_path(work, "inference directory")
        if work.exists():
            shutil.rmtree(work)
        staged = work / "images"
        staged.mkdir(parents=True)
        (work / "no_labels").mkdir()
        sizes = [stage_image(Path(p), staged / f"{i:06d}", hflip=hflip) for i, p in enumerate(images)]

        spec_file = self._model_spec(info, work / "inference.txt", images=staged, labels=work / "no_labels")
        results = work / "results"
        threshold = min(max(float(score_threshold), cfg.nms_confidence), 0.999)
        args = ["-m", str(checkpoint), "-e", str(spec_file), "-i", str(staged), "-r", str(results),
                "-t", repr(threshold)]
        if cfg.key:
            args += ["-k", cfg.key]
        if cfg.gpu_index is not None and cfg.runner == "launcher":
            args += ["--gpu_index", str(cfg.gpu_index[0])]
        cmd, env = self._command("inference", args, [work, checkpoint.parent], work)
        run_tao(cmd, what="inference", log_file=work / "inference.log", config=cfg, env=env,
                progress=progress)

        from alloop import formats

        labels_dir = results / "labels"
        try:
            found = (formats.read_kitti_detections(labels_dir, classes=self.classes)
                     if labels_dir.is_dir() else {})
        except LabelError as exc:
            raise TrainerError(f"TAO inference output is not readable: {exc}") from exc
        out = []
        for i, (path, (w, h)) in enumerate(zip(images, sizes)):
            key = f"{i:06d}"
            if key not in found:
                raise TrainerError(
                    f"TAO inference wrote no labels for {path} ({labels_dir / (key + '.txt')} missing); "
                    f"see {work / 'inference.log'}"
                )
            out.append(detections_from_boxes(found[key], self.classes, w, h, hflip=hflip,
                                             score_threshold=score_threshold))
        return out

    # -- export --------------------------------------------------------------------------------

    def export(self, checkpoint: Path, out_file: Path, *, opset: int = EXPORT_OPSET,
               score_threshold: float | None = None, progress: bool = False) -> dict[str, Any]:
        """Run TAO's ``<network> export`` of ``checkpoint`` to ONNX and move the file to ``out_file``.

        The model's NMS keeps boxes scoring above max(``score_threshold``, nms_confidence). Returns
        what the file holds (:func:`.export.read_exported`), the spec values it was built from, and
        where TAO's DeepStream files (labels.txt, nvinfer_config.txt) are. A failure leaves no
        ``out_file``.
        """
        cfg = self.config
        checkpoint = Path(os.path.realpath(checkpoint))
        info = self.model_record(checkpoint, "exporting")
        work = export_dir(checkpoint)
        check_tao_path(work, "export directory")
        if work.exists():
            shutil.rmtree(work)  # TAO refuses to overwrite its output
        (work / "no_data").mkdir(parents=True)
        threshold = cfg.nms_confidence if score_threshold is None else max(score_threshold, cfg.nms_confidence)
        spec_file = self._model_spec(info, work / "export.txt", images=work / "no_data", labels=work / "no_data",
                                     nms_confidence=min(threshold, 0.999))
        onnx_file, log_file = work / "model.onnx", work / "export.log"
        args = export_args(checkpoint, spec_file, onnx_file, work / "results", key=cfg.key, opset=opset,
                           gpu_index=cfg.gpu_index if cfg.runner == "launcher" else None)
        cmd, env = self._command("export", args, [work, checkpoint.parent], work)
        run_tao(cmd, what="export", log_file=log_file, config=cfg, env=env, progress=progress)
        graph = read_exported(onnx_file, log_file)
        with atomic.atomic_path(Path(out_file), size=onnx_file.stat().st_size) as tmp:
            shutil.copyfile(onnx_file, tmp)
        spec = dict(info["spec"], nms_confidence=min(threshold, 0.999), nms_iou=cfg.nms_iou, top_k=cfg.top_k)
        return {"graph": graph, "spec": spec, "network": info["network"], "epoch": info["epoch"],
                "kitti_names": info["kitti_names"], "tao_val_map50": info.get("tao_val_map50"),
                "deepstream": {name: str(work / name) for name in ("labels.txt", "nvinfer_config.txt")
                               if (work / name).is_file()},
                "log": str(log_file)}

    # -- a trained model -----------------------------------------------------------------------

    def model_record(self, checkpoint: Path, doing: str) -> dict[str, Any]:
        """The model's sidecar, refused when it was trained on other classes than the project's."""
        info = read_sidecar(checkpoint, required=True)
        if info["classes"] != list(self.classes):
            raise TrainerError(
                f"{checkpoint} was trained on classes {info['classes']}, "
                f"the project has {list(self.classes)}; "
                f"train again (alloop step) before {doing}"
            )
        return info

    def _model_spec(self, info: Mapping[str, Any], spec_file: Path, *, images: Path, labels: Path,
                    nms_confidence: float | None = None) -> Path:
        """The training spec minus its starting model, with this config's NMS, written to ``spec_file``.

        TAO's spec loader wants KITTI data sources even for inference and export (it reads none),
        so they point at ``images``/``labels``, not at the training export (which may have moved
        with the project).
        """
        cfg = self.config
        context = dict(info["spec"])
        context.update(resume_model_path="", pretrain_model_path="",
                       nms_confidence=cfg.nms_confidence if nms_confidence is None else nms_confidence,
                       nms_iou=cfg.nms_iou, top_k=cfg.top_k, eval_batch_size=cfg.eval_batch_size,
                       train_images=str(images), train_labels=str(labels),
                       val_images=str(images), val_labels=str(labels))
        spec_file.write_text(render_spec(context, network=info["network"], template=cfg.spec_template),
                             encoding="utf-8")
        return spec_file
