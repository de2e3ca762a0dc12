# Fine-tune PVT-v2-b0 Faster R-CNN (boxes only) on your own COCO-format data, with the same
# dataset.* overrides as mask_rcnn_pvt_v2_b0_fpn_coco_json.py: for boxes-only exports (every
# segmentation empty), which a Mask R-CNN config refuses.
from .mask_rcnn_pvt_v2_b0_fpn_coco_json import (
    dataloader,
    dataset,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.roi_heads.update(mask_in_features=None, mask_pooler=None, mask_head=None)
dataloader.train.mapper.use_instance_mask = False
dataloader.evaluator.tasks = ("bbox",)
train.best_checkpoint.metric = "bbox/AP"
