# detectron2's Mask R-CNN FPN with PVT-v2 as the bottom-up network (official PVT-v2 setup:
# all stages trained, drop path 0.1, RGB input with ImageNet mean/std).
from detectron2.model_zoo import get_config

from pvt_fpn_d2.modeling.mask_head import PartialMaskRCNNConvUpsampleHead

from ..data.constants import constants
from .pvt_v2_backbone import bottom_up

model = get_config("common/models/mask_rcnn_fpn.py").model

model.backbone.bottom_up = bottom_up()
model.pixel_mean = constants["imagenet_rgb256_mean"]
model.pixel_std = constants["imagenet_rgb256_std"]
model.input_format = "RGB"
# detectron2's mask head whose loss skips objects that have a box and no mask (they still
# train the box and RPN heads): real datasets mix both
model.roi_heads.mask_head._target_ = PartialMaskRCNNConvUpsampleHead
