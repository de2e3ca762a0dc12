# The classification demo with timm's own head instead of the pyramid's: GAP of res5 (the last
# PVT-v2 stage, no FPN) + linear; same data, variant and schedule, to compare the two.
from .classifier_pvt_v2_b0_synthetic import (
    dataloader,
    dataset,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.backbone = model.backbone.bottom_up
model.in_feature = "res5"
train.output_dir = "output/classifier_res5_demo"
