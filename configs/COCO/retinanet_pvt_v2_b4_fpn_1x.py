# RetinaNet, PVT-v2-b4 + FPN, 1x. Published: 46.1 box AP.
# The official b4 recipe trains 1 image/GPU x 8 GPUs with lr 1e-4 / 1.4 (the lr divided
# by ~sqrt(2) for half the batch), still 12 epochs.
from ..common.coco_schedule import epoch_schedule
from .retinanet_pvt_v2_b2_fpn_1x import dataloader, model, optimizer, train

model.backbone.bottom_up.name = "pvt_v2_b4"
dataloader.train.total_batch_size = 8
train.max_iter, lr_multiplier = epoch_schedule(12, [8, 11], batch_size=8)
optimizer.lr = 1e-4 / 1.4
