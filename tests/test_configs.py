"""Every model-zoo config: instantiates, matches the paper, follows the recipe, trains (#3)."""

import glob
import os

import pytest
import torch

from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from pvt_fpn_d2 import PVTv2Backbone, add_pvt_v2_config, build_optimizer
from pvt_fpn_d2.model_zoo import PUBLISHED

from .conftest import REPO, make_batch

COCO_CONFIGS = sorted(glob.glob(str(REPO / "configs/COCO/*.py")))
YAML_CONFIGS = sorted(glob.glob(str(REPO / "configs/COCO-yaml/[!B]*.yaml")))

IMAGENET_RGB_MEAN = [123.675, 116.28, 103.53]
IMAGENET_RGB_STD = [58.395, 57.12, 57.375]


def _name(path):
    return os.path.basename(path)[: -len(".py")]


def _load(path):
    return LazyConfig.load(path)


def test_expected_configs_exist():
    names = {_name(p) for p in COCO_CONFIGS}
    for v in ["b0", "b1", "b2", "b2_li", "b3", "b4", "b5"]:
        assert f"mask_rcnn_pvt_v2_{v}_fpn_1x" in names
        assert f"retinanet_pvt_v2_{v}_fpn_1x" in names
    assert {"faster_rcnn_pvt_v2_b2_fpn_1x", "cascade_mask_rcnn_pvt_v2_b2_fpn_3x"} <= names
    yaml_names = {os.path.basename(p) for p in YAML_CONFIGS}
    assert {"mask_rcnn_pvt_v2_b0_fpn_1x.yaml", "mask_rcnn_pvt_v2_b2_fpn_1x.yaml"} <= yaml_names


@pytest.mark.parametrize("path", COCO_CONFIGS, ids=_name)
def test_config_instantiates_matches_published_size_trains_and_infers(path):
    cfg = _load(path)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    bottom_up = model.backbone.bottom_up
    assert isinstance(bottom_up, PVTv2Backbone)
    variant = _name(path).split("pvt_v2_")[1].rsplit("_fpn", 1)[0]
    assert bottom_up.name == f"pvt_v2_{variant}"
    assert cfg.train.init_checkpoint == f"timm://pvt_v2_{variant}"
    n = sum(p.numel() for p in model.parameters()) / 1e6
    published = PUBLISHED.get(_name(path))
    if published and published.params_m:  # the docs: "within 0.05M for every published"
        assert abs(n - published.params_m) <= 0.05, (n, published)

    # one training step: finite losses, a gradient for every trainable parameter
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    assert isinstance(optimizer, torch.optim.AdamW)
    instantiate(cfg.lr_multiplier)
    batch = make_batch(num_images=1, size=(96, 128))
    model.train()
    with EventStorage():
        losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total)
    # (the Cascade configs: a mask loss per stage, loss_mask_stage0 ...)
    assert any(k.startswith("loss_mask") for k in losses) == ("mask" in _name(path))
    optimizer.zero_grad()
    total.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    optimizer.step()

    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": batch[0]["image"], "height": 192, "width": 256}])
    assert out["instances"].image_size == (192, 256)
    assert out["instances"].has("pred_masks") == ("mask" in _name(path))


@pytest.mark.parametrize("path", COCO_CONFIGS, ids=_name)
def test_config_follows_the_official_recipe(path):
    cfg = _load(path)
    name = _name(path)
    bottom_up = cfg.model.backbone.bottom_up
    assert bottom_up.drop_path_rate == 0.1 and bottom_up.freeze_at == 0
    assert cfg.model.pixel_mean == IMAGENET_RGB_MEAN and cfg.model.pixel_std == IMAGENET_RGB_STD
    assert cfg.model.input_format == "RGB"
    assert cfg.dataloader.train.mapper.image_format == "RGB"
    assert cfg.dataloader.test.mapper.image_format == "RGB"
    test_resize = cfg.dataloader.test.mapper.augmentations[0]
    assert (test_resize.short_edge_length, test_resize.max_size) == (800, 1333)
    small = any(v in name for v in ("_b4_", "_b5_"))
    batch = 8 if small else 16
    assert cfg.dataloader.train.total_batch_size == batch
    epochs = 36 if "_3x" in name else 12
    # 7500 iterations of 16 images per COCO epoch (1x = 90k iterations)
    assert cfg.train.max_iter == epochs * 7500 * 16 // batch
    sched = cfg.lr_multiplier
    assert sched.warmup_length * cfg.train.max_iter == pytest.approx(500)
    assert sched.warmup_factor == 0.001
    decay = [27, 33] if "_3x" in name else [8, 11]
    ipe = 7500 * 16 // batch
    assert list(sched.scheduler.milestones) == [e * ipe for e in decay]
    base_lr = 2e-4 if name.startswith(("mask", "faster", "cascade")) else 1e-4
    if "_3x" in name:
        assert cfg.optimizer.lr == 1e-4 and cfg.optimizer.weight_decay == 0.05
        assert cfg.optimizer.params.weight_decay_norm == 0.0
        assert cfg.dataloader.train.mapper.recompute_boxes
    else:
        assert cfg.optimizer.lr == pytest.approx(base_lr / (1.4 if small else 1))
        assert cfg.optimizer.weight_decay == 1e-4
        train_resize = cfg.dataloader.train.mapper.augmentations[0]
        assert (train_resize.short_edge_length, train_resize.max_size) == (800, 1333)


