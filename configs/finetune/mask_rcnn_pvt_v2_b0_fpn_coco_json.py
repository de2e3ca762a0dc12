# Fine-tune PVT-v2-b0 Mask R-CNN on your own COCO-format instance segmentation data, set up by
# command-line overrides alone:
#
#   python train_net.py --config-file configs/finetune/mask_rcnn_pvt_v2_b0_fpn_coco_json.py \
#       dataset.train_json=data/train.json dataset.train_images=data/train \
#       dataset.val_json=data/val.json dataset.val_images=data/val \
#       train.init_checkpoint=model_final.pth train.output_dir=output/my_finetune
#
# train.init_checkpoint: a COCO-trained Mask R-CNN PVT-v2-b0 checkpoint (its class-specific
# layers are skipped when the number of classes differs) or PVT-v2-b0 ImageNet weights in any
# format (default: timm's, from the hub). The classes (number and names) come from the train
# json's "categories"; the val json must have the same categories.
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from pvt_fpn_d2.data import coco_json_num_classes, register_coco_json

from ..COCO.mask_rcnn_pvt_v2_b0_fpn_1x import dataloader, model, optimizer, train

# "???" = must be given on the command line. Exports of annotation tools (Roboflow, CVAT,
# Label Studio, labelme) load as they are: docs/CUSTOM_DATASETS.md.
dataset = dict(
    train_json="???",
    train_images="???",
    val_json="???",
    val_images="???",
    # categories without a training annotation (Roboflow's placeholder category 0, labelme's
    # _background_) are kept as classes unless dropped here; the check names them
    drop_empty_categories=False,
    # what iscrowd=1 masks are: "auto" (objects in a CVAT export, whose brush masks are all
    # written so; crowd regions elsewhere), "objects" or "crowd"
    crowd_masks="auto",
)

dataloader.train.dataset.names = L(register_coco_json)(
    name="coco_json_train",
    json_file="${dataset.train_json}",
    image_root="${dataset.train_images}",
    drop_empty_categories="${dataset.drop_empty_categories}",
    crowd_masks="${dataset.crowd_masks}",
)
# Images without annotations: dropped for training (True) or kept as negatives (False)
dataloader.train.dataset.filter_empty = True
dataloader.test.dataset.names = L(register_coco_json)(
    name="coco_json_val",
    json_file="${dataset.val_json}",
    image_root="${dataset.val_images}",
    drop_empty_categories="${dataset.drop_empty_categories}",
    classes_from="${dataset.train_json}",  # the same classes as training
    crowd_masks="${dataset.crowd_masks}",
)
# One source of truth for the classes: the box and mask heads read them from the json
model.roi_heads.num_classes = L(coco_json_num_classes)(
    json_file="${dataset.train_json}", drop_empty_categories="${dataset.drop_empty_categories}"
)

# A short schedule for a small dataset: 6000 iterations of 8 images, decay by 10x at 2/3 and
# 11/12 of training (the 1x shape), 250 warmup iterations. Scale with train.max_iter=...
dataloader.train.total_batch_size = 8
optimizer.lr = 1e-4
train.max_iter = 6000
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[4000, 5500], num_updates=6000
    ),
    warmup_length=250 / 6000,
    warmup_factor=0.001,
)
train.eval_period = 500
train.checkpointer.period = 500
