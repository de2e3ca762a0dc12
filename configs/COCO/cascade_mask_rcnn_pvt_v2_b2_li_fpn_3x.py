# Cascade Mask R-CNN, PVT-v2-b2-Linear + FPN, 3x multi-scale: the official
# cascade_mask_rcnn_pvt_v2_b2_li_fpn_3x_mstrain_fp16.py. Published: 50.9 box AP / 44.0 mask AP.
from .cascade_mask_rcnn_pvt_v2_b2_fpn_3x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.name = "pvt_v2_b2_li"
