# Faster R-CNN, PVT-v2-b2 + FPN, 1x: the Mask R-CNN recipe without the mask branch.
from .mask_rcnn_pvt_v2_b2_fpn_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.update(mask_in_features=None, mask_pooler=None, mask_head=None)
dataloader.train.mapper.use_instance_mask = False
dataloader.evaluator.tasks = ("bbox",)
train.best_checkpoint.metric = "bbox/AP"
