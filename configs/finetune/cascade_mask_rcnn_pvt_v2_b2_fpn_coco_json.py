# Fine-tune the PVT-v2-b2 Cascade Mask R-CNN (mmdetection's: a mask head per stage) on your own
# COCO-format instance segmentation data: the model of COCO/cascade_mask_rcnn_pvt_v2_b2_fpn_3x.py
# with the data settings and schedule of mask_rcnn_pvt_v2_b0_fpn_coco_json.py (read it for the
# dataset.* keys):
#
#   python train_net.py \
#       --config-file configs/finetune/cascade_mask_rcnn_pvt_v2_b2_fpn_coco_json.py \
#       dataset.train_json=data/train.json dataset.train_images=data/train \
#       dataset.val_json=data/val.json dataset.val_images=data/val \
#       train.init_checkpoint=cascade_b2_d2.pth train.output_dir=output/my_cascade
#
# train.init_checkpoint: the official 3x Cascade Mask R-CNN checkpoint converted by
# tools/convert_mmdet_checkpoint.py (the class-specific layers of every stage are skipped when
# the number of classes differs) or PVT-v2-b2 ImageNet weights (default: timm's, from the hub).
from detectron2.config import LazyCall as L

from pvt_fpn_d2.data import coco_json_num_classes

from ..COCO.cascade_mask_rcnn_pvt_v2_b2_fpn_3x import model
from .mask_rcnn_pvt_v2_b0_fpn_coco_json import dataloader, dataset, lr_multiplier, optimizer, train

model.roi_heads.num_classes = L(coco_json_num_classes)(
    json_file="${dataset.train_json}", drop_empty_categories="${dataset.drop_empty_categories}"
)
dataloader.evaluator.max_dets_per_image = "${model.roi_heads.box_predictors[2].test_topk_per_image}"
train.init_checkpoint = "timm://pvt_v2_b2"
