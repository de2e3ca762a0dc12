# The semantic segmentation CPU demo with UPerNet instead of the concat head: same data,
# variant (PVT-v2-b0 from scratch), augmentations and schedule as pvt_v2_b0_fpn_concat_synthetic.py.
#
#   python train_net.py --config-file configs/SemSeg/upernet_pvt_v2_b0_synthetic.py
from ..common.models.upernet_pvt_v2 import model
from .pvt_v2_b0_fpn_concat_synthetic import (
    CLASSES,
    dataloader,
    dataset,
    lr_multiplier,
    optimizer,
    train,
)

model.backbone.name = "pvt_v2_b0"
model.backbone.drop_path_rate = 0.0
model.sem_seg_head.num_classes = len(CLASSES)  # override with dataset.classes
# 128 channels (ADE20K: 512), as the concat demo's 128-channel FPN; BN in one process
model.sem_seg_head.channels = 128
model.sem_seg_head.aux_channels = 64
model.sem_seg_head.norm = "BN"
train.output_dir = "output/upernet_demo"
