# Fine-tune PVT-v2-b0 RetinaNet (boxes only) on your own COCO-format data, with the same
# dataset.* overrides as mask_rcnn_pvt_v2_b0_fpn_coco_json.py.
from detectron2.config import LazyCall as L

from pvt_fpn_d2.data import coco_json_num_classes

from ..COCO.retinanet_pvt_v2_b0_fpn_1x import model
from .mask_rcnn_pvt_v2_b0_fpn_coco_json import dataloader, dataset, lr_multiplier, optimizer, train

model.num_classes = L(coco_json_num_classes)(
    json_file="${dataset.train_json}", drop_empty_categories="${dataset.drop_empty_categories}"
)
dataloader.train.mapper.use_instance_mask = False
dataloader.evaluator.tasks = ("bbox",)
dataloader.evaluator.max_dets_per_image = "${model.max_detections_per_image}"
train.best_checkpoint.metric = "bbox/AP"
