# Mask R-CNN, PVT-v2-b2 + FPN, 1x (12 epochs), the official PVT-v2 recipe.
# Published (PVT-v2 README, mmdetection): 45.3 box AP / 41.2 mask AP on COCO val2017.
from ..common.coco_schedule import lr_multiplier_1x as lr_multiplier
from ..common.coco_schedule import max_iter_1x
from ..common.data.coco import dataloader
from ..common.models.mask_rcnn_pvt_v2_fpn import model
from ..common.optim import AdamW as optimizer
from ..common.train import train

model.backbone.bottom_up.name = "pvt_v2_b2"
dataloader.train.total_batch_size = 16
train.max_iter = max_iter_1x
optimizer.lr = 2e-4

# detections kept per image (COCO: 100); the evaluator counts as many
model.roi_heads.box_predictor.test_topk_per_image = 100
dataloader.evaluator.max_dets_per_image = "${model.roi_heads.box_predictor.test_topk_per_image}"
