# The semantic segmentation CPU demo: PVT-v2-b0 + FPN + the seed design's concat head, trained
# from scratch on the synthetic shapes dataset (datasets/prepare_synthetic.py: 300 train / 50 val
# images of 160x160 px; label PNGs 0 background, 1 circle, 2 triangle, 3 square).
#
#   python datasets/prepare_synthetic.py --out datasets/synthetic
#   python train_net.py --config-file configs/SemSeg/pvt_v2_b0_fpn_concat_synthetic.py
#
# It is also the template for your own folder of images + label PNGs (same file names; each
# label pixel a class index or model.sem_seg_head.ignore_value, 255): override dataset.* on the
# command line, e.g.
#   dataset.train_images=data/train/img dataset.train_labels=data/train/lbl \
#   dataset.val_images=data/val/img dataset.val_labels=data/val/lbl \
#   'dataset.classes=[background,road,car]' model.sem_seg_head.num_classes=3
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import PolynomialDecayParamScheduler

from pvt_fpn_d2.data import SYNTHETIC_CLASSES
from pvt_fpn_d2.data import register_sem_seg_folder

from .pvt_v2_b2_fpn_concat_ade20k_40k import dataloader, model, optimizer, train

# label k = class k; 0 is the background
CLASSES = ("background",) + tuple(SYNTHETIC_CLASSES)

dataset = dict(
    train_images="datasets/synthetic/train/images",
    train_labels="datasets/synthetic/train/sem_seg",
    val_images="datasets/synthetic/val/images",
    val_labels="datasets/synthetic/val/sem_seg",
    classes=list(CLASSES),
)
dataloader.train.dataset.names = L(register_sem_seg_folder)(
    name="synthetic_sem_seg_train",
    image_root="${dataset.train_images}",
    label_root="${dataset.train_labels}",
    classes="${dataset.classes}",
    ignore_label="${model.sem_seg_head.ignore_value}",
)
dataloader.test.dataset.names = L(register_sem_seg_folder)(
    name="synthetic_sem_seg_val",
    image_root="${dataset.val_images}",
    label_root="${dataset.val_labels}",
    classes="${dataset.classes}",
    ignore_label="${model.sem_seg_head.ignore_value}",
)
model.sem_seg_head.num_classes = len(CLASSES)  # override with dataset.classes

# the images' own size (shapes of 12-72 px), with flips; no photometric jitter (colours are
# random per shape already)
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=160, max_size=160),
    L(T.RandomFlip)(horizontal=True),
    L(T.RandomFlip)(horizontal=False, vertical=True),
]
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=160, max_size=160)
]
# one worker (the COCO configs: default_num_workers(), up to 4): it keeps up with these small
# images and leaves the other core of a 2-core machine to the model; the demo's figures in the
# docs were measured with it (the flips each worker draws depend on the number of workers)
dataloader.train.num_workers = 1
dataloader.test.num_workers = 1

# from scratch: no ImageNet weights, no stochastic depth in so short a schedule
train.init_checkpoint = ""
model.backbone.bottom_up.name = "pvt_v2_b0"
model.backbone.bottom_up.drop_path_rate = 0.0
# FPN at 128 channels (ADE20K configs: 256): the concat head's input is 4 x 128 channels, and
# the FPN's 3x3 convs at stride 4 cost 4x less on a CPU
model.backbone.out_channels = 128

# 1000 iterations x 4 images ~ 13 epochs of the 300 images, about 10 minutes on 2 CPU cores
# (~0.5 s per iteration). At a fixed number of images, batches of 4 learned faster than 8
# (more updates); lr 1e-3 beat 2e-3.
dataloader.train.total_batch_size = 4
train.max_iter = 1000
optimizer.lr = 1e-3
# poly decay as the ADE20K recipe, after a short linear warmup (from scratch, lr 5x higher)
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(PolynomialDecayParamScheduler)(base_value=1.0, power=0.9),
    warmup_length=50 / 1000,
    warmup_factor=0.01,
)
train.eval_period = 1000
train.checkpointer.period = 250
train.log_period = 20
train.seed = 0
train.output_dir = "output/semseg_demo"
