"""
detectron2's RetinaNet as the official PVT-v2 RetinaNet (mmdetection) computes it, in the two
places where detectron2 differs and weights cannot make up for it:

* :class:`LastLevelP6P7NoReLU`: P7 is computed from P6 without a ReLU in between
  (mmdetection's FPN with ``add_extra_convs="on_input"`` and its default
  ``relu_before_extra_convs=False``); detectron2's ``LastLevelP6P7`` applies one.
* :class:`ClippedRetinaNet`: at inference, boxes are clipped to the image and empty boxes
  dropped *before* the per-class NMS (mmdetection decodes with ``max_shape`` and filters
  ``min_bbox_size=0``); detectron2's RetinaNet runs NMS on unclipped boxes and clips afterwards,
  so boxes at the image border suppress each other differently.

Both only change what they name; training (losses, anchor labelling) is detectron2's.
"""

from typing import List, Tuple

from torch import Tensor

from detectron2.modeling import META_ARCH_REGISTRY, RetinaNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.structures import Boxes, Instances

__all__ = ["LastLevelP6P7NoReLU", "ClippedRetinaNet"]


class LastLevelP6P7NoReLU(LastLevelP6P7):
    """detectron2's ``LastLevelP6P7`` (P6 from ``in_feature``) with P7 = conv(P6), no ReLU."""

    def forward(self, x: Tensor) -> List[Tensor]:
        p6 = self.p6(x)
        return [p6, self.p7(p6)]


@META_ARCH_REGISTRY.register()
class ClippedRetinaNet(RetinaNet):
    """
    detectron2's ``RetinaNet`` whose inference clips the decoded boxes to the image and drops
    empty ones before NMS, as mmdetection's RetinaNet does (see the module docstring).
    Same constructor, same training.
    """

    def _decode_multi_level_predictions(
        self,
        anchors: List[Boxes],
        pred_scores: List[Tensor],
        pred_deltas: List[Tensor],
        score_thresh: float,
        topk_candidates: int,
        image_size: Tuple[int, int],
    ) -> Instances:
        pred = super()._decode_multi_level_predictions(
            anchors, pred_scores, pred_deltas, score_thresh, topk_candidates, image_size
        )
        pred.pred_boxes.clip(image_size)
        return pred[pred.pred_boxes.nonempty()]
