# The semantic segmentation CPU demo with detectron2's Semantic FPN head instead of the concat
# head: same data, backbone and schedule as pvt_v2_b0_fpn_concat_synthetic.py.
#
#   python train_net.py --config-file configs/SemSeg/semantic_fpn_pvt_v2_b0_synthetic.py
from ..common.models.sem_seg_pvt_v2_fpn import semantic_fpn_head
from .pvt_v2_b0_fpn_concat_synthetic import (
    dataloader,
    dataset,
    lr_multiplier,
    model,
    optimizer,
    train,
)

semantic_fpn_head.update(
    num_classes=model.sem_seg_head.num_classes, ignore_value=model.sem_seg_head.ignore_value
)
model.sem_seg_head = semantic_fpn_head
del semantic_fpn_head  # now model.sem_seg_head; not a top-level config entry
train.output_dir = "output/semantic_fpn_demo"
