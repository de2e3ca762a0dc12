"""
detectron2's Mask R-CNN mask head, trained only on the objects that have a mask.

Real datasets mix objects drawn as polygons or brush masks with objects that only have a box
(a CVAT or Label Studio rectangle, a COCO box without segmentation). Dropping those boxes would
teach the detector that the objects are background; giving them box-shaped masks would teach
the mask head rectangles. :class:`pvt_fpn_d2.data.DatasetMapper` keeps them with
``gt_has_mask = False``, detectron2's ROI heads carry that field to the sampled proposals, and
this head leaves those proposals out of the mask loss; the box and RPN heads train on them.
"""

from typing import List

import torch

from detectron2.modeling.roi_heads.mask_head import (
    ROI_MASK_HEAD_REGISTRY,
    mask_rcnn_loss,
)
from detectron2.modeling.roi_heads.mask_head import (
    MaskRCNNConvUpsampleHead as D2MaskRCNNConvUpsampleHead,
)
from detectron2.structures import Instances

__all__ = ["PartialMaskRCNNConvUpsampleHead", "supports_boxes_without_masks"]


@ROI_MASK_HEAD_REGISTRY.register()
class PartialMaskRCNNConvUpsampleHead(D2MaskRCNNConvUpsampleHead):
    """
    detectron2's ``MaskRCNNConvUpsampleHead`` (same arguments, same weights, same inference)
    whose mask loss counts only the proposals matched to an object with a mask
    (``gt_has_mask``; proposals without that field all count, as in detectron2).
    yacs: ``MODEL.ROI_MASK_HEAD.NAME: "PartialMaskRCNNConvUpsampleHead"``.
    """

    def forward(self, x: torch.Tensor, instances: List[Instances]):
        if not self.training:
            return super().forward(x, instances)
        has_mask = [
            p.gt_has_mask if p.has("gt_has_mask") else torch.ones(len(p), dtype=torch.bool)
            for p in instances
        ]
        keep = torch.cat(has_mask).to(x.device) if has_mask else None
        if keep is None or bool(keep.all()):
            return super().forward(x, instances)
        instances = [p[m.to(p.gt_classes.device)] for p, m in zip(instances, has_mask)]
        x = self.layers(x[keep])
        # with no object with a mask, detectron2's loss is 0 with the graph kept (for DDP)
        return {"loss_mask": mask_rcnn_loss(x, instances, self.vis_period) * self.loss_weight}


def supports_boxes_without_masks(mask_head: torch.nn.Module) -> bool:
    """Whether a mask head (or every head of a list, one per cascade stage) leaves objects
    without a mask (``gt_has_mask``) out of its loss."""
    if isinstance(mask_head, torch.nn.ModuleList):
        return len(mask_head) > 0 and all(map(supports_boxes_without_masks, mask_head))
    return isinstance(mask_head, PartialMaskRCNNConvUpsampleHead)
