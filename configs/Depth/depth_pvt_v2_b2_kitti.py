# Monocular depth on KITTI (Eigen split, sparse LiDAR ground truth) with PVT-v2-b2 + FPN: the
# NYU config with BTS's KITTI setting: depth up to 80 m, 16-bit PNGs of depth x 256 (0: no
# measurement, ignored), random 352x704 crops.
from .depth_pvt_v2_b2_nyu import dataloader, lr_multiplier, model, optimizer, train, dataset

model.max_depth = 80.0
dataset.update(
    train_images="datasets/kitti/train/images",
    train_depth="datasets/kitti/train/depth",
    val_images="datasets/kitti/val/images",
    val_depth="datasets/kitti/val/depth",
    depth_scale=256.0,
    image_ext=".png",
)
dataloader.train.mapper.augmentations[0].crop_size = (352, 704)
train.output_dir = "output/depth_pvt_v2_b2_kitti"
