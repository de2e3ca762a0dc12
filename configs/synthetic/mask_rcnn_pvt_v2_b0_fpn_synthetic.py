# The CPU demo (`make demo`): PVT-v2-b0 Mask R-CNN trained from scratch on the synthetic
# shapes dataset (datasets/prepare_synthetic.py: 300 train / 50 val images of 160x160 px,
# 3 classes, occlusion, textured backgrounds), on 2 CPU cores in about 6 minutes.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.solver import WarmupParamScheduler
from detectron2.utils.env import TORCH_VERSION
from fvcore.common.param_scheduler import CosineParamScheduler

from ..finetune.mask_rcnn_pvt_v2_b0_fpn_coco_json import (
    dataloader,
    dataset,
    model,
    optimizer,
    train,
)

dataset.update(
    train_json="datasets/synthetic/train/annotations.json",
    train_images="datasets/synthetic/train/images",
    val_json="datasets/synthetic/val/annotations.json",
    val_images="datasets/synthetic/val/images",
)
dataloader.train.dataset.names.name = "synthetic_train"
dataloader.test.dataset.names.name = "synthetic_val"

# the images' own size (objects are 12-72 px), with flips
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=160, max_size=160),
    L(T.RandomFlip)(horizontal=True),
    L(T.RandomFlip)(horizontal=False, vertical=True),
]
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=160, max_size=160)
]
dataloader.train.total_batch_size = 4
# one worker (the COCO configs: default_num_workers(), up to 4): it keeps up with these small
# images and leaves the other core of a 2-core machine to the model; the demo's figures in the
# docs were measured with it (the flips each worker draws depend on the number of workers)
dataloader.train.num_workers = 1
dataloader.test.num_workers = 1

# from scratch: no ImageNet weights, no stochastic depth in so short a schedule
train.init_checkpoint = ""
model.backbone.bottom_up.drop_path_rate = 0.0
# at most 8 objects per image: far fewer proposals and RoI samples than COCO's
model.proposal_generator.pre_nms_topk = (600, 300)
model.proposal_generator.post_nms_topk = (300, 100)
model.roi_heads.batch_size_per_image = 64
model.roi_heads.box_pooler.sampling_ratio = 1
model.roi_heads.mask_pooler.sampling_ratio = 1
# anchors for 12-72 px objects (COCO: 32-512 px)
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
# class-agnostic boxes and masks: shared across the 3 shapes, they learn faster from scratch
model.roi_heads.box_predictor.cls_agnostic_bbox_reg = True
model.roi_heads.mask_head.num_classes = 1
# FPN and heads at 64 channels and a 512-wide box head (the COCO configs: 256 and 1024): on a
# CPU the heads' convolutions and RoIAlign's backward pass cost more than the backbone, and these
# shapes need no more. 2.3x less time per iteration than 128 channels, so twice the iterations.
C = 64
model.backbone.out_channels = C
model.proposal_generator.head.in_channels = C
model.roi_heads.box_head.input_shape = ShapeSpec(channels=C, height=7, width=7)
model.roi_heads.box_head.fc_dims = [512, 512]
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=512)
model.roi_heads.mask_head.input_shape = ShapeSpec(channels=C, height=14, width=14)
model.roi_heads.mask_head.conv_dims = [C] * 5

# fused AdamW: one kernel for all parameters, 5x faster steps on the CPU than the default
# multi-tensor path (10 vs 50 ms here); PyTorch has it for CPUs from 2.4 on
optimizer.fused = TORCH_VERSION >= (2, 4)
# from scratch at batch 4: lr 2e-3 after a warm-up of 100 iterations, cosine down to 1%, the
# gradient norm clipped at 1.0; 600 iterations (docs/GETTING_STARTED.md: AP over seeds)
optimizer.lr = 2e-3
train.clip_grad.update(enabled=True, max_norm=1.0)
train.max_iter = 600
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.01),
    warmup_length=100 / 600,
    warmup_factor=0.01,
)
train.eval_period = 600
train.checkpointer.period = 200
train.log_period = 20
train.seed = 0
train.output_dir = "output/demo"
