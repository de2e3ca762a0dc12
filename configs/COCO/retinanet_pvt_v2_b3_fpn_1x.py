# RetinaNet, PVT-v2-b3 + FPN, 1x. Published: 45.9 box AP.
from .retinanet_pvt_v2_b2_fpn_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.name = "pvt_v2_b3"
