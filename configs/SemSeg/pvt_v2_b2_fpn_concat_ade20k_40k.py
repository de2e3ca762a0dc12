# Semantic segmentation on ADE20K (150 classes) with PVT-v2-b2 + FPN and the seed design's head
# (pvt_fpn_d2.modeling.semantic.FPNConcatSemSegHead), trained with the PVT Semantic FPN recipe below.
#
# Recipe: the released PVT / PVTv2-Seg Semantic FPN configs (github.com/whai362/PVT
# segmentation/configs/sem_fpn, mmsegmentation v0.13): AdamW lr 2e-4, weight decay 1e-4 (norm
# layers and biases included), poly decay with power 0.9 to 0, no warmup, 40k iterations of 32
# images (8 GPUs x 4). The papers state the same schedule as 80k iterations of 16 images at lr
# 1e-4 (mmsegmentation's 4 GPUs x 4; the released configs double the batch and lr and halve the
# iterations): train.max_iter=80000 dataloader.train.total_batch_size=16 optimizer.lr=1e-4.
# Data: 512x512 crops after a random rescale of 0.5-2x around 512 px, flip, photometric jitter;
# test at 512 px (shorter side), scored at the original resolution.
#
# Dataset: detectron2's built-in ade20k_sem_seg_{train,val}, read from
# $DETECTRON2_DATASETS/ADEChallengeData2016/{images,annotations_detectron2}/{training,validation};
# annotations_detectron2 is written by detectron2's datasets/prepare_ade20k_sem_seg.py (labels
# shifted by -1 so that ADE20K's 0 "other" becomes the ignored 255).
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.evaluation import SemSegEvaluator
from fvcore.common.param_scheduler import PolynomialDecayParamScheduler

from pvt_fpn_d2.data import DatasetMapper  # detectron2's, reading images and labels robustly
from pvt_fpn_d2.utils import default_num_workers

from ..common.models.sem_seg_pvt_v2_fpn import model
from ..common.optim import AdamW as optimizer
from ..common.train import train

model.backbone.bottom_up.name = "pvt_v2_b2"

dataloader = dict(
    train=L(build_detection_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names="ade20k_sem_seg_train"),
        mapper=L(DatasetMapper)(
            is_train=True,
            augmentations=[
                # mmseg Resize(img_scale=(2048, 512), ratio_range=(0.5, 2.0)): shorter side
                # 512 x [0.5, 2] = 256..1024 px, longer side at most 2048
                L(T.ResizeShortestEdge)(
                    short_edge_length=(256, 1024), max_size=2048, sample_style="range"
                ),
                # mmseg RandomCrop(crop_size=(512, 512), cat_max_ratio=0.75)
                L(T.RandomCrop_CategoryAreaConstraint)(
                    crop_type="absolute",
                    crop_size=(512, 512),
                    single_category_max_area=0.75,
                    ignored_category="${model.sem_seg_head.ignore_value}",
                ),
                L(T.RandomFlip)(horizontal=True),
                # mmseg PhotoMetricDistortion, each part with probability 0.5: brightness +-32
                # of 255 (about x[0.75, 1.25] of a mid-grey), contrast and saturation
                # x[0.5, 1.5]; detectron2 has no hue jitter
                L(T.RandomApply)(
                    tfm_or_aug=L(T.RandomBrightness)(intensity_min=0.75, intensity_max=1.25),
                    prob=0.5,
                ),
                L(T.RandomApply)(
                    tfm_or_aug=L(T.RandomContrast)(intensity_min=0.5, intensity_max=1.5), prob=0.5
                ),
                L(T.RandomApply)(
                    tfm_or_aug=L(T.RandomSaturation)(intensity_min=0.5, intensity_max=1.5), prob=0.5
                ),
            ],
            image_format="RGB",
        ),
        total_batch_size=32,
        num_workers=default_num_workers(),
    ),
    test=L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names="ade20k_sem_seg_val", filter_empty=False),
        mapper=L(DatasetMapper)(
            is_train=False,
            # mmseg test: (2048, 512) keeping the ratio; the model pads to 32 itself
            augmentations=[L(T.ResizeShortestEdge)(short_edge_length=512, max_size=2048)],
            image_format="${...train.mapper.image_format}",
        ),
        num_workers=default_num_workers(),
    ),
    # mIoU, fwIoU, mACC, pACC and per-class IoU/ACC, against the original-size label PNGs
    evaluator=L(SemSegEvaluator)(dataset_name="${..test.dataset.names}"),
)

optimizer.lr = 2e-4
optimizer.weight_decay = 1e-4
train.max_iter = 40000
lr_multiplier = L(PolynomialDecayParamScheduler)(base_value=1.0, power=0.9)
# evaluate and checkpoint every 4000 iterations (the released configs: 8000 // 2)
train.eval_period = 4000
train.checkpointer.period = 4000
train.best_checkpoint.metric = "sem_seg/mIoU"
