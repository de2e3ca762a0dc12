"""UPerNet on the PVT-v2 stages (#17): shapes for every variant, the layer count, training, the
ADE20K recipe, and train_net.py on the synthetic config."""

import json

import numpy as np
import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import SemanticSegmentor

from pvt_fpn_d2 import PVT_V2_VARIANTS, PVTv2Backbone
from pvt_fpn_d2.modeling import UPerNetHead, pvt_v2_output_shape

from .conftest import REPO, run_train_net, train_steps
from pvt_fpn_d2.data import generate_synthetic_coco, register_sem_seg_folder

from .test_semantic import CLASSES, MEAN, STD, _evaluate, _mapped

CONFIGS = REPO / "configs" / "SemSeg"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """8 train / 3 val synthetic images of 96 px with label PNGs, registered for this module."""
    root = tmp_path_factory.mktemp("upernet")
    paths = generate_synthetic_coco(str(root), num_train=8, num_val=3, image_size=96)
    for split in ("train", "val"):
        register_sem_seg_folder(
            f"upernet_{split}", paths[split]["image_root"], paths[split]["sem_seg_root"], CLASSES
        )
    return paths


def _features(shapes, size=(200, 249), batch=2):
    """Backbone-like features of an input of ``size`` padded to 32: stride s -> size / s."""
    h, w = (-(-size[0] // 32) * 32, -(-size[1] // 32) * 32)
    g = torch.Generator().manual_seed(0)
    return {
        k: torch.randn(batch, s["channels"], h // s["stride"], w // s["stride"], generator=g)
        for k, s in shapes.items()
    }


@pytest.mark.parametrize("variant", PVT_V2_VARIANTS)
def test_output_shapes_for_every_variant(variant):
    shapes = pvt_v2_output_shape(variant)
    assert [s["stride"] for s in shapes.values()] == [4, 8, 16, 32]
    head = UPerNetHead(shapes, num_classes=7, channels=32, aux_channels=16).eval()
    feats = _features(shapes)
    with torch.no_grad():
        logits, losses = head(feats)
    assert logits.shape == (2, 7, 224, 256) and losses == {}  # padded 200x249, stride 4 x 4
    head.train()
    targets = torch.randint(0, 7, (2, 224, 256))
    targets[:, :10] = 255
    none, losses = head(feats, targets)
    assert none is None and set(losses) == {"loss_sem_seg", "loss_sem_seg_aux"}
    assert all(torch.isfinite(v) for v in losses.values())


def test_whole_model_on_an_odd_size():
    torch.manual_seed(0)
    backbone = PVTv2Backbone("pvt_v2_b0", drop_path_rate=0.0)
    head = UPerNetHead(backbone.output_shape(), num_classes=5, channels=32, aux_channels=16)
    model = SemanticSegmentor(backbone=backbone, sem_seg_head=head, pixel_mean=MEAN, pixel_std=STD)
    with torch.no_grad():
        out = model.eval()([{"image": torch.zeros(3, 200, 249, dtype=torch.uint8)}])
    assert out[0]["sem_seg"].shape == (5, 200, 249)


def test_parameters_match_a_hand_count_of_the_layers():
    # b0 stages: 32, 64, 160, 256 channels; head C = 64, aux 16, 5 classes, BN (weight + bias)
    c_in, C, A, K, scales = [32, 64, 160, 256], 64, 16, 5, 4

    def conv(i, o, k):  # conv without bias + BN
        return i * o * k * k + 2 * o

    hand = scales * conv(c_in[3], C, 1)  # PPM
    hand += conv(c_in[3] + scales * C, C, 3)  # PPM bottleneck
    hand += sum(conv(c, C, 1) for c in c_in[:3])  # laterals
    hand += 3 * conv(C, C, 3)  # FPN convs
    hand += conv(4 * C, C, 3)  # fuse
    hand += C * K + K  # classifier
    hand += conv(c_in[2], A, 3) + A * K + K  # auxiliary FCN on res4
    head = UPerNetHead(pvt_v2_output_shape("pvt_v2_b0"), num_classes=K, channels=C, aux_channels=A)
    assert sum(p.numel() for p in head.parameters()) == hand
    no_aux = UPerNetHead(
        pvt_v2_output_shape("pvt_v2_b0"), num_classes=K, channels=C, aux_in_feature=None
    )
    assert sum(p.numel() for p in no_aux.parameters()) == hand - (conv(c_in[2], A, 3) + A * K + K)


def test_the_auxiliary_loss_trains_only_in_training_and_is_weighted():
    shapes = pvt_v2_output_shape("pvt_v2_b0")
    feats = _features(shapes, size=(64, 64), batch=2)  # BN after the 1x1 pool: 2 images
    targets = torch.randint(0, 3, (2, 64, 64))
    losses = {}
    for weight in (0.4, 0.8):
        torch.manual_seed(0)
        head = UPerNetHead(shapes, num_classes=3, channels=16, aux_loss_weight=weight, dropout=0)
        losses[weight] = head.train()(feats, targets)[1]["loss_sem_seg_aux"]
    torch.testing.assert_close(losses[0.8], 2 * losses[0.4])


def test_bad_arguments_are_clear_errors():
    shapes = pvt_v2_output_shape("pvt_v2_b0")
    with pytest.raises(ValueError, match="aux_in_feature='res6' is not an input feature"):
        UPerNetHead(shapes, num_classes=3, aux_in_feature="res6")
    with pytest.raises(ValueError, match="two or more of the input features"):
        UPerNetHead(shapes, num_classes=3, in_features=["res5"])
    with pytest.raises(ValueError, match="Unknown stage"):
        pvt_v2_output_shape("pvt_v2_b0", ["res6"])


def test_training_lowers_the_loss(tiny):
    torch.manual_seed(0)
    backbone = PVTv2Backbone("pvt_v2_b0", drop_path_rate=0.0)
    head = UPerNetHead(backbone.output_shape(), num_classes=4, channels=32, aux_channels=16)
    model = SemanticSegmentor(backbone=backbone, sem_seg_head=head, pixel_mean=MEAN, pixel_std=STD)
    data = _mapped("upernet_train", 4)
    losses = train_steps(model, [data[:2], data[2:]], steps=30, lr=1e-3, loss_key="loss_sem_seg")
    assert all(np.isfinite(losses))
    # measured: 1.36 -> 0.89 (the concat head, with a larger lr share, falls further)
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:2]), losses
    results = _evaluate(model.eval(), "upernet_val")
    assert {f"IoU-{c}" for c in CLASSES} <= set(results)


def test_ade20k_recipe_is_pinned():
    cfg = LazyConfig.load(str(CONFIGS / "upernet_pvt_v2_b2_ade20k_160k.py"))
    assert cfg.model.sem_seg_head._target_ is UPerNetHead
    assert cfg.model.backbone._target_ is PVTv2Backbone  # UPerNet brings its own FPN
    head = cfg.model.sem_seg_head
    assert (head.channels, tuple(head.pool_scales), head.dropout) == (512, (1, 2, 3, 6), 0.1)
    assert (head.aux_in_feature, head.aux_channels, head.aux_loss_weight) == ("res4", 256, 0.4)
    assert (cfg.train.max_iter, cfg.dataloader.train.total_batch_size) == (160000, 16)
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (6e-5, 0.01)
    assert cfg.optimizer.params.weight_decay_norm == 0.0
    assert cfg.lr_multiplier.scheduler.power == 1.0
    assert cfg.lr_multiplier.warmup_length * 160000 == pytest.approx(1500)
    assert cfg.dataloader.train.mapper.augmentations[1].crop_size == (512, 512)
    assert cfg.train.init_checkpoint == "timm://pvt_v2_b2"
    for v in ("b0", "b1", "b3", "b4", "b5"):
        other = LazyConfig.load(str(CONFIGS / f"upernet_pvt_v2_{v}_ade20k_160k.py"))
        assert other.model.backbone.name == f"pvt_v2_{v}"
        assert other.train.init_checkpoint == f"timm://pvt_v2_{v}"
        assert LazyConfig.to_py(other.optimizer) == LazyConfig.to_py(cfg.optimizer)
    model = instantiate(cfg.model)
    assert model.sem_seg_head.ppm_bottleneck.weight.shape[1] == 512 + 4 * 512  # b2's res5: 512


def test_train_net_trains_and_evaluates_the_synthetic_config(tiny, tmp_path):
    out = tmp_path / "out"
    data = [f"dataset.{s}_{k}={tiny[s][d]}" for s in ("train", "val")
            for k, d in (("images", "image_root"), ("labels", "sem_seg_root"))]  # fmt: skip
    run_train_net(
        "--config-file", CONFIGS / "upernet_pvt_v2_b0_synthetic.py", *data,
        "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0", "train.max_iter=2", "train.eval_period=2",
        "train.log_period=1", "train.checkpointer.period=100", "train.device=cpu",
        f"train.output_dir={out}",
    )  # fmt: skip
    results = json.loads((out / "eval_results.json").read_text())
    assert 0 <= results["sem_seg"]["mIoU"] <= 100
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert any("loss_sem_seg_aux" in m for m in rows)


def test_yacs_config_builds_it_through_the_registry():
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from pvt_fpn_d2 import add_pvt_v2_config

    cfg = add_pvt_v2_config(get_cfg())
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "SemanticSegmentor"
    cfg.MODEL.BACKBONE.NAME = "build_pvt_v2_backbone"  # UPerNet on the stages, no FPN
    cfg.MODEL.PVT.NAME = "pvt_v2_b0"
    cfg.MODEL.SEM_SEG_HEAD.NAME = "UPerNetHead"
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 5
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 32
    cfg.MODEL.SEM_SEG_HEAD.NORM = "BN"
    model = build_model(cfg).eval()
    assert isinstance(model.sem_seg_head, UPerNetHead)
    assert model.sem_seg_head.fpn_bottleneck.weight.shape[:2] == (32, 4 * 32)
    with torch.no_grad():
        out = model([{"image": torch.zeros(3, 70, 90, dtype=torch.uint8)}])
    assert out[0]["sem_seg"].shape == (5, 70, 90)
