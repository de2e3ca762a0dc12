# UPerNet with PVT-v2-b1 on ADE20K: the b2 config with another variant.
from .upernet_pvt_v2_b2_ade20k_160k import dataloader, lr_multiplier, model, optimizer, train

model.backbone.name = "pvt_v2_b1"
train.output_dir = "output/upernet_pvt_v2_b1_ade20k"