@pytest.mark.parametrize("path", COCO_CONFIGS, ids=_name)
def test_config_is_serialisable(path, tmp_path):
    cfg = _load(path)
    out = tmp_path / "config.yaml"
    LazyConfig.save(cfg, str(out))
    again = LazyConfig.load(str(out))
    assert again.model.backbone.bottom_up.name == cfg.model.backbone.bottom_up.name
    assert again.train.max_iter == cfg.train.max_iter


def test_retinanet_p6_is_computed_from_c5():
    for variant, c5 in [("b0", 256), ("b2", 512)]:
        cfg = _load(str(REPO / f"configs/COCO/retinanet_pvt_v2_{variant}_fpn_1x.py"))
        cfg.model.backbone.bottom_up.drop_path_rate = 0.0
        backbone = instantiate(cfg.model.backbone)
        assert backbone.top_block.in_feature == "res5"
        assert backbone.top_block.p6.in_channels == c5
        assert list(backbone.output_shape()) == ["p3", "p4", "p5", "p6", "p7"]


@pytest.mark.parametrize("path", YAML_CONFIGS, ids=os.path.basename)
def test_yacs_config_builds_same_model_as_lazy_config(path):
    cfg = get_cfg()
    add_pvt_v2_config(cfg)
    cfg.merge_from_file(path)
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    assert isinstance(model.backbone.bottom_up, PVTv2Backbone)
    assert cfg.INPUT.FORMAT == "RGB" and list(cfg.MODEL.PIXEL_STD) == IMAGENET_RGB_STD
    assert cfg.MODEL.WEIGHTS == f"timm://{cfg.MODEL.PVT.NAME}"
    lazy = _load(str(REPO / "configs/COCO" / os.path.basename(path).replace(".yaml", ".py")))
    lazy_model = instantiate(lazy.model)
    # the same parameters, and with the same weights the same outputs: a different wiring with
    # equal shapes (P6 from P5 instead of C5, another anchor set, other pixel statistics or test
    # thresholds) shows in the features or detections
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(model) == shapes(lazy_model)
    model.load_state_dict(lazy_model.state_dict())
    model.eval(), lazy_model.eval()
    # random weights score every class about 1/80: keep all detections (equal thresholds first)
    scoring = [
        getattr(m, "roi_heads", None) and m.roi_heads.box_predictor for m in (model, lazy_model)
    ]
    scoring = [s or m for s, m in zip(scoring, (model, lazy_model))]
    assert scoring[0].test_score_thresh == scoring[1].test_score_thresh
    for s in scoring:
        s.test_score_thresh = 0.0
        if hasattr(s, "test_topk_per_image"):  # R-CNN: fewer masks to predict and paste
            s.test_topk_per_image = 10
    image = make_batch(num_images=1, size=(96, 128))[0]["image"]
    with torch.no_grad():
        x = torch.randn(1, 3, 96, 128)
        ours, theirs = model.backbone(x), lazy_model.backbone(x)
        assert list(ours) == list(theirs)
        for f in ours:
            torch.testing.assert_close(ours[f], theirs[f], rtol=0, atol=0)
        (a,), (b,) = (
            m([{"image": image, "height": 96, "width": 128}]) for m in (model, lazy_model)
        )
    a, b = a["instances"], b["instances"]
    assert len(a) == len(b) > 0
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, rtol=0, atol=0)
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=0)
    assert isinstance(build_optimizer(cfg, model), torch.optim.AdamW)

    model.train()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    with EventStorage():
        losses = model(make_batch(num_images=1, size=(96, 128)))
    assert torch.isfinite(sum(losses.values()))


def test_the_backbone_is_declared_once():
    """Every model base takes PVT-v2 from configs/common/models/pvt_v2_backbone.py."""
    models = REPO / "configs/common/models"
    declared = [p.name for p in sorted(models.glob("*.py")) if "L(PVTv2Backbone)" in p.read_text()]
    assert declared == ["pvt_v2_backbone.py"]
    base = LazyConfig.load(str(models / "pvt_v2_backbone.py"))  # nothing but helpers in it
    assert "model" not in base
    for name, features in [
        ("mask_rcnn_pvt_v2_fpn.py", ["res2", "res3", "res4", "res5"]),
        ("retinanet_pvt_v2_fpn.py", ["res3", "res4", "res5"]),
        ("sem_seg_pvt_v2_fpn.py", ["res2", "res3", "res4", "res5"]),
    ]:
        bottom_up = LazyConfig.load(str(models / name)).model.backbone.bottom_up
        assert bottom_up.out_features == features
        assert (bottom_up.name, bottom_up.drop_path_rate, bottom_up.freeze_at) == (
            "pvt_v2_b2",
            0.1,
            0,
        )
