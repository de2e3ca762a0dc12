# Monocular depth CPU demo: PVT-v2-b0 + FPN from scratch on the synthetic depth set (a slanted
# ground plane 2-9 m and shapes in front of it at a depth that follows their size; 96x96 px):
#
#   python datasets/prepare_synthetic.py --out datasets/synthetic --depth
#   python train_net.py --config-file configs/Depth/depth_pvt_v2_b0_synthetic.py
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler

from .depth_pvt_v2_b2_nyu import dataloader, dataset, model, optimizer, train

dataset.update(
    train_images="datasets/synthetic/depth/train/images",
    train_depth="datasets/synthetic/depth/train/depth",
    val_images="datasets/synthetic/depth/val/images",
    val_depth="datasets/synthetic/depth/val/depth",
)
dataloader.train.dataset.names.name = "synthetic_depth_train"
dataloader.test.dataset.names.name = "synthetic_depth_val"
dataloader.train.mapper.augmentations = [L(T.RandomFlip)(horizontal=True)]
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 1
dataloader.test.num_workers = 1

model.backbone.bottom_up.name = "pvt_v2_b0"
model.backbone.bottom_up.drop_path_rate = 0.0
model.backbone.out_channels = 64
model.head.conv_dims = 64

# 600 iterations x 8 images = 16 epochs of the 300 images
optimizer.lr = 1e-3
train.max_iter = 600
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.01),
    warmup_length=30 / 600,
    warmup_factor=0.01,
)
train.init_checkpoint = ""  # from scratch: nothing downloaded
train.eval_period = 300
train.checkpointer.period = 300
train.log_period = 20
train.seed = 0
train.output_dir = "output/depth_demo"
