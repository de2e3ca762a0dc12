"""
Export-friendly forward passes of this project's models, for ``torch.export`` and the ONNX
exporter built on it (``torch.onnx.export(..., dynamo=True)``).

The graph takes one image as detectron2's models do (``inputs["image"]``: a float (3, H, W)
tensor in the config's channel order, already resized by the test loader's augmentations) and
normalises and pads it itself, so every height and width >= 32 goes through the same exported
file. Everything detectron2 runs before its own ``postprocess`` is in the graph; its
``detector_postprocess`` / ``sem_seg_postprocess`` (boxes scaled to the original size, masks
pasted into the image) run in Python afterwards, as in mmdeploy (see
:class:`pvt_fpn_d2.deploy.OnnxPredictor`).

The backbone, FPN, heads, anchors and box coders are the model's own modules, called as they
are. What is written here is only the inference glue whose Python ``if`` on tensor values or
``Boxes`` / ``Instances`` bookkeeping ``torch.export`` cannot trace with data-dependent sizes
(detectron2's ``find_top_rpn_proposals``, ``ROIPooler.forward``, ``fast_rcnn_inference``,
``mask_rcnn_inference``, ``RetinaNet.inference_single_image``): the same computations, without
branches on values. Per-class NMS is one op (``pvt_fpn_d2::non_max_suppression``), written as
one ONNX ``NonMaxSuppression`` over all classes: ONNX Runtime runs a small NMS per class, where
torchvision's trick of offsetting each class's boxes makes one NMS over all of them (3x eager's
time at score threshold 0, 80 classes). ``tests/test_deploy.py`` checks each against the eager
detectron2 model.
"""

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.modeling import GeneralizedRCNN, RetinaNet, SemanticSegmentor
from detectron2.modeling.poolers import assign_boxes_to_levels
from detectron2.modeling.roi_heads import CascadeROIHeads, StandardROIHeads
from detectron2.structures import ImageList

from ..modeling.retinanet import ClippedRetinaNet

__all__ = ["export_graph", "graph_outputs", "graph_translations"]


