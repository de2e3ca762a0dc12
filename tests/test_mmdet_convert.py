"""
Converted mmdetection checkpoints against mmdetection itself: mmdetection 3.3.0 builds PVT-v2-b0
Mask R-CNN and RetinaNet (its own config dicts, written below) with random weights, the
checkpoints are converted, and both frameworks run the same 3 images (one side not a multiple
of 32), stage by stage. Plus the official PVT naming, the tool, and every bad input.

mmdetection, mmengine and mmcv-lite come from ``make setup`` (tools/requirements-mmdet.txt);
mmcv's two compiled kernels the models need come from torchvision (tests/mmcv_ext_standin.py).
"""

import copy
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from detectron2.config import get_cfg, instantiate
from detectron2.modeling import build_model
from detectron2.structures import Boxes

from pvt_fpn_d2 import add_pvt_v2_config, model_zoo
from pvt_fpn_d2.config import apply_overrides
from pvt_fpn_d2.engine.checkpoint import PVTCheckpointer, convert_mmdet_checkpoint
from pvt_fpn_d2.modeling.mmdet_weights import MMDetCheckpointError, anchor_permutation
from pvt_fpn_d2.modeling.weights import UnsafeCheckpointError

from .conftest import REPO, run_tool, run_train_net, subprocess_env, tiny_config


def _import_mmdet():
    """mmdetection with mmcv's kernels; a failure (not a skip) in the venv of `make setup`."""
    pinned = (Path(sys.prefix) / ".pvt_fpn_d2-pinned").exists()
    try:
        importlib.import_module("mmcv._ext")
    except ImportError:  # mmcv-lite (or no mmcv: the import below says so)
        from . import mmcv_ext_standin

        mmcv_ext_standin.install()
    try:
        mmdet_models = importlib.import_module("mmdet.models")
    except ImportError as e:
        if pinned:
            raise
        pytest.skip(
            f"mmdetection is not installed ({e}): make setup installs it", allow_module_level=True
        )
    return mmdet_models


_import_mmdet()

from mmdet.models.backbones.pvt import SpatialReductionAttention, pvt_convert  # noqa: E402
from mmdet.models.layers import PatchEmbed  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.bbox import bbox2roi  # noqa: E402
from mmdet.models.test_time_augs import merge_aug_masks  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

register_all_modules()

# mmdetection 3.3.0's configs/_base_/models/{mask-rcnn,retinanet}_r50_fpn.py with the backbone of
# configs/pvt/retinanet_pvtv2-b0_fpn_1x_coco.py; test score threshold 0 (random weights)
PVT_V2_B0 = dict(type="PyramidVisionTransformerV2", embed_dims=32, num_layers=[2, 2, 2, 2])
PREPROCESSOR = dict(
    type="DetDataPreprocessor",
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_size_divisor=32,
)
CODER = dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4)
MASK_RCNN = dict(
    type="MaskRCNN",
    data_preprocessor=dict(PREPROCESSOR, pad_mask=True),
    backbone=PVT_V2_B0,
    neck=dict(type="FPN", in_channels=[32, 64, 160, 256], out_channels=256, num_outs=5),
    rpn_head=dict(
        type="RPNHead",
        in_channels=256,
        feat_channels=256,
        anchor_generator=dict(
            type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]
        ),
        bbox_coder=CODER,
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
    ),
    roi_head=dict(
        type="StandardRoIHead",
        bbox_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        bbox_head=dict(
            type="Shared2FCBBoxHead",
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(CODER, target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        ),
        mask_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        mask_head=dict(
            type="FCNMaskHead",
            num_convs=4,
            in_channels=256,
            conv_out_channels=256,
            num_classes=80,
            loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0),
        ),
    ),
    train_cfg=None,
    test_cfg=dict(
        rpn=dict(
            nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0
        ),
        rcnn=dict(
            score_thr=0.0,
            nms=dict(type="nms", iou_threshold=0.5),
            max_per_img=100,
            mask_thr_binary=0.5,
        ),
    ),
)
RETINANET = dict(
    type="RetinaNet",
    data_preprocessor=PREPROCESSOR,
    backbone=PVT_V2_B0,
    neck=dict(
        type="FPN",
        in_channels=[32, 64, 160, 256],
        out_channels=256,
        start_level=1,
        add_extra_convs="on_input",
        num_outs=5,
    ),
    bbox_head=dict(
        type="RetinaHead",
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        anchor_generator=dict(
            type="AnchorGenerator",
            octave_base_scale=4,
            scales_per_octave=3,
            ratios=[0.5, 1.0, 2.0],
            strides=[8, 16, 32, 64, 128],
        ),
        bbox_coder=CODER,
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
    ),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.0,
        nms=dict(type="nms", iou_threshold=0.5),
        max_per_img=100,
    ),
)


# the official PVT-v2 3x Cascade Mask R-CNN (whai362/PVT detection/configs/_base_/models/
# cascade_mask_rcnn_pvtv2_b2_fpn.py and cascade_mask_rcnn_pvt_v2_b2_fpn_3x_mstrain_fp16.py) in
# mmdetection 3.3's terms, on b0: per stage a ConvFCBBoxHead (4 convs with BN, 1 fc, class-specific
# regression, GIoU loss on decoded boxes), and one FCNMaskHead config (a head per stage)
def _cascade_stage(stds, iou):
    head = dict(
        MASK_RCNN["roi_head"]["bbox_head"],  # channels, classes, class-specific, cross-entropy
        type="ConvFCBBoxHead",
        num_shared_convs=4,
        num_shared_fcs=1,
        conv_out_channels=256,
        bbox_coder=dict(CODER, target_stds=list(stds)),
        reg_decoded_bbox=True,
        norm_cfg=dict(type="BN", requires_grad=True),  # SyncBN on GPUs: the same at inference
        loss_bbox=dict(type="GIoULoss", loss_weight=10.0),
    )
    train = _assign_and_sample((iou, iou, iou), False, 512, 0.25, True)
    return head, dict(train, mask_size=28)


