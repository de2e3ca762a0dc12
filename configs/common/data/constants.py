# Pixel statistics, in one place (as upstream detectron2's configs/common/data/constants.py,
# which detectron2 v0.6 lacks). PVT-v2 ImageNet weights expect RGB input normalised with the
# ImageNet mean/std in 0-255 units (mmdetection's img_norm_cfg in the official PVT configs).
constants = dict(
    imagenet_rgb256_mean=[123.675, 116.28, 103.53],
    imagenet_rgb256_std=[58.395, 57.12, 57.375],
)
