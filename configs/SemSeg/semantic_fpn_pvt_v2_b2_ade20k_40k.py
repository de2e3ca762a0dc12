# Semantic FPN (detectron2's SemSegFPNHead) with PVT-v2-b2 on ADE20K: the model the PVT papers
# report on ADE20K, with their recipe (see pvt_v2_b2_fpn_concat_ade20k_40k.py: AdamW 2e-4, poly
# 0.9, 40k iterations of 32 images of 512x512). Only the head differs from that config.
from ..common.models.sem_seg_pvt_v2_fpn import semantic_fpn_head
from .pvt_v2_b2_fpn_concat_ade20k_40k import dataloader, lr_multiplier, model, optimizer, train

semantic_fpn_head.update(
    num_classes=model.sem_seg_head.num_classes, ignore_value=model.sem_seg_head.ignore_value
)
model.sem_seg_head = semantic_fpn_head
del semantic_fpn_head  # now model.sem_seg_head; not a top-level config entry