def _assign_and_sample(ious, low_quality, num, pos_fraction, add_gt):
    """mmdetection's MaxIoUAssigner (pos, neg, min pos IoU) and RandomSampler settings."""
    pos, neg, min_pos = ious
    return dict(
        assigner=dict(
            type="MaxIoUAssigner",
            pos_iou_thr=pos,
            neg_iou_thr=neg,
            min_pos_iou=min_pos,
            match_low_quality=low_quality,
            ignore_iof_thr=-1,
        ),
        sampler=dict(
            type="RandomSampler",
            num=num,
            pos_fraction=pos_fraction,
            neg_pos_ub=-1,
            add_gt_as_proposals=add_gt,
        ),
        pos_weight=-1,
        debug=False,
    )


_STAGES = [
    _cascade_stage(stds, iou)
    for stds, iou in [
        ((0.1, 0.1, 0.2, 0.2), 0.5),
        ((0.05, 0.05, 0.1, 0.1), 0.6),
        ((0.033, 0.033, 0.067, 0.067), 0.7),
    ]
]
CASCADE = copy.deepcopy(MASK_RCNN)
CASCADE["type"] = "CascadeRCNN"
CASCADE["roi_head"].update(
    type="CascadeRoIHead",
    num_stages=3,
    stage_loss_weights=[1, 0.5, 0.25],
    bbox_head=[head for head, _ in _STAGES],
)
CASCADE["train_cfg"] = dict(
    rpn=dict(_assign_and_sample((0.7, 0.3, 0.3), True, 256, 0.5, False), allowed_border=0),
    rpn_proposal=dict(nms_pre=2000, max_per_img=2000, nms=dict(type="nms", iou_threshold=0.7)),
    rcnn=[train for _, train in _STAGES],
)
D2_CONFIGS = {
    "MaskRCNN": "COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py",
    "RetinaNet": "COCO/retinanet_pvt_v2_b0_fpn_1x.py",
    "CascadeMaskRCNN": "COCO/cascade_mask_rcnn_pvt_v2_b2_fpn_3x.py",
}
# detections per image with score threshold 0: 50 rather than COCO's 100, which would double the
# mask head's CPU time (50 RoIs x 4 convs of 256x256x3x3 at 14x14 is ~25 GMAC per image)
MAX_DETECTIONS = 50
MASK_RCNN["test_cfg"]["rcnn"]["max_per_img"] = CASCADE["test_cfg"]["rcnn"]["max_per_img"] = (
    RETINANET["test_cfg"]["max_per_img"]
) = MAX_DETECTIONS
# (height, width): 200 is not a multiple of 32
IMAGE_SIZES = [(224, 288), (256, 200), (192, 320)]


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Random weights that keep activations of order 1 through every layer, so that scores
    spread out (mmdetection's own init makes every RetinaNet score 0.01) and boxes move."""
    g = torch.Generator().manual_seed(seed)
    norms = {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm))
    }
    with torch.no_grad():
        for m in model.modules():  # BatchNorm statistics of a trained model's order
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.dim() > 1:  # box regression smaller: boxes move, few leave the image
                scale = 0.5 if name.endswith("reg.weight") else 1.0
                p.copy_(noise * scale / p[0].numel() ** 0.5)
            elif id(p) in norms:
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)


def _mmdet_model(config: dict, seed: int = 0):
    model = MODELS.build(ConfigDict(copy.deepcopy(config)))
    _randomize(model, seed)
    return model.eval()


def _images():
    """BGR uint8 images (mmdetection's input) with structure at several scales."""
    g = torch.Generator().manual_seed(1)
    out = []
    for h, w in IMAGE_SIZES:
        coarse = torch.rand(1, 3, h // 16, w // 16, generator=g)
        img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")
        img = img[0] * 200 + torch.rand(3, h, w, generator=g) * 55
        out.append(img.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())
    return out


def _convert(mm_model, tmp_path, name="mm.pth", state_dict=None, **kwargs):
    src = tmp_path / name
    sd = mm_model.state_dict() if state_dict is None else state_dict
    torch.save({"meta": {"mmdet_version": "3.3.0"}, "state_dict": sd}, src)
    dst = tmp_path / f"d2_{name}"
    conversion, cfg = convert_mmdet_checkpoint(str(src), str(dst), **kwargs)
    return conversion, cfg, dst


def _d2_model(detector: str, checkpoint: Path, overrides=()):
    cfg = apply_overrides(model_zoo.get_config(D2_CONFIGS[detector]), list(overrides))
    if detector == "RetinaNet":
        cfg.model.test_score_thresh = 0.0
        cfg.model.max_detections_per_image = MAX_DETECTIONS
    elif detector == "CascadeMaskRCNN":
        cfg.model.backbone.bottom_up.name = "pvt_v2_b0"
        for predictor in cfg.model.roi_heads.box_predictors:
            predictor.test_score_thresh = 0.0
            predictor.test_topk_per_image = MAX_DETECTIONS
    else:
        cfg.model.roi_heads.box_predictor.test_score_thresh = 0.0
        cfg.model.roi_heads.box_predictor.test_topk_per_image = MAX_DETECTIONS
    return _loaded_strictly(instantiate(cfg.model).eval(), checkpoint)


def _loaded_strictly(model, checkpoint: Path):
    """``model`` with ``checkpoint`` loaded: no missing, unexpected or mis-shaped key."""
    checkpointer = PVTCheckpointer(model)
    incompatible = checkpointer._load_model(checkpointer._load_file(str(checkpoint)))
    assert incompatible.missing_keys == []
    assert incompatible.unexpected_keys == []
    assert incompatible.incorrect_shapes == []
    return model


def _mm_inputs(mm_model, bgr):
    h, w = bgr.shape[:2]
    sample = DetDataSample(
        metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0), img_id=0)
    )
    image = torch.from_numpy(bgr).permute(2, 0, 1).contiguous()
    data = mm_model.data_preprocessor({"inputs": [image], "data_samples": [sample]}, False)
    return data["inputs"], data["data_samples"]


def _d2_input(bgr):
    h, w = bgr.shape[:2]
    rgb = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).contiguous()
    return {"image": rgb, "height": h, "width": w}


