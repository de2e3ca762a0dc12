# Image classification on the PVT-v2 FPN (the seed design: global average pooling of the
# coarsest pyramid level, then a linear classifier): pvt_fpn_d2.modeling.ImageClassifier on
# detectron2's FPN. For timm's own head (GAP of the last stage), make the bottom-up network the
# backbone: model.backbone = model.backbone.bottom_up and model.in_feature = "res5".
from detectron2.config import LazyCall as L
from detectron2.modeling import FPN

from pvt_fpn_d2.modeling import ImageClassifier

from ..data.constants import constants
from .pvt_v2_backbone import bottom_up

model = L(ImageClassifier)(
    backbone=L(FPN)(
        bottom_up=bottom_up(),
        in_features="${.bottom_up.out_features}",
        out_channels=256,
        top_block=None,
    ),
    num_classes=1000,
    in_feature="p5",  # the coarsest level (stride 32)
    dropout=0.0,
    label_smoothing=0.1,  # timm's ImageNet recipes
    pixel_mean=constants["imagenet_rgb256_mean"],
    pixel_std=constants["imagenet_rgb256_std"],
)
