# Monocular depth on NYU Depth v2 with PVT-v2-b2 + FPN, with the BTS recipe (Lee et al., "From
# Big to Small", 2019, the NYU setting also used by AdaBins): Adam(W) lr 1e-4 with polynomial
# decay (power 0.9), 50 epochs of the 24,231-image training list at batch 16 (~76k iterations),
# random 416x544 crops and horizontal flips, depth up to 10 m, the scale-invariant log loss with
# variance focus 0.85; evaluation on the 654 test images at full size (d1 ... d3, AbsRel, RMSE).
#
# Data, in the layout of datasets/nyu (RGB .jpg + 16-bit depth .png in millimetres, same
# names): dataset.train_images=... dataset.train_depth=... dataset.val_images=...
# dataset.val_depth=...
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from fvcore.common.param_scheduler import PolynomialDecayParamScheduler

from pvt_fpn_d2.data import DepthDatasetMapper, register_depth_folder
from pvt_fpn_d2.evaluation import DepthEvaluator
from pvt_fpn_d2.utils import default_num_workers

from ..common.models.depth_pvt_v2_fpn import model
from ..common.optim import AdamW as optimizer
from ..common.train import train

model.backbone.bottom_up.name = "pvt_v2_b2"

dataset = dict(
    train_images="datasets/nyu/train/images",
    train_depth="datasets/nyu/train/depth",
    val_images="datasets/nyu/test/images",
    val_depth="datasets/nyu/test/depth",
    depth_scale=1000.0,  # PNG value per metre (millimetres)
    image_ext=".jpg",
)


def _depth_folder(split):
    """The registration of dataset.<split>_images / _depth as "depth_<split>"."""
    return L(register_depth_folder)(
        name=f"depth_{split}",
        image_root=f"${{dataset.{split}_images}}",
        depth_root=f"${{dataset.{split}_depth}}",
        depth_scale="${dataset.depth_scale}",
        max_depth="${model.max_depth}",
        image_ext="${dataset.image_ext}",
    )


dataloader = dict(
    train=L(build_detection_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names=_depth_folder("train"), filter_empty=False),
        mapper=L(DepthDatasetMapper)(
            is_train=True,
            augmentations=[
                L(T.RandomCrop)(crop_type="absolute", crop_size=(416, 544)),
                L(T.RandomFlip)(horizontal=True),
            ],
            image_format="RGB",
            depth_scale="${dataset.depth_scale}",
        ),
        total_batch_size=16,
        aspect_ratio_grouping=False,
        num_workers=default_num_workers(),
    ),
    test=L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names=_depth_folder("val"), filter_empty=False),
        mapper=L(DepthDatasetMapper)(
            is_train=False,
            augmentations=[],
            image_format="${...train.mapper.image_format}",
            depth_scale="${dataset.depth_scale}",
        ),
        num_workers=default_num_workers(),
    ),
    evaluator=L(DepthEvaluator)(dataset_name="${..test.dataset.names}"),
)

optimizer.lr = 1e-4
optimizer.weight_decay = 1e-2
train.max_iter = 76000  # 50 epochs x 24,231 images / 16
lr_multiplier = L(PolynomialDecayParamScheduler)(base_value=1.0, power=0.9)
train.eval_period = 7600
train.checkpointer.period = 7600
train.best_checkpoint = dict(metric="depth/abs_rel", mode="min")
train.output_dir = "output/depth_pvt_v2_b2_nyu"