def _maxdiff(a, b) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0


def _cell_anchor_order(mm_generator, d2_generator):
    """For each of detectron2's anchors of a location, the index of the same box among
    mmdetection's, found from the anchors' coordinates (not from the converter)."""
    orders = []
    for mm, d2 in zip(mm_generator.base_anchors, d2_generator.cell_anchors):
        dist = (d2[:, None, :] - mm[None, :, :]).abs().amax(-1)
        assert dist.min(1).values.max() < 1e-3, "the two frameworks' anchors differ"
        orders.append(dist.argmin(1))
    assert all(torch.equal(o, orders[0]) for o in orders)
    return orders[0]


def _match_detections(mm, d2):
    """Pairs each mmdetection detection with the detectron2 one of the same class whose box is
    closest: how many found no partner, and the worst box, score and mask differences."""
    free = torch.ones(len(d2["boxes"]), dtype=torch.bool)
    worst = {"unmatched": 0, "boxes": 0.0, "scores": 0.0, "mask_iou": 1.0}
    for i in torch.argsort(mm["scores"], descending=True).tolist():
        dist = (d2["boxes"] - mm["boxes"][i]).abs().amax(1)
        dist[~free | (d2["labels"] != mm["labels"][i])] = float("inf")
        j = int(dist.argmin()) if len(dist) else -1
        if j < 0 or dist[j] == float("inf"):
            worst["unmatched"] += 1
            continue
        free[j] = False
        worst["boxes"] = max(worst["boxes"], float(dist[j]))
        worst["scores"] = max(worst["scores"], abs(float(mm["scores"][i] - d2["scores"][j])))
        if "masks" in mm:
            a, b = mm["masks"][i], d2["masks"][j]
            union = (a | b).sum().item()
            iou = (a & b).sum().item() / union if union else 1.0
            worst["mask_iou"] = min(worst["mask_iou"], iou)
    return worst


def _record(name: str, figures: dict) -> None:
    """Print the worst differences (pytest -s shows them; docs/MODEL_ZOO.md quotes them)."""
    print(f"\nPARITY {name}: " + json.dumps({k: float(f"{v:.3g}") for k, v in figures.items()}))


def _parity(detector: str, mm_model, d2_model, images=None):
    """Every stage of both models on the images (default: all 3); the worst differences."""
    worst: dict = {}

    def note(key, value, better=max):
        worst[key] = better(worst.get(key, value), value)

    for bgr in _images() if images is None else images:
        inputs, samples = _mm_inputs(mm_model, bgr)
        batched = [_d2_input(bgr)]
        with torch.no_grad():
            images = d2_model.preprocess_image(batched)
            assert images.tensor.shape == inputs.shape
            # input normalisation and channel order: the same tensor
            note("input", _maxdiff(images.tensor, inputs))
            mm_backbone = mm_model.backbone(inputs)
            d2_backbone = d2_model.backbone.bottom_up(images.tensor)
            for i, name in enumerate(["res2", "res3", "res4", "res5"]):
                if name in d2_backbone:
                    note("backbone", _maxdiff(d2_backbone[name], mm_backbone[i]))
            mm_fpn = mm_model.neck(mm_backbone)
            d2_fpn = d2_model.backbone(images.tensor)
            assert len(mm_fpn) == len(d2_fpn)
            for mm_f, d2_f in zip(mm_fpn, d2_fpn.values()):
                note("fpn", _maxdiff(d2_f, mm_f))

            if detector == "RetinaNet":
                order = _cell_anchor_order(
                    mm_model.bbox_head.prior_generator, d2_model.anchor_generator
                )
                mm_cls, mm_reg = mm_model.bbox_head(mm_fpn)
                d2_cls, d2_reg = d2_model.head(list(d2_fpn.values()))
                for mm_c, d2_c, mm_r, d2_r in zip(mm_cls, d2_cls, mm_reg, d2_reg):
                    n, _, h, w = mm_c.shape
                    mm_c = mm_c.reshape(n, 9, -1, h, w)[:, order].reshape(n, -1, h, w)
                    mm_r = mm_r.reshape(n, 9, 4, h, w)[:, order].reshape(n, -1, h, w)
                    note("class_logits", _maxdiff(d2_c, mm_c))
                    note("box_deltas", _maxdiff(d2_r, mm_r))
            else:
                order = _cell_anchor_order(
                    mm_model.rpn_head.prior_generator, d2_model.proposal_generator.anchor_generator
                )
                assert order.tolist() == [0, 1, 2]
                mm_obj, mm_deltas = mm_model.rpn_head(mm_fpn)
                rpn_features = [d2_fpn[f] for f in d2_model.proposal_generator.in_features]
                d2_obj, d2_deltas = d2_model.proposal_generator.rpn_head(rpn_features)
                for a, b, c, d in zip(mm_obj, d2_obj, mm_deltas, d2_deltas):
                    note("rpn_objectness", _maxdiff(b, a))
                    note("rpn_deltas", _maxdiff(d, c))
                mm_props = mm_model.rpn_head.predict(mm_fpn, samples, rescale=False)[0]
                d2_props = d2_model.proposal_generator(images, d2_fpn)[0][0]
                # the same 1000 boxes; the order of equal scores may differ
                assert len(mm_props) == 1000
                note("proposals_count_diff", abs(len(d2_props) - len(mm_props)))
                dist = torch.cdist(mm_props.bboxes, d2_props.proposal_boxes.tensor, p=np.inf)
                note("proposals", dist.min(1).values.max().item())

                # the box and mask heads (each stage's) on the same (mmdetection's) proposals
                boxes = mm_props.bboxes[:300]
                rois = bbox2roi([boxes])
                heads = d2_model.roi_heads
                box_pooled = heads.box_pooler(
                    [d2_fpn[f] for f in heads.box_in_features], [Boxes(boxes)]
                )
                mask_pooled = heads.mask_pooler(
                    [d2_fpn[f] for f in heads.mask_in_features], [Boxes(boxes[:20])]
                )
                cascade = isinstance(heads.box_predictor, torch.nn.ModuleList)
                for stage in range(heads.num_cascade_stages if cascade else 1):
                    args = (stage,) if cascade else ()
                    mm_box = mm_model.roi_head._bbox_forward(*args, mm_fpn, rois)
                    box_head, box_predictor, mask_head = (
                        (heads.box_head[stage], heads.box_predictor[stage], heads.mask_head[stage])
                        if cascade
                        else (heads.box_head, heads.box_predictor, heads.mask_head)
                    )
                    d2_scores, d2_box_deltas = box_predictor(box_head(box_pooled))
                    note(
                        "box_scores",
                        _maxdiff(d2_scores.softmax(-1), mm_box["cls_score"].softmax(-1)),
                    )
                    note("box_deltas", _maxdiff(d2_box_deltas, mm_box["bbox_pred"]))
                    mm_mask = mm_model.roi_head._mask_forward(*args, mm_fpn, rois[:20])
                    note(
                        "mask_logits",
                        _maxdiff(mask_head.layers(mask_pooled), mm_mask["mask_preds"]),
                    )

                if cascade:  # the mean of the stages' mask probabilities, before pasting
                    (d2_pred,), _ = heads(images, d2_fpn, [d2_props])
                    rois = bbox2roi([d2_pred.pred_boxes.tensor])
                    probs = [
                        mm_model.roi_head._mask_forward(k, mm_fpn, rois)["mask_preds"].sigmoid()
                        for k in range(heads.num_cascade_stages)
                    ]
                    merged = merge_aug_masks(probs, {})[
                        torch.arange(len(rois)), d2_pred.pred_classes
                    ]
                    note("mask_probs", _maxdiff(d2_pred.pred_masks[:, 0], merged))

            # final detections, score threshold 0
            mm_det = mm_model.predict(inputs, samples, rescale=True)[0].pred_instances
            d2_det = d2_model(batched)[0]["instances"]
        mm = {"boxes": mm_det.bboxes, "scores": mm_det.scores, "labels": mm_det.labels}
        d2 = {
            "boxes": d2_det.pred_boxes.tensor,
            "scores": d2_det.scores,
            "labels": d2_det.pred_classes,
        }
        if "masks" in mm_det:
            mm["masks"], d2["masks"] = mm_det.masks.bool(), d2_det.pred_masks.bool()
        assert len(mm["boxes"]) == MAX_DETECTIONS, "score threshold 0 keeps the best ones"
        matched = _match_detections(mm, d2)
        note("detections", len(d2["boxes"]), min)
        note("det_count_diff", abs(len(d2["boxes"]) - len(mm["boxes"])))
        note("det_unmatched", matched["unmatched"])
        note("det_boxes_px", matched["boxes"])
        note("det_scores", matched["scores"])
        if "masks" in mm:
            note("mask_iou", matched["mask_iou"], min)
    return worst


