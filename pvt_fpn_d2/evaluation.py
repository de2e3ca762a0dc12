"""
COCO evaluation in detectron2's model-zoo style, fast without a compiled detectron2.

:class:`COCOEvaluator` is detectron2's ``COCOEvaluator`` (same tables, same results dict) that
computes the metrics with faster-coco-eval's C++ COCOeval, which gives pycocotools' numbers.
"""

import contextlib
import io
import logging
from typing import Optional

from faster_coco_eval import COCO as FasterCOCO
from faster_coco_eval import COCOeval_faster

from detectron2.evaluation import COCOEvaluator as D2COCOEvaluator

from .compat import cocoeval_class

__all__ = ["COCOEvaluator", "FasterCOCOeval"]

logger = logging.getLogger(__name__)


def _to_faster_coco(coco) -> FasterCOCO:
    """A faster-coco-eval COCO object over the same dataset as a pycocotools one."""
    out = FasterCOCO()
    out.dataset = coco.dataset
    with contextlib.redirect_stdout(io.StringIO()):
        out.createIndex()
    return out


class FasterCOCOeval(COCOeval_faster):
    """
    faster-coco-eval's C++ COCOeval with pycocotools' constructor: it takes the pycocotools
    ``COCO`` objects detectron2 builds, and reports with ``params.maxDets[-1]`` detections.
    """

    def __init__(self, coco_gt, coco_dt, iou_type: str = "segm"):
        super().__init__(
            _to_faster_coco(coco_gt), _to_faster_coco(coco_dt), iou_type, print_function=logger.info
        )


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
        # detectron2's own fast path needs its C++ ops: we always hand it pycocotools' API
        # (use_fast_impl=False) and swap the COCOeval class in _eval_predictions.
        super().__init__(
            dataset_name,
            tasks,
            distributed,
            output_dir,
            max_dets_per_image=max_dets_per_image,
            use_fast_impl=False,
            **kwargs,
        )
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
            return super()._eval_predictions(predictions, img_ids)
        self._logger.info("COCO metrics are computed with faster-coco-eval (C++).")
        with cocoeval_class(FasterCOCOeval):
            return super()._eval_predictions(predictions, img_ids)
