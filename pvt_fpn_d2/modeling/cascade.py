"""
Cascade Mask R-CNN as mmdetection trains and runs it (the official PVT-v2 3x Cascade models), on
top of detectron2's ``CascadeROIHeads``.

detectron2's cascade has one mask head, trained on the first stage's samples; mmdetection's
``CascadeRoIHead`` has one per stage. :class:`CascadeMaskROIHeads` differs from detectron2's
``CascadeROIHeads`` in these points, each mmdetection's behaviour:

* **A mask head per stage**, trained on that stage's positive samples; at test time the mask
  probabilities (sigmoid) of every stage's head on the final boxes are averaged.
* **Stage loss weights** (1, 0.5, 0.25): each stage's box and mask losses are multiplied by its
  weight, and the features' gradients are not scaled (detectron2 scales them by 1/stages and
  leaves the losses unweighted).
* **Sampling in every stage**: a stage after the first refines the previous stage's sampled
  proposals that were not ground-truth boxes, matches them at its IoU, adds the ground-truth
  boxes and samples ``batch_size_per_image`` again (detectron2 takes all the previous stage's
  boxes, ground truth included, without sampling or adding the ground truth).
* **Class-specific box regression** is allowed (the official 3x heads): between stages each
  proposal is refined by the deltas of one class, its ground-truth class in training (the
  predicted one for background samples) and the stage's top non-background class at test time.
* **Test-time scores**: the stages' class *logits* are averaged, then the softmax is taken
  (``average_logits=True``, mmdetection); detectron2 averages the probabilities.

Not changed: the matcher, sampler, poolers, box heads and predictors (losses, box coding and
inference), mask heads and their losses, all detectron2's. yacs:
``MODEL.ROI_HEADS.NAME: "CascadeMaskROIHeads"`` with ``MODEL.ROI_BOX_CASCADE_HEAD`` as for
detectron2's cascade; ``MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG`` may be False.
"""

from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.roi_heads import (
    ROI_HEADS_REGISTRY,
    CascadeROIHeads,
    FastRCNNOutputLayers,
    build_mask_head,
    select_foreground_proposals,
)
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.modeling.roi_heads.mask_head import mask_rcnn_inference
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

__all__ = ["CascadeMaskROIHeads", "MMDET_STAGE_LOSS_WEIGHTS"]

# mmdetection's CascadeRoIHead(stage_loss_weights=[1, 0.5, 0.25]) in the official configs
MMDET_STAGE_LOSS_WEIGHTS = (1.0, 0.5, 0.25)

_FROM_GT = "proposal_from_gt"  # proposals field: the box is a ground-truth box added as proposal


