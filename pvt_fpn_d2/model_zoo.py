"""
Published reference figures for the configs in ``configs/COCO`` (official PVT-v2 README,
mmdetection 2.13, COCO val2017; detector sizes with 80 classes from the PVT-v2 paper).
They are what the configs target, not results of this project.
"""

from typing import Dict, NamedTuple, Optional

__all__ = ["Published", "PUBLISHED"]


class Published(NamedTuple):
    params_m: Optional[float]  # millions
    box_ap: float
    mask_ap: Optional[float] = None


PUBLISHED: Dict[str, Published] = {
    "mask_rcnn_pvt_v2_b0_fpn_1x": Published(23.4, 38.2, 36.2),
    "mask_rcnn_pvt_v2_b1_fpn_1x": Published(33.7, 41.8, 38.8),
    "mask_rcnn_pvt_v2_b2_li_fpn_1x": Published(42.2, 44.1, 40.5),
    "mask_rcnn_pvt_v2_b2_fpn_1x": Published(45.0, 45.3, 41.2),
    "mask_rcnn_pvt_v2_b3_fpn_1x": Published(64.9, 47.0, 42.5),
    "mask_rcnn_pvt_v2_b4_fpn_1x": Published(82.2, 47.5, 42.7),
    "mask_rcnn_pvt_v2_b5_fpn_1x": Published(101.6, 47.4, 42.5),
    "retinanet_pvt_v2_b0_fpn_1x": Published(12.9, 37.2),
    "retinanet_pvt_v2_b1_fpn_1x": Published(23.7, 41.2),
    "retinanet_pvt_v2_b2_li_fpn_1x": Published(32.3, 43.6),
    "retinanet_pvt_v2_b2_fpn_1x": Published(35.1, 44.6),
    "retinanet_pvt_v2_b3_fpn_1x": Published(55.0, 45.9),
    "retinanet_pvt_v2_b4_fpn_1x": Published(72.3, 46.1),
    "retinanet_pvt_v2_b5_fpn_1x": Published(91.7, 46.2),
    # no published 1x Faster R-CNN or size for the 3x Cascade (mmdetection, 3 mask heads)
    "cascade_mask_rcnn_pvt_v2_b2_fpn_3x": Published(None, 51.1, 44.4),
}
