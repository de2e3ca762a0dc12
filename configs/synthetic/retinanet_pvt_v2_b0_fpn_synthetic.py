# PVT-v2-b0 RetinaNet trained from scratch on the synthetic shapes dataset with the demo's recipe
# (mask_rcnn_pvt_v2_b0_fpn_synthetic.py: 160 px images, batch 4, lr 2e-3, gradient clipping, a
# cosine schedule after a warm-up of a sixth of the run), for 1500 iterations: the focal loss
# learns from scratch more slowly than the R-CNN heads (about 6 minutes on 2 CPU cores); a
# box-only model for the deployment docs (int8).
#   python datasets/prepare_synthetic.py
#   python train_net.py --config-file configs/synthetic/retinanet_pvt_v2_b0_fpn_synthetic.py
from detectron2.layers import ShapeSpec

from ..finetune.retinanet_pvt_v2_b0_fpn_coco_json import model
from .mask_rcnn_pvt_v2_b0_fpn_synthetic import (
    dataloader,
    dataset,
    lr_multiplier,
    optimizer,
    train,
)

dataloader.train.mapper.use_instance_mask = False
dataloader.evaluator.tasks = ("bbox",)
dataloader.evaluator.max_dets_per_image = "${model.max_detections_per_image}"
train.best_checkpoint.metric = "bbox/AP"
train.output_dir = "output/retinanet_synthetic"
train.max_iter = 1500
train.eval_period = 1500

# from scratch, as the demo
model.backbone.bottom_up.drop_path_rate = 0.0
# anchors for 12-72 px objects on P3-P7 (COCO: 32-512 px)
model.anchor_generator.sizes = [
    [x, x * 2 ** (1 / 3), x * 2 ** (2 / 3)] for x in (16, 32, 64, 128, 256)
]
# FPN and head at 64 channels, as the demo's Mask R-CNN
C = 64
model.backbone.out_channels = C
model.head.input_shape = [ShapeSpec(channels=C)] * 5
model.head.conv_dims = [C] * 4