# (stage, bound) in the order the models compute them: a break shows at the first stage out of
# bounds. Features and head outputs: max abs difference; proposals and detection boxes: the
# largest distance (px) to the matched box; scores: max abs difference of probabilities.
LIMITS = [
    ("input", 1e-4),
    ("backbone", 1e-4),
    ("fpn", 1e-4),
    ("rpn_objectness", 1e-4),
    ("rpn_deltas", 1e-4),
    ("proposals_count_diff", 0),
    ("proposals", 1e-2),
    ("class_logits", 1e-4),
    ("box_deltas", 1e-4),
    ("box_scores", 1e-5),
    ("mask_logits", 1e-4),
    ("mask_probs", 1e-4),
    ("det_count_diff", 0),
    ("det_unmatched", 0),
    ("det_boxes_px", 0.5),
    ("det_scores", 1e-3),
]


def _assert_parity(worst: dict) -> None:
    out = [f"{k} {worst[k]:.3g} > {bound}" for k, bound in LIMITS if worst.get(k, 0) > bound]
    if worst.get("mask_iou", 1.0) < 0.99:
        out.append(f"mask_iou {worst['mask_iou']:.3g} < 0.99")
    assert not out, f"first stage out of bounds: {out[0]} (all: {out}; figures: {worst})"
    assert {"input", "backbone", "fpn", "det_boxes_px"} <= set(worst)


@pytest.mark.parametrize(
    "detector, config",
    [("MaskRCNN", MASK_RCNN), ("RetinaNet", RETINANET), ("CascadeMaskRCNN", CASCADE)],
)
def test_converted_checkpoint_computes_what_mmdetection_computes(detector, config, tmp_path):
    mm_model = _mmdet_model(config)
    cfg = None
    if detector == "CascadeMaskRCNN":  # the b2 3x config on b0 (no b0 cascade in the zoo)
        cfg = model_zoo.get_config(D2_CONFIGS[detector])
        cfg.model.backbone.bottom_up.name = "pvt_v2_b0"
        with torch.no_grad():
            # 3 independent random heads average to ~0.5 over much of each box, where pasting's
            # interpolation decides pixels by 1e-7: heads that agree in sign, as trained ones
            # do, and differ in value (the average itself is checked before pasting)
            first = mm_model.roi_head.mask_head[0]
            for k, head in enumerate(mm_model.roi_head.mask_head):
                head.load_state_dict(first.state_dict())
                head.conv_logits.weight.mul_(4 * (k + 1))
    conversion, _, dst = _convert(mm_model, tmp_path, cfg=cfg)
    assert (conversion.detector, conversion.variant) == (detector, "pvt_v2_b0")
    assert conversion.backbone_naming == "mmdetection"
    assert conversion.config_overrides == ["model.backbone.bottom_up.patch_and_sr_norm_eps=1e-06"]
    worst = _parity(detector, mm_model, _d2_model(detector, dst, conversion.config_overrides))
    _record(f"{detector} (mmdetection PyramidVisionTransformerV2 keys)", worst)
    _assert_parity(worst)


