# RetinaNet, PVT-v2-b2 + FPN (P3-P7, P6 from C5), 1x, the official PVT-v2 recipe.
# Published (PVT-v2 README, mmdetection): 44.6 box AP on COCO val2017.
from ..common.coco_schedule import lr_multiplier_1x as lr_multiplier
from ..common.coco_schedule import max_iter_1x
from ..common.data.coco import dataloader
from ..common.models.retinanet_pvt_v2_fpn import model
from ..common.optim import AdamW as optimizer
from ..common.train import train

model.backbone.bottom_up.name = "pvt_v2_b2"
dataloader.train.mapper.use_instance_mask = False
dataloader.evaluator.tasks = ("bbox",)
train.best_checkpoint.metric = "bbox/AP"
dataloader.train.total_batch_size = 16
train.max_iter = max_iter_1x
optimizer.lr = 1e-4

# detections kept per image (COCO: 100); the evaluator counts as many
model.max_detections_per_image = 100
dataloader.evaluator.max_dets_per_image = "${model.max_detections_per_image}"
