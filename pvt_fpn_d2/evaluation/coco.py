"""
COCO evaluation in detectron2's model-zoo style, fast without a compiled detectron2.

:class:`COCOEvaluator` is detectron2's ``COCOEvaluator`` (same tables, same results dict) that
computes the metrics with faster-coco-eval's C++ COCOeval, which gives pycocotools' numbers.
"""

import contextlib
import io
import logging
import tempfile
from typing import Optional

from faster_coco_eval import COCO as FasterCOCO
from faster_coco_eval import COCOeval_faster

from pycocotools.cocoeval import COCOeval

from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator as D2COCOEvaluator
from detectron2.evaluation import coco_evaluation as d2_coco_evaluation

from ..compat import cocoeval_class
from ..data.coco_json import registered_coco_apis
from ..data.exports import box_polygon

__all__ = ["COCOEvaluator", "FasterCOCOeval", "segm_ground_truth"]

logger = logging.getLogger(__name__)


def _to_faster_coco(coco) -> FasterCOCO:
    """A faster-coco-eval COCO object over the same dataset as a pycocotools one."""
    out = FasterCOCO()
    out.dataset = coco.dataset
    with contextlib.redirect_stdout(io.StringIO()):
        out.createIndex()
    return out


def segm_ground_truth(coco_gt):
    """
    The ground truth for mask AP: an object with a box and no mask (a rectangle drawn in CVAT
    or Label Studio) becomes an ignored (crowd) region of its box, so a mask predicted on it is
    neither a hit nor a false positive and it is not counted as missed; box AP uses it as it
    is. Returns ``coco_gt`` itself when every object has a mask.
    """
    cached = getattr(coco_gt, "_segm_ground_truth", None)
    if cached is not None:
        return cached
    anns = coco_gt.dataset.get("annotations", [])
    out = coco_gt
    if any(not a.get("segmentation") for a in anns):
        fixed = []
        for a in anns:
            if not a.get("segmentation"):
                a = dict(a, iscrowd=1, segmentation=box_polygon(a["bbox"]))
            fixed.append(a)
        out = type(coco_gt)()
        out.dataset = dict(coco_gt.dataset, annotations=fixed)
        with contextlib.redirect_stdout(io.StringIO()):
            out.createIndex()
    coco_gt._segm_ground_truth = out
    return out


class FasterCOCOeval(COCOeval_faster):
    """
    faster-coco-eval's C++ COCOeval with pycocotools' constructor: it takes the pycocotools
    ``COCO`` objects detectron2 builds, and reports with ``params.maxDets[-1]`` detections.
    Mask AP ignores objects that have no mask (:func:`segm_ground_truth`).
    """

    def __init__(self, coco_gt, coco_dt, iou_type: str = "segm"):
        if iou_type == "segm":
            coco_gt = segm_ground_truth(coco_gt)
        super().__init__(
            _to_faster_coco(coco_gt), _to_faster_coco(coco_dt), iou_type, print_function=logger.info
        )


def _with_segm_ground_truth(cls: type) -> type:
    """pycocotools' (or detectron2's) COCOeval class with :func:`segm_ground_truth`."""

    class WithSegmGroundTruth(cls):
        def __init__(self, coco_gt=None, coco_dt=None, iou_type="segm"):
            if iou_type == "segm" and coco_gt is not None:
                coco_gt = segm_ground_truth(coco_gt)
            super().__init__(coco_gt, coco_dt, iou_type)

    WithSegmGroundTruth.__name__ = cls.__name__
    return WithSegmGroundTruth


class COCOEvaluator(D2COCOEvaluator):
    """
    detectron2's ``COCOEvaluator`` evaluating with :class:`FasterCOCOeval`.

    Args:
        dataset_name, tasks, distributed, output_dir: as detectron2's.
        max_dets_per_image: detections per image counted by the evaluation (COCO: 100). Keep it
            equal to the model's limit (``test_topk_per_image`` / ``max_detections_per_image``).
        use_fast_impl: False evaluates with pycocotools, as ``detectron2``'s ``False``.
    """

    def __init__(
        self,
        dataset_name: str,
        tasks=None,
        distributed: bool = True,
        output_dir: Optional[str] = None,
        *,
        max_dets_per_image: Optional[int] = None,
        use_fast_impl: bool = True,
        **kwargs,
    ):
        meta = MetadataCatalog.get(dataset_name)
        self._tmp_dir = None
        if output_dir is None and not hasattr(meta, "json_file"):
            # detectron2 converts such a dataset to a COCO json in output_dir and refuses
            # without one: convert into a temporary folder, removed with this evaluator
            self._tmp_dir = tempfile.TemporaryDirectory(prefix="pvt_fpn_d2_eval_")
        # detectron2's own fast path needs its C++ ops: we always hand it pycocotools' API
        # (use_fast_impl=False) and swap the COCOeval class in _eval_predictions.
        # the ground truth of a registered json is not parsed again; COCOeval writes into it,
        # so it gets annotation dicts of its own
        with registered_coco_apis(own_annotations=True):
            super().__init__(
                dataset_name,
                tasks,
                distributed,
                self._tmp_dir.name if self._tmp_dir else output_dir,
                max_dets_per_image=max_dets_per_image,
                use_fast_impl=False,
                **kwargs,
            )
        if self._tmp_dir is not None:
            self._output_dir = None  # nothing else is written
            del meta.json_file  # the converted file goes with the evaluator
        self._use_faster = use_fast_impl
        if max_dets_per_image is not None:
            # detectron2 uses [1, 10, N]; keep the list ascending (faster-coco-eval sorts it
            # and reports with the last entry), so N < 10 is honoured too
            self._max_dets_per_image = [
                min(1, max_dets_per_image),
                min(10, max_dets_per_image),
                max_dets_per_image,
            ]

    def _eval_predictions(self, predictions, img_ids=None):
        if not self._use_faster:
            with cocoeval_class(
                _with_segm_ground_truth(d2_coco_evaluation.COCOeval),
                _with_segm_ground_truth(getattr(d2_coco_evaluation, "COCOevalMaxDets", COCOeval)),
            ):
                return super()._eval_predictions(predictions, img_ids)
        self._logger.info("COCO metrics are computed with faster-coco-eval (C++).")
        with cocoeval_class(FasterCOCOeval):
            return super()._eval_predictions(predictions, img_ids)