def _cascade_batch(g: torch.Generator):
    """Two images' ground truth (boxes, labels, filled-ellipse masks) and proposals: each object
    jittered at several scales (positives at every stage's IoU) plus random boxes."""
    batch = []
    for h, w in IMAGE_SIZES[:2]:
        xy = torch.rand(3, 2, generator=g) * torch.tensor([w * 0.5, h * 0.5])
        wh = (0.25 + 0.4 * torch.rand(3, 2, generator=g)) * torch.tensor([w * 0.5, h * 0.5])
        gt = torch.cat([xy, xy + wh], 1)
        yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        centre, radius = (gt[:, :2] + gt[:, 2:]) / 2, (gt[:, 2:] - gt[:, :2]) / 2
        masks = (
            ((xx - centre[:, None, None, 0]) / radius[:, None, None, 0]) ** 2
            + ((yy - centre[:, None, None, 1]) / radius[:, None, None, 1]) ** 2
        ) <= 1
        size = (gt[:, 2:] - gt[:, :2]).repeat(1, 2)
        jitter = [gt + size * s * torch.randn(gt.shape, generator=g) for s in (0.03, 0.08, 0.2)]
        corner = torch.rand(40, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        random_boxes = torch.cat([corner, corner + 16 + 60 * torch.rand(40, 2, generator=g)], 1)
        proposals = torch.cat(jitter * 3 + [random_boxes])
        proposals[:, 0::2] = proposals[:, 0::2].clamp(0, w - 1)
        proposals[:, 1::2] = proposals[:, 1::2].clamp(0, h - 1)
        labels = torch.randint(0, 80, (3,), generator=g)
        batch.append(((h, w), gt, labels, masks, proposals))
    return batch


def test_cascade_training_losses_equal_mmdetections(tmp_path):
    """
    Training parity of Cascade Mask R-CNN: the same features, proposals and ground truth into
    both ROI heads in training mode, every proposal and ground-truth box kept (sampling
    bypassed: sampler sizes larger than the proposals), so both assign, refine between stages
    (leaving out the ground-truth proposals) and take the same samples. Each stage's box
    classification, GIoU box regression and mask loss, with the stage weights, equal
    mmdetection's within 1e-4.
    """
    from detectron2.structures import BitMasks, Instances
    from detectron2.utils.events import EventStorage
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    config = copy.deepcopy(CASCADE)
    for stage in config["train_cfg"]["rcnn"]:
        stage["sampler"].update(num=100000, pos_fraction=1.0)  # keeps all (RandomSampler)
    mm_model = _mmdet_model(config)
    cfg = model_zoo.get_config(D2_CONFIGS["CascadeMaskRCNN"])
    cfg.model.backbone.bottom_up.name = "pvt_v2_b0"
    conversion, _, dst = _convert(mm_model, tmp_path, cfg=cfg)
    overrides = conversion.config_overrides + [
        "model.roi_heads.batch_size_per_image=100000",
        "model.roi_heads.positive_fraction=1.0",
    ]
    d2_model = _d2_model("CascadeMaskRCNN", dst, overrides)

    batch = _cascade_batch(torch.Generator().manual_seed(3))
    bgr = [img for img, (h, w) in zip(_images(), IMAGE_SIZES) if (h, w) in [b[0] for b in batch]]
    samples = [
        DetDataSample(metainfo=dict(img_shape=hw, ori_shape=hw, scale_factor=(1.0, 1.0)))
        for hw, *_ in batch
    ]
    images = [torch.from_numpy(b).permute(2, 0, 1).contiguous() for b in bgr]
    data = mm_model.data_preprocessor({"inputs": images, "data_samples": samples}, False)
    with torch.no_grad():
        features = mm_model.extract_feat(data["inputs"])  # (the FPN's parity is tested above)
    d2_features = dict(zip(["p2", "p3", "p4", "p5", "p6"], features))

    mm_samples, rpn_results, proposals, targets = [], [], [], []
    for sample, (hw, gt, labels, masks, boxes) in zip(data["data_samples"], batch):
        sample.gt_instances = InstanceData(
            bboxes=gt, labels=labels, masks=BitmapMasks(masks.numpy().astype(np.uint8), *hw)
        )
        mm_samples.append(sample)
        rpn_results.append(InstanceData(bboxes=boxes.clone()))
        proposals.append(
            Instances(
                hw, proposal_boxes=Boxes(boxes.clone()), objectness_logits=torch.zeros(len(boxes))
            )
        )
        targets.append(
            Instances(hw, gt_boxes=Boxes(gt), gt_classes=labels, gt_masks=BitMasks(masks))
        )

    mm_model.roi_head.train()
    d2_model.roi_heads.train()
    mm_losses = mm_model.roi_head.loss(features, rpn_results, mm_samples)
    with EventStorage():
        _, d2_losses = d2_model.roi_heads(None, d2_features, proposals, targets)
    worst = {}
    for stage in range(3):
        for mm_name, d2_name in [
            ("loss_cls", "loss_cls"),
            ("loss_bbox", "loss_box_reg"),
            ("loss_mask", "loss_mask"),
        ]:
            a = float(mm_losses[f"s{stage}.{mm_name}"].detach())
            b = float(d2_losses[f"{d2_name}_stage{stage}"].detach())
            assert a > 0 and b > 0, (stage, mm_name, a, b)
            worst[f"s{stage}.{mm_name}"] = abs(a - b)
    _record("CascadeMaskRCNN training losses (abs. difference per stage)", worst)
    assert max(worst.values()) < 1e-4, worst


def _yacs_retinanet(checkpoint: Path, opts=()):
    """configs/COCO-yaml/retinanet_pvt_v2_b0_fpn_1x.yaml with ``opts``, ``checkpoint`` loaded."""
    cfg = add_pvt_v2_config(get_cfg())
    cfg.merge_from_file(str(REPO / "configs/COCO-yaml/retinanet_pvt_v2_b0_fpn_1x.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *opts])
    return _loaded_strictly(build_model(cfg).eval(), checkpoint)


def test_yacs_config_runs_a_converted_mmdetection_checkpoint_like_the_lazy_config(tmp_path):
    """A checkpoint of mmdetection's own PyramidVisionTransformerV2 (LayerNorm eps 1e-6) in the
    yacs RetinaNet with ``MODEL.PVT.PATCH_AND_SR_NORM_EPS 1e-6``: the FPN features of the
    LazyConfig model with the conversion's override (which match mmdetection's, tested above)."""
    mm_model = _mmdet_model(RETINANET, seed=5)
    conversion, _, dst = _convert(mm_model, tmp_path)
    assert conversion.config_overrides == ["model.backbone.bottom_up.patch_and_sr_norm_eps=1e-06"]
    lazy = _d2_model("RetinaNet", dst, conversion.config_overrides)
    yacs = _yacs_retinanet(dst, ["MODEL.PVT.PATCH_AND_SR_NORM_EPS", "1e-6"])
    default = _yacs_retinanet(dst)  # timm's eps 1e-5: what yacs users got before the key
    bgr = _images()[0][:96, :128]
    with torch.no_grad():
        x = lazy.preprocess_image([_d2_input(bgr)]).tensor
        want, got, off = (m.backbone(x) for m in (lazy, yacs, default))
    assert list(got) == list(want) == ["p3", "p4", "p5", "p6", "p7"]
    tolerance = 1e-6  # the same modules and weights: equal in practice
    for f in want:
        torch.testing.assert_close(
            got[f], want[f], rtol=0, atol=tolerance, msg=lambda m, f=f: f"FPN {f}: {m}"
        )
    # the default eps moves every level beyond the tolerance (~2e-5 to 7e-5 for outputs of
    # order 1-6): without the key, this test could not pass
    moved = {f: _maxdiff(off[f], want[f]) for f in want}
    assert min(moved.values()) > tolerance, moved


def _official_from_mmdet(sd: dict) -> dict:
    """mmdetection's PyramidVisionTransformerV2 state dict in the official PVT-v2 naming, written
    out here (not the converter's code) and checked against mmdetection's own pvt_convert."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        stage = int(parts[1]) + 1
        if parts[2] == "0":  # patch embedding
            sub = {"projection": "proj", "norm": "norm"}[parts[3]]
            out[f"patch_embed{stage}.{sub}.{parts[4]}"] = v
        elif parts[2] == "2":
            out[f"norm{stage}.{parts[3]}"] = v
        else:
            block = f"block{stage}.{parts[3]}."
            rest = ".".join(parts[4:])
            if rest.startswith("attn.attn.in_proj_"):
                param = rest.rsplit("_", 1)[1]
                c = v.shape[0] // 3
                out[block + f"attn.q.{param}"], out[block + f"attn.kv.{param}"] = v[:c], v[c:]
                continue
            rest = rest.replace("attn.attn.out_proj.", "attn.proj.")
            for mm, official in (("0", "fc1"), ("1", "dwconv.dwconv"), ("4", "fc2")):
                if rest.startswith(f"ffn.layers.{mm}."):
                    rest = f"mlp.{official}." + rest.split(".")[-1]
                    if official.startswith("fc") and v.dim() == 4:
                        v = v[:, :, 0, 0]
            out[block + rest] = v
    back = pvt_convert(out)
    assert set(back) == set(sd)
    for k in sd:
        torch.testing.assert_close(back[k], sd[k], rtol=0, atol=0)
    return out


def test_official_pvt_naming_converts_to_the_same_model(tmp_path):
    mm_model = _mmdet_model(MASK_RCNN, seed=3)
    # The official PVT-v2 code (detection/pvt_v2.py) is mmdetection's PyramidVisionTransformerV2
    # with nn.LayerNorm's default eps 1e-5 in the patch embeddings and spatial reductions
    # (mmdetection: 1e-6): with those set, the mmdetection model computes the official one.
    for m in mm_model.backbone.modules():
        if isinstance(m, (PatchEmbed, SpatialReductionAttention)) and getattr(m, "norm", None):
            m.norm.eps = 1e-5
    sd = mm_model.state_dict()
    backbone = _official_from_mmdet(
        {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    )
    assert "patch_embed1.proj.weight" in backbone and "block4.1.attn.kv.weight" in backbone
    official = {f"backbone.{k}": v for k, v in backbone.items()}
    official.update({k: v for k, v in sd.items() if not k.startswith("backbone.")})
    conversion, _, dst = _convert(mm_model, tmp_path, "official.pth", state_dict=official)
    assert conversion.backbone_naming == "official"
    assert conversion.config_overrides == []
    # the image whose width (200) is not a multiple of 32: the heads are tested above already
    worst = _parity("MaskRCNN", mm_model, _d2_model("MaskRCNN", dst), images=_images()[1:2])
    _record("MaskRCNN (official PVT keys)", worst)
    _assert_parity(worst)


def _save_mmdet(mm_model, path, meta=None, state_dict=None):
    sd = mm_model.state_dict() if state_dict is None else state_dict
    torch.save({"meta": meta or {"mmdet_version": "2.13.0"}, "state_dict": sd}, path)
    return path


def _coco_80_class_copy(dataset, out: Path) -> dict:
    """The tiny dataset with COCO's number of categories (80; its 3 shapes are the first 3)."""
    copy_ = {}
    for split, paths in dataset.items():
        data = json.loads(Path(paths["json_file"]).read_text())
        names = {c["id"]: c["name"] for c in data["categories"]}
        data["categories"] = [
            {"id": i, "name": names.get(i, f"class_{i}"), "supercategory": "x"}
            for i in range(1, 81)
        ]
        (out / f"{split}.json").write_text(json.dumps(data))
        copy_[split] = {"json_file": str(out / f"{split}.json"), "image_root": paths["image_root"]}
    return copy_


def test_tool_output_loads_in_predict_and_eval_only_without_missing_keys(tmp_path, tiny_dataset):
    src = _save_mmdet(_mmdet_model(RETINANET), tmp_path / "retinanet_pvtv2-b0_fpn_1x_coco.pth")
    out = tmp_path / "retinanet_d2.pth"
    # no --config-file: the COCO config of the checkpoint's detector and variant
    r = run_tool("tools/convert_mmdet_checkpoint.py", src, out)
    config = "COCO/retinanet_pvt_v2_b0_fpn_1x.py"
    eps = "model.backbone.bottom_up.patch_and_sr_norm_eps=1e-06"
    assert f"--config-file {config} --eval-only train.init_checkpoint={out} {eps}" in r.stdout
    assert "anchors reordered [0, 3, 6, 1, 4, 7, 2, 5, 8]" in r.stdout + r.stderr

    loaded = "176 matched, 0 missing, 0 unexpected, 0 shape mismatches"  # the backbone
    fvcore_warnings = ("not found in the checkpoint", "not used by the model", "Skip loading")
    image = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(_images()[1][:, :, ::-1]).save(image)
    r = run_tool(
        "tools/predict.py",
        *("--config-file", config, "--checkpoint", out, "--input", image),
        *("--output", tmp_path / "pred", "--confidence-threshold", "0.0", eps),
    )
    assert loaded in r.stdout + r.stderr
    assert not any(w in r.stdout + r.stderr for w in fvcore_warnings)
    assert (tmp_path / "pred" / "predictions.json").is_file()

    # --eval-only with a COCO-format set of COCO's 80 classes (the fine-tune config, whose
    # number of classes comes from the json): the whole checkpoint loads, nothing is skipped
    data = _coco_80_class_copy(tiny_dataset, tmp_path)
    cfg = tiny_config(tmp_path, data, "retinanet_pvt_v2_b0_fpn_coco_json.py", overrides=[eps])
    r = run_train_net("--config-file", cfg, "--eval-only", f"train.init_checkpoint={out}")
    assert loaded in r.stdout + r.stderr
    assert "Fine-tuning: skipped" not in r.stdout + r.stderr
    assert not any(w in r.stdout + r.stderr for w in fvcore_warnings)
    assert json.loads((tmp_path / "out" / "eval_results.json").read_text())["bbox"]


def test_tool_uses_the_config_given_and_its_overrides(tmp_path):
    src = _save_mmdet(_mmdet_model(RETINANET), tmp_path / "retinanet.pth")
    b2 = "COCO/retinanet_pvt_v2_b2_fpn_1x.py"
    tool = [sys.executable, str(REPO / "tools/convert_mmdet_checkpoint.py")]
    r = subprocess.run(
        [*tool, "--config-file", b2, src, tmp_path / "no.pth"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert r.returncode == 1
    assert "error: The checkpoint's backbone is pvt_v2_b0, the config's pvt_v2_b2" in r.stderr
    assert not (tmp_path / "no.pth").exists()
    # options after the positional arguments and the overrides count too
    name = "model.backbone.bottom_up.name=pvt_v2_b0"
    r = run_tool(
        "tools/convert_mmdet_checkpoint.py", src, tmp_path / "b0.pth", name, "--config-file", b2
    )
    eps = "model.backbone.bottom_up.patch_and_sr_norm_eps=1e-06"
    assert (
        f"--config-file {b2} --eval-only train.init_checkpoint={tmp_path / 'b0.pth'} {name} {eps}"
        in r.stdout
    )


@pytest.mark.parametrize("detector", ["MaskRCNN", "CascadeMaskRCNN"])
def test_fine_tuning_from_a_converted_checkpoint_reinitialises_only_class_layers(
    detector, tmp_path, caplog
):
    cascade = detector == "CascadeMaskRCNN"
    cfg = model_zoo.get_config(D2_CONFIGS[detector])
    cfg.model.backbone.bottom_up.name = "pvt_v2_b0"
    conversion, _, dst = _convert(
        _mmdet_model(CASCADE if cascade else MASK_RCNN), tmp_path, cfg=cfg
    )
    cfg.model.roi_heads.num_classes = 3
    model = instantiate(cfg.model)
    with caplog.at_level("INFO", logger="pvt_fpn_d2.engine.checkpoint"):
        PVTCheckpointer(model).resume_or_load(str(dst), resume=False)
    stages = [f".{k}" for k in range(3)] if cascade else [""]
    class_specific = {
        f"roi_heads.{head}{stage}.{layer}.{p}"
        for head, layers in (
            ("box_predictor", ("cls_score", "bbox_pred")),
            ("mask_head", ("predictor",)),
        )
        for layer in layers
        for stage in stages
        for p in ("weight", "bias")
    }
    assert f"Fine-tuning: skipped {len(class_specific)} class-specific parameters" in caplog.text
    loaded = model.state_dict()
    for k, v in conversion.state_dict.items():
        if k not in class_specific:
            assert torch.equal(loaded[k], v), k
    assert all(loaded[k].shape != conversion.state_dict[k].shape for k in class_specific)


def test_library_does_not_import_mmdetection():
    code = (
        "import sys, pvt_fpn_d2, pvt_fpn_d2.engine, pvt_fpn_d2.modeling.mmdet_weights\n"
        "pvt_fpn_d2.PVTCheckpointer\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mmdet', 'mmcv', 'mmengine')))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# --- bad input: each refused with a message that names the problem ---------------------------


def _refused(tmp_path, sd=None, config=None, overrides=(), path=None, meta=None):
    if path is None:
        path = tmp_path / "bad.pth"
        torch.save({"meta": meta or {"mmdet_version": "2.13.0"}, "state_dict": sd}, path)
    cfg = None if config is None else apply_overrides(model_zoo.get_config(config), list(overrides))
    with pytest.raises((MMDetCheckpointError, UnsafeCheckpointError)) as e:
        convert_mmdet_checkpoint(str(path), str(tmp_path / "out.pth"), cfg)
    assert not (tmp_path / "out.pth").exists()
    return str(e.value)


def test_refuses_a_checkpoint_of_another_backbone(tmp_path):
    sd = {k: v for k, v in _mmdet_model(MASK_RCNN).state_dict().items() if "backbone." not in k}
    sd["backbone.conv1.weight"] = torch.zeros(64, 3, 7, 7)
    sd["backbone.layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    message = _refused(tmp_path, sd)
    assert "backbone is not PVT-v2 (a ResNet?)" in message
    assert "backbone.conv1.weight" in message


def test_refuses_a_checkpoint_of_another_detector(tmp_path):
    sd = {k: v for k, v in _mmdet_model(RETINANET).state_dict().items()}
    sd = {
        k.replace("retina_cls", "atss_cls").replace("retina_reg", "atss_reg"): v
        for k, v in sd.items()
    }
    sd["bbox_head.atss_centerness.weight"] = torch.zeros(9, 256, 3, 3)
    message = _refused(tmp_path, sd)
    assert "Not an mmdetection Mask R-CNN, Faster R-CNN, RetinaNet or Cascade Mask R-CNN" in message
    assert "bbox_head.atss_centerness, bbox_head.atss_cls, bbox_head.atss_reg" in message
    cascade = _mmdet_model(CASCADE).state_dict()
    # a Cascade R-CNN without masks has no config here
    box_only = {k: v for k, v in cascade.items() if not k.startswith("roi_head.mask_head.")}
    assert "Cascade R-CNN checkpoint without masks" in _refused(tmp_path, box_only)
    # a Cascade Mask R-CNN into a Mask R-CNN config: the cascade configs are named
    message = _refused(tmp_path, cascade, config="COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py")
    assert "use a cascade_mask_rcnn config of this project" in message


def test_refuses_a_truncated_file(tmp_path):
    path = _save_mmdet(_mmdet_model(RETINANET), tmp_path / "full.pth")
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    message = _refused(tmp_path, path=tmp_path / "cut.pth")
    assert "not a complete torch checkpoint (truncated or corrupted" in message


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "code_ran"
    sd = _mmdet_model(RETINANET).state_dict()
    torch.save({"meta": {"hook": _RunsCode(marker)}, "state_dict": sd}, tmp_path / "evil.pth")
    message = _refused(tmp_path, path=tmp_path / "evil.pth")
    assert "could run code from the file" in message
    assert not marker.exists()


def test_refuses_a_config_of_another_variant_or_number_of_classes_or_detector(tmp_path):
    sd = _mmdet_model(MASK_RCNN).state_dict()
    message = _refused(tmp_path, sd, "COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py")
    assert "The checkpoint's backbone is pvt_v2_b0, the config's pvt_v2_b2" in message
    assert (
        "backbone.bottom_up.model.patch_embed.proj.weight: (32, 3, 7, 7) in the checkpoint"
        in message
    )
    message = _refused(
        tmp_path, sd, "COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py", ["model.roi_heads.num_classes=3"]
    )
    assert "The checkpoint has 80 classes, the config 3" in message
    assert "roi_heads.box_predictor.cls_score.weight: (81, 1024) in the checkpoint" in message
    message = _refused(tmp_path, sd, "COCO/retinanet_pvt_v2_b0_fpn_1x.py")
    assert "The checkpoint is an mmdetection MaskRCNN, the config builds a RetinaNet" in message
    message = _refused(
        tmp_path,
        sd,
        "COCO/faster_rcnn_pvt_v2_b2_fpn_1x.py",
        ["model.backbone.bottom_up.name=pvt_v2_b0"],
    )
    assert "the config builds a FasterRCNN" in message
    # each tensor with no place, by its mmdetection name
    assert "roi_head.mask_head.conv_logits.weight (as roi_heads.mask_head.predictor." in message
    assert "(12 in all)" not in message


def test_refuses_mmdetection_1x_and_detectron2_checkpoints(tmp_path):
    sd = _mmdet_model(RETINANET).state_dict()
    assert "puts the background class first" in _refused(
        tmp_path, sd, meta={"mmdet_version": "1.2.0"}
    )
    conversion, _, dst = _convert(_mmdet_model(RETINANET), tmp_path)
    message = _refused(tmp_path, path=dst)
    assert "already a detectron2 checkpoint" in message


def test_anchor_permutation_is_mmdetections_ratio_major_order():
    # detectron2 anchor (size s, ratio r) = s * 3 + r; mmdetection's = r * 3 + s
    assert anchor_permutation(3, 3) == [0, 3, 6, 1, 4, 7, 2, 5, 8]
    assert anchor_permutation(1, 3) == [0, 1, 2]
    assert anchor_permutation(2, 3) == [0, 2, 4, 1, 3, 5]


@pytest.mark.parametrize(
    "config, zoo_config",
    [
        (MASK_RCNN, "COCO/mask_rcnn_pvt_v2_b2_li_fpn_1x.py"),
        (CASCADE, "COCO/cascade_mask_rcnn_pvt_v2_b2_li_fpn_3x.py"),
    ],
    ids=["MaskRCNN", "CascadeMaskRCNN"],
)
def test_official_b2_li_checkpoint_fills_the_b2_li_config(config, zoo_config, tmp_path):
    """b2_li (linear spatial reduction) exists in the official naming only (mmdetection's own
    PVT-v2 has no linear attention): its detector converts into the config the tool picks
    (the official 3x Cascade's is a 3x config), every key in place, values kept."""
    from timm import create_model

    from .weight_formats import timm_to_official

    b2 = dict(PVT_V2_B0, embed_dims=64, num_layers=[3, 4, 6, 3])
    mm = MODELS.build(
        ConfigDict(
            copy.deepcopy(config),
            backbone=b2,
            neck=dict(config["neck"], in_channels=[64, 128, 320, 512]),
        )
    )
    backbone = create_model("pvt_v2_b2_li", pretrained=False, num_classes=0).state_dict()
    sd = {f"backbone.{k}": v for k, v in timm_to_official(backbone).items()}
    assert (
        "backbone.block1.0.attn.sr.weight" in sd
        and sd["backbone.block1.0.attn.sr.weight"].shape[-1] == 1
    )
    sd.update({k: v for k, v in mm.state_dict().items() if not k.startswith("backbone.")})
    conversion, _, dst = _convert(mm, tmp_path, state_dict=sd)
    assert (conversion.variant, conversion.config, conversion.config_overrides) == (
        "pvt_v2_b2_li",
        zoo_config,
        [],
    )
    for k, v in backbone.items():
        assert torch.equal(conversion.state_dict[f"backbone.bottom_up.model.{k}"], v), k
