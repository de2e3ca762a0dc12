# UPerNet on the PVT-v2 stages with detectron2's SemanticSegmentor: the bottom-up network is the
# backbone (UPerNet has its own FPN), pvt_fpn_d2.modeling.upernet.UPerNetHead the head. The head's
# input channels come from timm's feature_info of the variant named in backbone.name.
from detectron2.config import LazyCall as L
from detectron2.modeling import SemanticSegmentor

from pvt_fpn_d2.modeling import UPerNetHead, pvt_v2_output_shape

from ..data.constants import constants
from .pvt_v2_backbone import bottom_up

model = L(SemanticSegmentor)(
    backbone=bottom_up(),
    sem_seg_head=L(UPerNetHead)(
        input_shape=L(pvt_v2_output_shape)(name="${...backbone.name}"),
        num_classes=150,  # ADE20K SceneParsing
        # mmsegmentation's UPerHead / FCNHead (configs/_base_/models/upernet_swin.py): 512
        # channels, PPM scales 1 2 3 6, dropout 0.1; auxiliary FCN on the third stage, 256
        # channels, loss weight 0.4; SyncBN (a plain BN in one process)
        channels=512,
        pool_scales=(1, 2, 3, 6),
        norm="SyncBN",
        dropout=0.1,
        ignore_value=255,
        aux_in_feature="res4",
        aux_channels=256,
        aux_loss_weight=0.4,
    ),
    pixel_mean=constants["imagenet_rgb256_mean"],
    pixel_std=constants["imagenet_rgb256_std"],
)
