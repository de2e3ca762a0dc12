"""
Monocular depth metrics in detectron2's ``DatasetEvaluator`` form, the standard set of Eigen et
al. (2014) as BTS and AdaBins report them: AbsRel, SqRel, RMSE, RMSE log and the threshold
accuracies delta < 1.25, 1.25^2, 1.25^3, computed per image over the pixels with a ground truth
in (``min_depth``, ``max_depth``) and averaged over the images. The ground truth is read from each
image's depth PNG at its original size.
"""

import itertools
import logging
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..data.depth import read_depth

__all__ = ["DepthEvaluator", "depth_metrics", "DEPTH_METRICS"]

logger = logging.getLogger(__name__)

DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3")


def depth_metrics(
    pred: np.ndarray, gt: np.ndarray, min_depth: float = 1e-3, max_depth: float = 10.0
) -> Dict[str, float]:
    """The metrics of one image (``pred`` clipped to [min_depth, max_depth]); d1-d3 in percent."""
    valid = (gt > min_depth) & (gt < max_depth)
    if not valid.any():
        return {}
    p = np.clip(pred[valid].astype(np.float64), min_depth, max_depth)
    g = gt[valid].astype(np.float64)
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "sq_rel": float(np.mean((p - g) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))),
        "d1": 100.0 * float(np.mean(ratio < 1.25)),
        "d2": 100.0 * float(np.mean(ratio < 1.25**2)),
        "d3": 100.0 * float(np.mean(ratio < 1.25**3)),
    }


class DepthEvaluator(DatasetEvaluator):
    """
    Scores the ``"depth"`` outputs of :class:`~pvt_fpn_d2.modeling.DepthEstimator` against each
    input's ``depth_file_name`` (read with the dataset's ``depth_scale``); ``evaluate()`` returns
    ``{"depth": {metric: mean over images}}``. ``max_depth`` defaults to the dataset's.
    """

    def __init__(
        self,
        dataset_name: str,
        min_depth: float = 1e-3,
        max_depth: Optional[float] = None,
        distributed: bool = True,
    ):
        meta = MetadataCatalog.get(dataset_name)
        self.depth_scale = float(meta.depth_scale)
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth if max_depth is not None else meta.max_depth)
        self.distributed = distributed
        self.reset()

    def reset(self):
        self._per_image: List[Dict[str, float]] = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            gt = read_depth(inp["depth_file_name"], self.depth_scale)
            pred = out["depth"].detach().float().cpu().numpy()
            if pred.shape != gt.shape:
                raise ValueError(
                    f"{inp['depth_file_name']}: the prediction is {pred.shape}, the ground truth "
                    f"{gt.shape}; the model returns depth at the input's height and width."
                )
            m = depth_metrics(pred, gt, self.min_depth, self.max_depth)
            if m:
                self._per_image.append(m)

    def evaluate(self):
        per_image = self._per_image
        if self.distributed:
            comm.synchronize()
            per_image = list(itertools.chain(*comm.gather(per_image)))
            if not comm.is_main_process():
                return {}
        if not per_image:
            logger.warning("DepthEvaluator: no image with a valid ground truth.")
            return {}
        return OrderedDict(
            depth={k: float(np.mean([m[k] for m in per_image])) for k in DEPTH_METRICS}
        )
