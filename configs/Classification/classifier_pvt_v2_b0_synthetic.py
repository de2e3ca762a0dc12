# Image classification CPU demo: PVT-v2-b0 + FPN, GAP of P5 + linear, from scratch, on the
# synthetic "which shape dominates the image" set (ImageNet folder layout):
#
#   python datasets/prepare_synthetic.py --out datasets/synthetic --classification
#   python train_net.py --config-file configs/Classification/classifier_pvt_v2_b0_synthetic.py
#
# The template for your own folders (root/<class>/<image>): dataset.train_root=...
# dataset.val_root=... 'dataset.classes=[cat,dog]' model.num_classes=2
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler

from pvt_fpn_d2.data import SYNTHETIC_CLASSES, DatasetMapper, register_image_folder
from pvt_fpn_d2.evaluation import ClassificationEvaluator

from ..common.models.classifier_pvt_v2_fpn import model
from ..common.optim import AdamW as optimizer
from ..common.train import train

dataset = dict(
    train_root="datasets/synthetic/classification/train",
    val_root="datasets/synthetic/classification/val",
    classes=list(SYNTHETIC_CLASSES),
)
dataloader = dict(
    train=L(build_detection_train_loader)(
        dataset=L(get_detection_dataset_dicts)(
            names=L(register_image_folder)(
                name="synthetic_cls_train",
                root="${dataset.train_root}",
                classes="${dataset.classes}",
            ),
            filter_empty=False,
        ),
        mapper=L(DatasetMapper)(
            is_train=True,
            augmentations=[
                L(T.ResizeShortestEdge)(short_edge_length=96, max_size=96),
                L(T.RandomFlip)(horizontal=True),
            ],
            image_format="RGB",
        ),
        total_batch_size=8,
        aspect_ratio_grouping=False,
        num_workers=1,
    ),
    test=L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(
            names=L(register_image_folder)(
                name="synthetic_cls_val", root="${dataset.val_root}", classes="${dataset.classes}"
            ),
            filter_empty=False,
        ),
        mapper=L(DatasetMapper)(
            is_train=False,
            augmentations=[L(T.ResizeShortestEdge)(short_edge_length=96, max_size=96)],
            image_format="RGB",
        ),
        num_workers=1,
    ),
    # top-1, top-5 (of 3 classes: 100), per-class accuracy, confusion_matrix.png
    evaluator=L(ClassificationEvaluator)(
        dataset_name="${..test.dataset.names}", output_dir="${train.output_dir}"
    ),
)

model.num_classes = len(SYNTHETIC_CLASSES)  # with your dataset.classes: model.num_classes=N
model.backbone.bottom_up.name = "pvt_v2_b0"
model.backbone.bottom_up.drop_path_rate = 0.0
model.backbone.out_channels = 128

# 600 iterations x 8 images = 16 epochs of the 300 images; AdamW 2e-4, cosine after a warmup
# (at 1e-3 both heads collapsed to the uniform prediction, loss ln 3, for all 600 iterations)
optimizer.lr = 2e-4
optimizer.weight_decay = 0.05
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
train.best_checkpoint.metric = "classification/top1"
train.output_dir = "output/classifier_demo"
