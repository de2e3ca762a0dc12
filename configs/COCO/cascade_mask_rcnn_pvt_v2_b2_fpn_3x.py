# Cascade Mask R-CNN, PVT-v2-b2 + FPN, 3x (36 epochs) with multi-scale training and random
# crop: the official PVT-v2 3x model (whai362/PVT detection/configs/
# cascade_mask_rcnn_pvt_v2_b2_fpn_3x_mstrain_fp16.py). Published: 51.1 box AP / 44.4 mask AP.
# As mmdetection's CascadeRoIHead: a mask head per stage, stage loss weights 1, 0.5, 0.25, box
# heads of 4 convs (SyncBN) + 1 fc with class-specific regression and a GIoU loss (weight 10)
# (pvt_fpn_d2.modeling.cascade.CascadeMaskROIHeads).
import copy

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads import FastRCNNConvFCHead, FastRCNNOutputLayers

from pvt_fpn_d2.modeling.cascade import MMDET_STAGE_LOSS_WEIGHTS, CascadeMaskROIHeads

from ..common.coco_schedule import lr_multiplier_3x as lr_multiplier
from ..common.coco_schedule import max_iter_3x
from .mask_rcnn_pvt_v2_b2_fpn_1x import dataloader, model, optimizer, train

# per stage: IoU of a positive, and mmdetection's target_stds (detectron2's weights = 1 / std)
CASCADE_IOUS = (0.5, 0.6, 0.7)
CASCADE_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))

_mask_head = model.roi_heads.pop("mask_head")
_mask_head.num_classes = "${...num_classes}"  # from inside the list of heads
for k in ["box_head", "box_predictor", "proposal_matcher"]:
    model.roi_heads.pop(k)
model.roi_heads.update(
    _target_=CascadeMaskROIHeads,
    box_heads=[
        L(FastRCNNConvFCHead)(
            input_shape=ShapeSpec(channels=256, height=7, width=7),
            conv_dims=[256] * 4,
            fc_dims=[1024],
            conv_norm="SyncBN",
        )
        for _ in CASCADE_IOUS
    ],
    box_predictors=[
        L(FastRCNNOutputLayers)(
            input_shape=ShapeSpec(channels=1024),
            test_score_thresh=0.05,
            test_topk_per_image=100,  # detections kept per image (COCO: 100)
            box2box_transform=L(Box2BoxTransform)(weights=[1.0 / s for s in std]),
            cls_agnostic_bbox_reg=False,
            num_classes="${...num_classes}",
            box_reg_loss_type="giou",
            loss_weight={"loss_box_reg": 10.0},
        )
        for std in CASCADE_STDS
    ],
    proposal_matchers=[
        L(Matcher)(thresholds=[iou], labels=[0, 1], allow_low_quality_matches=False)
        for iou in CASCADE_IOUS
    ],
    mask_heads=[copy.deepcopy(_mask_head) for _ in CASCADE_IOUS],
    stage_loss_weights=MMDET_STAGE_LOSS_WEIGHTS,
)
dataloader.evaluator.max_dets_per_image = "${model.roi_heads.box_predictors[2].test_topk_per_image}"

# DETR-style multi-scale + crop (the official AutoAugment policies): with p=0.5 resize to
# 400-600 and crop 384-600, then resize the short side to 480-800 (step 32), max 1333; flip.
dataloader.train.mapper.augmentations = [
    L(T.RandomApply)(
        tfm_or_aug=L(T.AugmentationList)(
            augs=[
                L(T.ResizeShortestEdge)(short_edge_length=[400, 500, 600], sample_style="choice"),
                L(T.RandomCrop)(crop_type="absolute_range", crop_size=(384, 600)),
            ]
        ),
        prob=0.5,
    ),
    L(T.ResizeShortestEdge)(
        short_edge_length=tuple(range(480, 801, 32)), sample_style="choice", max_size=1333
    ),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.mapper.recompute_boxes = True  # boxes from the cropped masks

# 3x: AdamW lr 1e-4, weight decay 0.05, no decay on norm layers, 36 epochs
train.max_iter = max_iter_3x
optimizer.lr = 1e-4
optimizer.weight_decay = 0.05
optimizer.params.weight_decay_norm = 0.0
