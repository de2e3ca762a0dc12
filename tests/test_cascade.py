"""
CascadeMaskROIHeads (pvt_fpn_d2/modeling/cascade.py): the yacs path builds the LazyConfig's model,
the stage loss weights scale each stage's losses, mistakes in its arguments are named, and the
trainer's box-without-mask check sees every stage's head. Its numbers against mmdetection are in
tests/test_mmdet_convert.py (inference and training), its export in tests/test_deploy.py.
"""

import copy

import pytest
import torch

from detectron2.config import get_cfg, instantiate
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads import MaskRCNNConvUpsampleHead
from detectron2.utils.events import EventStorage

from pvt_fpn_d2 import add_pvt_v2_config, model_zoo
from pvt_fpn_d2.modeling.cascade import CascadeMaskROIHeads
from pvt_fpn_d2.modeling.mask_head import supports_boxes_without_masks

from .conftest import REPO, make_batch

STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))


def _lazy():
    cfg = model_zoo.get_config("COCO/cascade_mask_rcnn_pvt_v2_b2_fpn_3x.py")
    cfg.model.backbone.bottom_up.name = "pvt_v2_b0"
    return cfg


def _yacs():
    """The official 3x heads in yacs keys, on the b0 Mask R-CNN yaml."""
    cfg = add_pvt_v2_config(get_cfg())
    cfg.merge_from_file(str(REPO / "configs/COCO-yaml/mask_rcnn_pvt_v2_b0_fpn_1x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.ROI_HEADS.NAME = "CascadeMaskROIHeads"
    box = cfg.MODEL.ROI_BOX_HEAD
    box.NUM_CONV, box.CONV_DIM, box.NUM_FC, box.FC_DIM, box.NORM = 4, 256, 1, 1024, "SyncBN"
    box.CLS_AGNOSTIC_BBOX_REG = False
    box.BBOX_REG_LOSS_TYPE, box.BBOX_REG_LOSS_WEIGHT = "giou", 10.0
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS = [[1.0 / s for s in std] for std in STDS]
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.IOUS = [0.5, 0.6, 0.7]
    return cfg


def test_yacs_config_builds_the_lazy_configs_model():
    torch.manual_seed(0)
    ours, lazy = build_model(_yacs()), instantiate(_lazy().model)
    assert isinstance(ours.roi_heads, CascadeMaskROIHeads)
    assert ours.roi_heads.stage_loss_weights == lazy.roi_heads.stage_loss_weights == (1, 0.5, 0.25)
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(ours) == shapes(lazy)
    assert len(ours.roi_heads.mask_head) == 3
    assert ours.roi_heads.box_predictor[0].bbox_pred.out_features == 80 * 4  # class-specific
    ours.load_state_dict(lazy.state_dict())
    for m in (ours, lazy):
        m.eval()
        m.roi_heads.box_predictor[-1].test_score_thresh = 0.0
        m.roi_heads.box_predictor[-1].test_topk_per_image = 10
    image = make_batch(num_images=1, size=(96, 128))[0]["image"]
    with torch.no_grad():
        (a,), (b,) = (m([{"image": image, "height": 96, "width": 128}]) for m in (ours, lazy))
    a, b = a["instances"], b["instances"]
    assert len(a) == len(b) == 10
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, rtol=0, atol=0)
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=0)
    assert torch.equal(a.pred_masks, b.pred_masks)


def test_stage_loss_weights_scale_each_stages_losses():
    losses = {}
    for weights in [(1.0, 1.0, 1.0), (1.0, 0.5, 0.25)]:
        cfg = _lazy()
        cfg.model.roi_heads.num_classes = 3
        cfg.model.roi_heads.stage_loss_weights = weights
        torch.manual_seed(0)
        model = instantiate(cfg.model).train()
        torch.manual_seed(1)  # the same proposals sampled
        with EventStorage():
            losses[weights] = {k: float(v.detach()) for k, v in model(make_batch()).items()}
    plain, weighted = losses[(1.0, 1.0, 1.0)], losses[(1.0, 0.5, 0.25)]
    assert {k for k in plain if k.endswith("_stage2")} == {
        "loss_cls_stage2",
        "loss_box_reg_stage2",
        "loss_mask_stage2",
    }
    for name, value in plain.items():
        scale = {"_stage1": 0.5, "_stage2": 0.25}.get(name[-7:], 1.0)
        assert weighted[name] == pytest.approx(value * scale, rel=1e-5), name


def test_arguments_that_do_not_fit_are_named():
    cfg = _lazy()
    cfg.model.roi_heads.stage_loss_weights = (1.0, 0.5)
    with pytest.raises(ValueError, match="2 stage_loss_weights, 3 stages"):
        instantiate(cfg.model)
    cfg = _lazy()
    cfg.model.roi_heads.mask_heads = cfg.model.roi_heads.mask_heads[:2]
    with pytest.raises(ValueError, match="2 mask heads, 3 stages"):
        instantiate(cfg.model)
    cfg = _lazy()
    cfg.model.roi_heads.mask_head = copy.deepcopy(cfg.model.roi_heads.mask_heads[0])
    cfg.model.roi_heads.mask_head.num_classes = 80
    with pytest.raises(ValueError, match="takes mask_heads="):
        instantiate(cfg.model)


def test_boxes_without_masks_are_supported_only_when_every_stage_skips_them():
    cfg = _lazy()
    with torch.device("meta"):
        heads = instantiate(cfg.model).roi_heads
    assert supports_boxes_without_masks(heads.mask_head)
    heads.mask_head[1] = MaskRCNNConvUpsampleHead(
        ShapeSpec(channels=256, width=14, height=14), num_classes=80, conv_dims=[256]
    )
    assert not supports_boxes_without_masks(heads.mask_head)
