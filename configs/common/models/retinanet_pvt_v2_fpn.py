# detectron2's RetinaNet with PVT-v2, computed as the official recipe's (mmdetection) RetinaNet:
# FPN from stride 8 (res3-res5), P6 from C5 (start_level=1, add_extra_convs="on_input"), and
# where detectron2's own RetinaNet differs, mmdetection's behaviour (so that COCO checkpoints
# converted by tools/convert_mmdet_checkpoint.py give mmdetection's detections):
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

from pvt_fpn_d2 import pvt_v2_out_channels
from pvt_fpn_d2.modeling.retinanet import ClippedRetinaNet, LastLevelP6P7NoReLU

from ..data.constants import constants
from .pvt_v2_backbone import bottom_up

model = get_config("common/models/retinanet.py").model
# boxes clipped to the image (and empty ones dropped) before NMS, as mmdetection's RetinaNet;
# detectron2's clips after NMS. Training is unchanged.
model._target_ = ClippedRetinaNet

model.backbone.bottom_up = bottom_up(out_features=["res3", "res4", "res5"])
model.backbone.in_features = "${.bottom_up.out_features}"
# P7 = conv(P6) with no ReLU in between: mmdetection's FPN default relu_before_extra_convs=False
model.backbone.top_block._target_ = LastLevelP6P7NoReLU
# C5 channels depend on the variant (256 for b0, 512 otherwise): read from timm's feature_info.
model.backbone.top_block.in_channels = L(pvt_v2_out_channels)(
    name="${...bottom_up.name}", feature="res5"
)
model.backbone.top_block.in_feature = "res5"
model.pixel_mean = constants["imagenet_rgb256_mean"]
model.pixel_std = constants["imagenet_rgb256_std"]
model.input_format = "RGB"