@ROI_HEADS_REGISTRY.register()
class CascadeMaskROIHeads(CascadeROIHeads):
    """
    detectron2's ``CascadeROIHeads`` with a mask head per stage and mmdetection's training and
    test rules (module docstring). Weights: ``roi_heads.mask_head.{stage}.*`` (an
    ``nn.ModuleList``); the box heads and predictors are named as in detectron2's cascade.
    """

    @configurable
    def __init__(
        self,
        *,
        mask_heads: Optional[Sequence[nn.Module]] = None,
        stage_loss_weights: Sequence[float] = MMDET_STAGE_LOSS_WEIGHTS,
        average_logits: bool = True,
        **kwargs,
    ):
        """
        Args:
            mask_heads: one mask head per stage (``mask_in_features`` and ``mask_pooler`` as
                for ``StandardROIHeads``); None for a box-only cascade.
            stage_loss_weights: the weight of each stage's losses.
            average_logits: average the stages' class logits before the softmax at test time
                (mmdetection); False averages the probabilities (detectron2).
            kwargs: ``CascadeROIHeads``'s arguments, without ``mask_head``.
        """
        if "mask_head" in kwargs:
            raise ValueError(
                "CascadeMaskROIHeads takes mask_heads= (one per stage), not mask_head=."
            )
        if mask_heads is not None:
            kwargs["mask_head"] = nn.ModuleList(mask_heads)
        super().__init__(**kwargs)
        n = self.num_cascade_stages
        if self.mask_on and len(self.mask_head) != n:
            raise ValueError(f"CascadeMaskROIHeads: {len(self.mask_head)} mask heads, {n} stages.")
        if len(stage_loss_weights) != n:
            raise ValueError(
                f"CascadeMaskROIHeads: {len(stage_loss_weights)} stage_loss_weights, {n} stages."
            )
        if self.keypoint_on:
            raise ValueError("CascadeMaskROIHeads has no keypoint head.")
        self.stage_loss_weights = tuple(float(w) for w in stage_loss_weights)
        self.average_logits = average_logits

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["stage_loss_weights"] = tuple(
            cfg.MODEL.ROI_BOX_CASCADE_HEAD.get("STAGE_LOSS_WEIGHTS", MMDET_STAGE_LOSS_WEIGHTS)
        )
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        if cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG:
            return super()._init_box_head(cfg, input_shape)
        # detectron2's builder refuses class-specific regression: build agnostic, then replace
        # the predictors with class-specific ones of the same box coders
        agnostic = cfg.clone()
        agnostic.defrost()
        agnostic.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = True
        ret = super()._init_box_head(agnostic, input_shape)
        ret["box_predictors"] = [
            FastRCNNOutputLayers(cfg, head.output_shape, box2box_transform=p.box2box_transform)
            for head, p in zip(ret["box_heads"], ret["box_predictors"])
        ]
        return ret

    @classmethod
    def _init_mask_head(cls, cfg, input_shape):
        ret = super()._init_mask_head(cfg, input_shape)
        if not ret:  # MODEL.MASK_ON False
            return ret
        # the first stage's head is detectron2's; the others from the same config
        res = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
        channels = input_shape[ret["mask_in_features"][0]].channels
        pooled = ShapeSpec(channels=channels, width=res, height=res)
        stages = len(cfg.MODEL.ROI_BOX_CASCADE_HEAD.IOUS)
        ret["mask_heads"] = [ret.pop("mask_head")]
        ret["mask_heads"] += [build_mask_head(cfg, pooled) for _ in range(stages - 1)]
        return ret

    # ---------------------------------------------------------------------------------------
    def forward(self, images, features, proposals, targets=None):
        if not self.training:
            return super().forward(images, features, proposals)
        del images
        box_features = [features[f] for f in self.box_in_features]
        image_sizes = [x.image_size for x in proposals]
        storage = get_event_storage()
        targets = [_flagged(t) for t in targets]
        losses: Dict[str, torch.Tensor] = {}
        predictions = None
        for k in range(self.num_cascade_stages):
            if k > 0:
                proposals = self._create_proposals_from_boxes(
                    self._refined_boxes(k - 1, predictions, proposals), image_sizes
                )
            with storage.name_scope(f"stage{k}"):
                proposals = self._label_and_sample(proposals, targets, k)
                predictions = self._run_stage(box_features, proposals, k)
                stage_losses = self.box_predictor[k].losses(predictions, proposals)
                if self.mask_on:
                    stage_losses.update(self._mask_loss(features, proposals, k))
            w = self.stage_loss_weights[k]
            losses.update({f"{name}_stage{k}": v * w for name, v in stage_losses.items()})
        return proposals, losses

    def _run_stage(self, features, proposals, stage):
        # detectron2's, without the 1/stages gradient scale: the losses carry the stage weights
        box_features = self.box_pooler(features, [x.proposal_boxes for x in proposals])
        return self.box_predictor[stage](self.box_head[stage](box_features))

    def _label_and_sample(self, proposals, targets, stage):
        """
        detectron2's ``label_and_sample_proposals`` with the stage's matcher; the proposals made
        from ground-truth boxes (``targets`` flagged by :func:`_flagged`) keep the flag, so the
        next stage can leave them out.
        """
        for p in proposals:
            p.set(_FROM_GT, torch.zeros(len(p), dtype=torch.bool, device=p.proposal_boxes.device))
            if not p.has("objectness_logits"):  # needed to add the ground truth, then unused
                p.objectness_logits = torch.zeros(len(p), device=p.proposal_boxes.device)
        matcher = self.proposal_matcher
        self.proposal_matcher = self.proposal_matchers[stage]
        try:
            return self.label_and_sample_proposals(proposals, targets)
        finally:
            self.proposal_matcher = matcher

    @torch.no_grad()
    def _refined_boxes(self, stage, predictions, proposals) -> List[torch.Tensor]:
        """
        The stage's boxes for the next stage: one box per proposal (the deltas of its
        ground-truth class, or of its top non-background class for background samples and at
        test time), without the proposals made from ground-truth boxes in training.
        """
        boxes = self.box_predictor[stage].predict_boxes(predictions, proposals)
        num = [len(p) for p in proposals]
        logits = predictions[0].split(num)
        out = []
        for b, s, p in zip(boxes, logits, proposals):
            if b.shape[1] > 4:  # class-specific regression
                label = s[:, :-1].argmax(dim=1)
                if self.training:
                    fg = p.gt_classes < self.num_classes
                    label = torch.where(fg, p.gt_classes, label)
                b = b.view(len(b), -1, 4)[torch.arange(len(b), device=b.device), label]
            if self.training:
                b = b[~p.get(_FROM_GT)]
            out.append(b)
        return out

    def _mask_loss(self, features, proposals, stage) -> Dict[str, torch.Tensor]:
        fg, _ = select_foreground_proposals(proposals, self.num_classes)
        feats = [features[f] for f in self.mask_in_features]
        x = self.mask_pooler(feats, [p.proposal_boxes for p in fg])
        return self.mask_head[stage](x, fg)

    # ---------------------------------------------------------------------------------------
    def _forward_box(self, features, proposals, targets=None):
        if self.training:
            raise RuntimeError("CascadeMaskROIHeads trains through forward()")
        features = [features[f] for f in self.box_in_features]
        image_sizes = [x.image_size for x in proposals]
        num = [len(p) for p in proposals]
        stages, predictions = [], None
        for k in range(self.num_cascade_stages):
            if k > 0:
                proposals = self._create_proposals_from_boxes(
                    self._refined_boxes(k - 1, predictions, proposals), image_sizes
                )
            predictions = self._run_stage(features, proposals, k)
            stages.append((self.box_predictor[k], predictions, proposals))
        if self.average_logits:
            scores = torch.stack([p[0] for _, p, _ in stages]).mean(0).softmax(dim=-1)
        else:
            scores = torch.stack([cat(b.predict_probs(p, ps)) for b, p, ps in stages]).mean(0)
        predictor = self.box_predictor[-1]
        boxes = predictor.predict_boxes(predictions, proposals)
        pred_instances, _ = fast_rcnn_inference(
            boxes,
            scores.split(num),
            image_sizes,
            predictor.test_score_thresh,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
        )
        return pred_instances

    def _forward_mask(self, features, instances):
        if not self.mask_on:
            return {} if self.training else instances
        if self.training:
            raise RuntimeError("CascadeMaskROIHeads trains its mask heads through forward()")
        feats = [features[f] for f in self.mask_in_features]
        x = self.mask_pooler(feats, [i.pred_boxes for i in instances])
        probs = []
        for head in self.mask_head:
            mask_rcnn_inference(head.layers(x), instances)  # sets pred_masks (probabilities)
            probs.append([i.pred_masks for i in instances])
        for i, per_stage in enumerate(zip(*probs)):
            instances[i].pred_masks = torch.stack(per_stage).mean(0)
        return instances


def _flagged(targets: Instances) -> Instances:
    """The ground truth of an image with every box flagged as ground truth: proposals made from
    them by ``add_ground_truth_to_proposals`` keep the flag."""
    t = Instances(targets.image_size, **targets.get_fields())
    t.set(_FROM_GT, torch.ones(len(t), dtype=torch.bool, device=t.gt_boxes.device))
    return t