def _pad(model: nn.Module, image: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
    """Normalise one (3, H, W) image and pad it to the backbone's size divisibility, as
    ``ImageList.from_tensors`` does, with sizes that stay symbolic: (1, 3, H', W'), H, W."""
    h, w = image.shape[-2:]
    x = (image - model.pixel_mean) / model.pixel_std
    d = max(int(getattr(model.backbone, "size_divisibility", 0) or 0), 1)
    x = F.pad(x, (0, (w + d - 1) // d * d - w, 0, (h + d - 1) // d * d - h))
    return x.unsqueeze(0), h, w


def _nms_eager(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, score_threshold: float
) -> torch.Tensor:
    """ONNX's ``NonMaxSuppression`` (corner boxes, no output limit) in torchvision: boxes
    (B, N, 4), scores (B, C, N); for every b and c, NMS of the boxes whose score is above
    ``score_threshold``. Rows (b, c, box index), ordered by b, then c, then score."""
    rows = [boxes.new_zeros((0, 3), dtype=torch.int64)]
    for b in range(boxes.shape[0]):
        for c in range(scores.shape[1]):
            (idx,) = torch.nonzero(scores[b, c] > score_threshold, as_tuple=True)
            keep = idx[torch.ops.torchvision.nms(boxes[b, idx], scores[b, c, idx], iou_threshold)]
            rows.append(torch.stack([torch.full_like(keep, b), torch.full_like(keep, c), keep], 1))
    return torch.cat(rows)


# one opaque op, which the ONNX export writes as one NonMaxSuppression node over all classes:
# ONNX Runtime then runs one small NMS per class, not one NMS of every class's boxes at once
_nms = torch.library.custom_op("pvt_fpn_d2::non_max_suppression", _nms_eager, mutates_args=())


@_nms.register_fake
def _(boxes, scores, iou_threshold, score_threshold):
    # min=2 as torchvision's nms declares, so that the trace takes no branch for 0 or 1 boxes
    # (detectron2's Conv2d asks for x.numel() == 0); nothing checks it at run time, and no
    # detections give empty outputs (tests/test_deploy.py)
    n = torch.library.get_ctx().new_dynamic_size(min=2)
    return boxes.new_empty((n, 3), dtype=torch.int64)


def graph_translations() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export``: the op above as ONNX's
    ``NonMaxSuppression`` (opset 11 and later; ONNX Runtime, OpenVINO and TensorRT run it)."""
    from onnxscript import opset18 as op  # the [deploy] extra; importing this module does not

    def non_max_suppression(boxes, scores, iou_threshold: float, score_threshold: float):
        return op.NonMaxSuppression(
            boxes,
            scores,
            op.Constant(value_int=2**62),  # no limit per class
            op.Constant(value_float=iou_threshold),
            op.Constant(value_float=score_threshold),
        )

    return {torch.ops.pvt_fpn_d2.non_max_suppression.default: non_max_suppression}


def _best_first(scores: torch.Tensor, limit: int = -1) -> torch.Tensor:
    """Indices of ``scores``, highest first, at most ``limit`` (< 0: all)."""
    order = scores.argsort(descending=True)
    return order if limit < 0 else order[:limit]


def _batched_nms(boxes, scores, groups, num_groups: int, iou_threshold: float) -> torch.Tensor:
    """torchvision's ``batched_nms`` (NMS within each group of boxes, e.g. a class): the
    indices of the kept boxes, best first. The scores go into a (groups, boxes) table, -inf
    outside each box's group, for one per-group NonMaxSuppression."""
    table = scores.new_full((num_groups, scores.shape[0]), float("-inf"))
    table = table.scatter(0, groups[None], scores[None])
    kept = torch.ops.pvt_fpn_d2.non_max_suppression(
        boxes[None], table[None], iou_threshold, float("-inf")
    )[:, 2]
    return kept[_best_first(scores[kept])]


class _BoxList:
    """The one ``Boxes`` method ``assign_boxes_to_levels`` calls, on a plain tensor."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def area(self) -> torch.Tensor:
        b = self.tensor
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def _roi_pool(pooler, features: List[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
    """detectron2's ``ROIPooler`` for the boxes of one image (R, 4): each box pooled from its
    level by that level's ``ROIAlign``."""
    rois = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1)  # batch index 0
    if len(pooler.level_poolers) == 1:
        return pooler.level_poolers[0](features[0], rois)
    levels = assign_boxes_to_levels(
        [_BoxList(boxes)],
        pooler.min_level,
        pooler.max_level,
        pooler.canonical_box_size,
        pooler.canonical_level,
    )
    size = pooler.output_size
    out = features[0].new_zeros(boxes.shape[0], features[0].shape[1], size[0], size[1])
    for level, level_pooler in enumerate(pooler.level_poolers):
        (inds,) = torch.nonzero(levels == level, as_tuple=True)
        out = out.index_put((inds,), level_pooler(features[level], rois[inds]))
    return out


def _clip(boxes: torch.Tensor, h, w) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(dim=-1)
    return torch.stack([x1.clamp(0, w), y1.clamp(0, h), x2.clamp(0, w), y2.clamp(0, h)], dim=-1)


class RCNNGraph(nn.Module):
    """Faster / Mask R-CNN (``GeneralizedRCNN`` with ``StandardROIHeads``) for one image:
    boxes (R, 4) in the input image's coordinates, scores (R,), classes (R,) and, with a mask
    head, mask probabilities (R, 1, M, M) of each box's class."""

    def __init__(self, model: GeneralizedRCNN):
        super().__init__()
        self.model = model

    def _proposals(self, features: Dict[str, torch.Tensor], h, w) -> torch.Tensor:
        rpn = self.model.proposal_generator
        feats = [features[f] for f in rpn.in_features]
        anchors = [a.tensor for a in rpn.anchor_generator(feats)]
        logits, deltas = rpn.rpn_head(feats)
        boxes, scores, levels = [], [], []
        for level, (anchors_i, logits_i, deltas_i) in enumerate(zip(anchors, logits, deltas)):
            # (1, A, Hi, Wi) -> (Hi*Wi*A,), (1, A*4, Hi, Wi) -> (Hi*Wi*A, 4), as the RPN does
            logits_i = logits_i[0].permute(1, 2, 0).reshape(-1)
            deltas_i = deltas_i[0].view(-1, 4, *deltas_i.shape[-2:]).permute(2, 3, 0, 1)
            k = min(rpn.pre_nms_topk[False], logits_i.shape[0])
            top, idx = logits_i.topk(k)
            boxes.append(
                rpn.box2box_transform.apply_deltas(deltas_i.reshape(-1, 4)[idx], anchors_i[idx])
            )
            scores.append(top)
            levels.append(torch.full_like(idx, level))
        boxes, scores, levels = torch.cat(boxes), torch.cat(scores), torch.cat(levels)
        finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
        boxes = _clip(boxes, h, w)
        size = rpn.min_box_size
        keep = finite & (boxes[:, 2] - boxes[:, 0] > size) & (boxes[:, 3] - boxes[:, 1] > size)
        (keep,) = torch.nonzero(keep, as_tuple=True)
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = _batched_nms(boxes, scores, levels, len(feats), rpn.nms_thresh)
        keep = keep[: rpn.post_nms_topk[False]]
        return boxes[keep]

    def _stage(self, feats, proposals: torch.Tensor, box_head, predictor):
        """One box head on the proposals: class probabilities (R, K+1), boxes (R, 4 * #reg)
        in the image's coordinates, not clipped, and the class logits."""
        heads = self.model.roi_heads
        logits, deltas = predictor(box_head(_roi_pool(heads.box_pooler, feats, proposals)))
        if getattr(predictor, "use_sigmoid_ce", False):
            probs = logits.sigmoid()
        else:
            probs = F.softmax(logits, dim=-1)
        return probs, predictor.box2box_transform.apply_deltas(deltas, proposals), logits

    def _boxes_and_probs(self, features, proposals: torch.Tensor, h, w):
        """The ROI heads' final class probabilities and boxes, as StandardROIHeads computes them
        (one stage), and the predictor whose thresholds choose the detections."""
        heads = self.model.roi_heads
        feats = [features[f] for f in heads.box_in_features]
        probs, boxes, _ = self._stage(feats, proposals, heads.box_head, heads.box_predictor)
        return probs, boxes, heads.box_predictor

    def _detections(self, features, proposals: torch.Tensor, h, w):
        probs, boxes, predictor = self._boxes_and_probs(features, proposals, h, w)
        scores = probs[:, :-1]  # the last column is the background
        num_reg = boxes.shape[1] // 4
        boxes = _clip(boxes.reshape(-1, num_reg, 4), h, w)
        finite = torch.isfinite(boxes).all(dim=(1, 2)) & torch.isfinite(scores).all(dim=1)
        # per-class NMS of the scores above the threshold, as fast_rcnn_inference: boxes
        # (classes, R, 4) and scores (classes, 1, R) for class-specific boxes, (1, R, 4) and
        # (1, classes, R) for one box per proposal
        table = torch.where(finite[:, None], scores, float("-inf")).t()
        nms = torch.ops.pvt_fpn_d2.non_max_suppression
        thresholds = (predictor.test_nms_thresh, predictor.test_score_thresh)
        if num_reg == 1:
            sel = nms(boxes.transpose(0, 1), table[None], *thresholds)
            box_idx, cls_idx = sel[:, 2], sel[:, 1]
            boxes = boxes[box_idx, 0]
        else:
            sel = nms(boxes.transpose(0, 1), table[:, None], *thresholds)
            box_idx, cls_idx = sel[:, 2], sel[:, 0]
            boxes = boxes[box_idx, cls_idx]
        scores = scores[box_idx, cls_idx]
        keep = _best_first(scores, predictor.test_topk_per_image)
        return boxes[keep], scores[keep], cls_idx[keep]

    def forward(self, image: torch.Tensor):
        x, h, w = _pad(self.model, image)
        features = self.model.backbone(x)
        boxes, scores, classes = self._detections(features, self._proposals(features, h, w), h, w)
        heads = self.model.roi_heads
        if not getattr(heads, "mask_on", False):
            return boxes, scores, classes
        feats = [features[f] for f in heads.mask_in_features]
        pooled = _roi_pool(heads.mask_pooler, feats, boxes)
        # CascadeMaskROIHeads: the mean of every stage's mask probabilities
        mask_heads = (
            heads.mask_head if isinstance(heads.mask_head, nn.ModuleList) else [heads.mask_head]
        )
        masks = []
        for mask_head in mask_heads:
            logits = mask_head.layers(pooled)
            if logits.shape[1] > 1:  # class-specific masks
                logits = logits[torch.arange(logits.shape[0]), classes][:, None]
            masks.append(logits.sigmoid())
        return boxes, scores, classes, sum(masks) * (1.0 / len(masks))


class CascadeRCNNGraph(RCNNGraph):
    """Cascade R-CNN (``GeneralizedRCNN`` with ``CascadeROIHeads``) for one image, with the
    outputs of :class:`RCNNGraph`. As detectron2's ``CascadeROIHeads`` at inference: each stage
    refines the previous stage's boxes (clipped, empty ones kept so that the stages' scores
    stay aligned), the class probabilities are the mean over the stages and the boxes are the
    last stage's. As :class:`~pvt_fpn_d2.modeling.cascade.CascadeMaskROIHeads`: class-specific
    boxes refined by the stage's top non-background class, the mean of the stages' logits
    before the softmax (``average_logits``), and the mean of every mask head's probabilities."""

    def _boxes_and_probs(self, features, proposals: torch.Tensor, h, w):
        heads = self.model.roi_heads
        feats = [features[f] for f in heads.box_in_features]
        probs, logits, boxes = [], [], proposals
        for k in range(heads.num_cascade_stages):
            if k > 0:  # the previous stage's boxes (R, 4), clipped
                if boxes.shape[1] > 4:  # class-specific: its top non-background class's
                    label = logits[-1][:, :-1].argmax(dim=1).view(-1, 1, 1).expand(-1, 1, 4)
                    boxes = boxes.unflatten(1, (-1, 4)).gather(1, label)[:, 0]
                proposals = _clip(boxes, h, w)
            p, boxes, z = self._stage(feats, proposals, heads.box_head[k], heads.box_predictor[k])
            probs.append(p)
            logits.append(z)
        if getattr(heads, "average_logits", False):
            final = F.softmax(sum(logits) * (1.0 / len(logits)), dim=-1)
        else:
            final = sum(probs) * (1.0 / len(probs))
        return final, boxes, heads.box_predictor[-1]


class RetinaNetGraph(nn.Module):
    """RetinaNet for one image: boxes (R, 4) in the input image's coordinates, scores (R,),
    classes (R,). As detectron2's ``RetinaNet``, boxes are clipped after NMS (by
    ``detector_postprocess``); as :class:`~pvt_fpn_d2.modeling.ClippedRetinaNet` (the
    official recipe), clipped and empty ones dropped before it."""

    def __init__(self, model: RetinaNet):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        m = self.model
        x, h, w = _pad(m, image)
        features = m.backbone(x)
        feats = [features[f] for f in m.head_in_features]
        anchors = [a.tensor for a in m.anchor_generator(feats)]
        logits, deltas = m.head(feats)
        boxes, scores, classes = [], [], []
        for anchors_i, logits_i, deltas_i in zip(anchors, logits, deltas):
            # (1, A*K, Hi, Wi) -> (Hi*Wi*A, K), as RetinaNet's _transpose_dense_predictions
            k = m.num_classes
            probs = logits_i[0].view(-1, k, *logits_i.shape[-2:]).permute(2, 3, 0, 1)
            probs = probs.reshape(-1, k).sigmoid()
            deltas_i = deltas_i[0].view(-1, 4, *deltas_i.shape[-2:]).permute(2, 3, 0, 1)
            deltas_i = deltas_i.reshape(-1, 4)
            anchor_idx, cls_idx = torch.nonzero(probs > m.test_score_thresh, as_tuple=True)
            s = probs[anchor_idx, cls_idx]
            s, order = s.sort(descending=True)
            order = order[: m.test_topk_candidates]
            s, anchor_idx, cls_idx = s[: m.test_topk_candidates], anchor_idx[order], cls_idx[order]
            boxes.append(
                m.box2box_transform.apply_deltas(deltas_i[anchor_idx], anchors_i[anchor_idx])
            )
            scores.append(s)
            classes.append(cls_idx)
        boxes, scores, classes = torch.cat(boxes), torch.cat(scores), torch.cat(classes)
        if isinstance(m, ClippedRetinaNet):
            boxes = _clip(boxes, h, w)
            nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            (keep,) = torch.nonzero(nonempty, as_tuple=True)
            boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        keep = _batched_nms(boxes, scores, classes, m.num_classes, m.test_nms_thresh)
        keep = keep[: m.max_detections_per_image]
        return boxes[keep], scores[keep], classes[keep]


class SemSegGraph(nn.Module):
    """A ``SemanticSegmentor`` for one image: class scores (K, H, W) over the input image (the
    padding cropped off)."""

    def __init__(self, model: SemanticSegmentor):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        x, h, w = _pad(self.model, image)
        logits, _ = self.model.sem_seg_head(self.model.backbone(x))
        return (logits[0, :, :h, :w],)


class ClassifierGraph(nn.Module):
    """An ``ImageClassifier`` for one image: class probabilities (K,)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        x, h, w = _pad(self.model, image)
        logits = self.model.classifier(self.model.pooled(ImageList(x, [(h, w)])))
        return (logits.float().softmax(dim=1)[0],)


class DepthGraph(nn.Module):
    """A ``DepthEstimator`` for one image: depth (H, W) in metres over the input image."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        x, h, w = _pad(self.model, image)
        return (self.model.predict(x)[0, :h, :w],)


# meta-architecture -> (graph, names of its outputs)
def _graph_types():
    from ..modeling import DepthEstimator, ImageClassifier

    return (
        (RetinaNet, RetinaNetGraph, ("boxes", "scores", "classes")),
        (GeneralizedRCNN, RCNNGraph, ("boxes", "scores", "classes", "masks")),
        (SemanticSegmentor, SemSegGraph, ("sem_seg",)),
        (ImageClassifier, ClassifierGraph, ("scores",)),
        (DepthEstimator, DepthGraph, ("depth",)),
    )


def export_graph(model: nn.Module) -> nn.Module:
    """The export-friendly graph of ``model`` (eval mode), or a TypeError naming what is not
    supported."""
    for arch, graph, _ in _graph_types():
        if isinstance(model, arch):
            if arch is GeneralizedRCNN:
                heads = getattr(model, "roi_heads", None)
                if isinstance(heads, CascadeROIHeads):
                    graph = CascadeRCNNGraph
                elif not isinstance(heads, StandardROIHeads):
                    raise TypeError(
                        f"Export supports GeneralizedRCNN with StandardROIHeads (Faster / Mask "
                        f"R-CNN) or CascadeROIHeads; this model's ROI heads are "
                        f"{type(heads).__name__}."
                    )
                if getattr(heads, "keypoint_on", False):
                    raise TypeError("Export does not support keypoint heads.")
            return graph(model).eval()
    raise TypeError(
        f"No export for {type(model).__name__}: supported are "
        f"{', '.join(a.__name__ for a, _, _ in _graph_types())}."
    )


def graph_outputs(model: nn.Module) -> Tuple[str, ...]:
    """Names of the outputs of ``export_graph(model)``."""
    for arch, _, names in _graph_types():
        if isinstance(model, arch):
            if arch is GeneralizedRCNN and not getattr(model.roi_heads, "mask_on", False):
                return names[:3]
            return names
    raise TypeError(f"No export for {type(model).__name__}.")
