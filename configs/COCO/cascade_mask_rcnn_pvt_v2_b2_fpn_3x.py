# Cascade Mask R-CNN, PVT-v2-b2 + FPN, 3x (36 epochs) with multi-scale training and random
# crop, the official PVT-v2 3x recipe. Published: 51.1 box AP / 44.4 mask AP (mmdetection,
# three mask heads; detectron2's Cascade R-CNN has one).
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.modeling.roi_heads import CascadeROIHeads
from detectron2.model_zoo import get_config

from ..common.coco_schedule import lr_multiplier_3x as lr_multiplier
from ..common.coco_schedule import max_iter_3x
from .mask_rcnn_pvt_v2_b2_fpn_1x import dataloader, model, optimizer, train

# detectron2's cascade heads (common/models/cascade_rcnn.py) on this model
cascade = get_config("common/models/cascade_rcnn.py").model.roi_heads
for k in ["box_head", "box_predictor", "proposal_matcher"]:
    model.roi_heads.pop(k)
model.roi_heads.update(
    _target_=CascadeROIHeads,
    box_heads=cascade.box_heads,
    box_predictors=cascade.box_predictors,
    proposal_matchers=cascade.proposal_matchers,
)
# the last stage's predictor decides the detections kept per image
model.roi_heads.box_predictors[-1].test_topk_per_image = 100
dataloader.evaluator.max_dets_per_image = "${model.roi_heads.box_predictors[2].test_topk_per_image}"

# DETR-style multi-scale + crop (as Swin/MViTv2): with p=0.5 resize to 400-600 and crop
# 384-600, then resize the short side to 480-800 (step 32), max 1333; flip.
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
