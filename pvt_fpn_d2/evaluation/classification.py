"""
Image classification metrics in detectron2's ``DatasetEvaluator`` form: top-1 and top-5
accuracy, per-class accuracy, and the confusion matrix (saved as a picture and a json).
"""

import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

__all__ = ["ClassificationEvaluator", "classification_metrics"]

logger = logging.getLogger(__name__)


def classification_metrics(
    scores: np.ndarray, labels: np.ndarray, classes: Sequence[str], topk: Sequence[int] = (1, 5)
) -> Dict[str, float]:
    """
    Args:
        scores: (N, K) class scores; labels: (N,) true classes.

    Returns:
        ``top{k}`` (percent, for each k < K+1), ``acc-<class>`` (percent of that class's images
        classified right; NaN without images) and ``mean_class_acc``.
    """
    scores, labels = np.asarray(scores), np.asarray(labels)
    order = np.argsort(-scores, axis=1, kind="stable")
    out = {}
    for k in topk:
        if k <= scores.shape[1]:
            out[f"top{k}"] = 100.0 * float(np.mean((order[:, :k] == labels[:, None]).any(axis=1)))
    pred = order[:, 0]
    per_class = []
    for c, name in enumerate(classes):
        sel = labels == c
        acc = 100.0 * float(np.mean(pred[sel] == c)) if sel.any() else float("nan")
        out[f"acc-{name}"] = acc
        per_class.append(acc)
    out["mean_class_acc"] = float(np.nanmean(per_class)) if per_class else float("nan")
    return out


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels), np.asarray(pred)), 1)
    return m


class ClassificationEvaluator(DatasetEvaluator):
    """
    Collects the ``scores`` of :class:`~pvt_fpn_d2.modeling.ImageClassifier` and the inputs'
    ``label``; ``evaluate()`` returns ``{"classification": {"top1", "top5", "acc-<class>",
    "mean_class_acc"}}`` and, with ``output_dir``, writes ``confusion_matrix.png`` and
    ``confusion_matrix.json``.
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: Optional[str] = None,
        distributed: bool = True,
        topk: Sequence[int] = (1, 5),
    ):
        self.classes = list(MetadataCatalog.get(dataset_name).classes)
        self.output_dir = output_dir
        self.distributed = distributed
        self.topk = tuple(topk)
        self.reset()

    def reset(self):
        self._scores: List[np.ndarray] = []
        self._labels: List[int] = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            self._scores.append(out["scores"].detach().float().cpu().numpy())
            self._labels.append(int(inp["label"]))

    def evaluate(self):
        scores, labels = self._scores, self._labels
        if self.distributed:
            comm.synchronize()
            scores = list(itertools.chain(*comm.gather(scores)))
            labels = list(itertools.chain(*comm.gather(labels)))
            if not comm.is_main_process():
                return {}
        if not labels:
            logger.warning("ClassificationEvaluator: no predictions to evaluate.")
            return {}
        scores, labels = np.stack(scores), np.asarray(labels)
        if scores.shape[1] != len(self.classes):
            raise ValueError(
                f"the model scores {scores.shape[1]} classes, the dataset has "
                f"{len(self.classes)}: set the model's num_classes to the dataset's."
            )
        metrics = classification_metrics(scores, labels, self.classes, self.topk)
        if self.output_dir:
            self._save_confusion(confusion_matrix(scores.argmax(1), labels, len(self.classes)))
        return OrderedDict(classification=metrics)

    def _save_confusion(self, matrix: np.ndarray) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        os.makedirs(self.output_dir, exist_ok=True)
        with open(os.path.join(self.output_dir, "confusion_matrix.json"), "w") as f:
            json.dump({"classes": self.classes, "matrix": matrix.tolist()}, f)
        k = len(self.classes)
        fig, ax = plt.subplots(figsize=(2 + 0.5 * k, 2 + 0.5 * k))
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(k), self.classes, rotation=90)
        ax.set_yticks(range(k), self.classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(self.output_dir, "confusion_matrix.png"), dpi=100)
        plt.close(fig)
