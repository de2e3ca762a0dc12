# detectron2's RetinaNet with PVT-v2: FPN from stride 8 (res3-res5) and P6 computed from C5,
# as the official recipe (mmdetection start_level=1, add_extra_convs="on_input").
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

from pvt_fpn_d2 import pvt_v2_out_channels

from ..data.constants import constants
from .pvt_v2_backbone import bottom_up

model = get_config("common/models/retinanet.py").model

model.backbone.bottom_up = bottom_up(out_features=["res3", "res4", "res5"])
model.backbone.in_features = "${.bottom_up.out_features}"
# C5 channels depend on the variant (256 for b0, 512 otherwise): read from timm's feature_info.
model.backbone.top_block.in_channels = L(pvt_v2_out_channels)(
    name="${...bottom_up.name}", feature="res5"
)
model.backbone.top_block.in_feature = "res5"
model.pixel_mean = constants["imagenet_rgb256_mean"]
model.pixel_std = constants["imagenet_rgb256_std"]
model.input_format = "RGB"
