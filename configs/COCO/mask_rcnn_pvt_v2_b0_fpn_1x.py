# Mask R-CNN, PVT-v2-b0 + FPN, 1x. Published: 38.2 box AP / 36.2 mask AP.
from .mask_rcnn_pvt_v2_b2_fpn_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.name = "pvt_v2_b0"
