"""Run a model exported by :func:`pvt_fpn_d2.deploy.export_onnx` with ONNX Runtime."""

import json
import os
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from detectron2.config import LazyConfig, instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling.postprocessing import detector_postprocess, sem_seg_postprocess
from detectron2.structures import Boxes, Instances

from ..engine.predictor import Predictor
from .export import EXPORT_SPEC

__all__ = ["OnnxPredictor"]


class OnnxPredictor(Predictor):
    """
    :class:`pvt_fpn_d2.engine.Predictor` with an exported ``model.onnx`` run by ONNX Runtime
    (CPU): the same preprocessing, outputs (detectron2 ``Instances``, ``sem_seg`` scores,
    classifier ``scores``, ``depth``) and drawing.

    Args:
        model: the export folder or its ``model.onnx``.
        cfg: the config (class names from its test dataset, as :class:`Predictor`); default: the
            one saved beside the model, with the class names of ``export.json``.
        threads: ONNX Runtime's intra-op threads; default: as many as PyTorch uses
            (``torch.get_num_threads()``, which follows ``OMP_NUM_THREADS``), so that the eager
            and exported models run alike and a process limited to N threads stays within them
            (ONNX Runtime's own default, one busy-waiting thread per core, ignores that limit).
    """

    def __init__(self, model: str, cfg=None, threads: Optional[int] = None):
        import onnxruntime as ort

        folder = model if os.path.isdir(model) else os.path.dirname(os.path.abspath(model))
        onnx_file = model if os.path.isfile(model) else os.path.join(folder, "model.onnx")
        spec_file = os.path.join(folder, EXPORT_SPEC)
        for f in (onnx_file, spec_file):
            if not os.path.isfile(f):
                raise FileNotFoundError(
                    f"{f} not found: export the model first (tools/export_model.py), which "
                    f"writes model.onnx and {EXPORT_SPEC} into one folder."
                )
        with open(spec_file) as f:
            self.spec = json.load(f)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads() if threads is None else threads
        self.session = ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
        self.cfg = (
            cfg if cfg is not None else LazyConfig.load(os.path.join(folder, self.spec["config"]))
        )
        self.model = None
        self.augmentations = T.AugmentationList(
            instantiate(self.cfg.dataloader.test.mapper.augmentations)
        )
        self.image_format = self.spec["input"]["channel_order"]
        if cfg is not None:
            self.metadata = MetadataCatalog.get(instantiate(cfg.dataloader.test.dataset.names))
        else:
            self.metadata = self._metadata_from_spec()

    def _metadata_from_spec(self):
        name = f"pvt_fpn_d2_export:{id(self)}"
        key = {"instances": "thing_classes", "sem_seg": "stuff_classes"}.get(
            self.spec["task"], "classes"
        )
        meta = MetadataCatalog.get(name)
        meta.set(**{key: list(self.spec["classes"])})
        for k in ("depth_scale", "max_depth"):
            if k in self.spec:
                meta.set(**{k: self.spec[k]})
        return meta

    def _check(self, image: np.ndarray) -> None:
        spec = self.spec["input"]
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"The model takes (H, W, 3) images in {spec['channel_order']} order; got shape "
                f"{image.shape}. Convert grayscale/RGBA images (Predictor.read does)."
            )
        if image.dtype not in (np.uint8, np.float32, np.float64):
            raise ValueError(f"Images must be uint8 or float 0-255, got {image.dtype}.")

    @torch.no_grad()
    def predict(self, image: np.ndarray) -> Dict:
        """Like :meth:`Predictor.predict`, with the exported model."""
        self._check(image)
        h, w = image.shape[:2]
        aug = T.AugInput(image)
        self.augmentations(aug)
        resized = aug.image
        x = np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32)
        return self.run(x, h, w)

    def run(self, x: np.ndarray, height: int, width: int) -> Dict:
        """Run the file on ``x``, a (3, h, w) float32 image already resized like the test loader,
        and return its outputs at the original ``height`` x ``width`` (as the eager model does
        for the evaluator: ``instances``, ``sem_seg``, ``scores`` or ``depth``)."""
        h, w = height, width
        rh, rw = x.shape[1:]
        low = self.spec["input"]["min_size"]
        if min(rh, rw) < low:
            raise ValueError(
                f"The {h}x{w} image is {rh}x{rw} after the test resize; the exported model "
                f"needs at least {low}x{low} pixels. Pad the image to a less elongated shape, "
                f"or give OnnxPredictor a config whose test resize "
                f"(dataloader.test.mapper.augmentations) keeps both sides at {low} or more."
            )
        outputs = dict(zip(self.spec["outputs"], self.session.run(None, {"image": x})))
        task = self.spec["task"]
        if task == "instances":
            inst = Instances((rh, rw))
            inst.pred_boxes = Boxes(torch.from_numpy(outputs["boxes"]))
            inst.scores = torch.from_numpy(outputs["scores"])
            inst.pred_classes = torch.from_numpy(outputs["classes"])
            if "masks" in outputs:
                inst.pred_masks = torch.from_numpy(outputs["masks"])
            return {"instances": detector_postprocess(inst, h, w)}
        if task == "sem_seg":
            return {
                "sem_seg": sem_seg_postprocess(torch.from_numpy(outputs["sem_seg"]), (rh, rw), h, w)
            }
        if task == "classification":
            scores = torch.from_numpy(outputs["scores"])
            return {"scores": scores, "pred_class": int(scores.argmax())}
        depth = torch.from_numpy(outputs["depth"])
        if (rh, rw) != (h, w):
            depth = F.interpolate(
                depth[None, None], size=(h, w), mode="bilinear", align_corners=False
            )[0, 0]
        return {"depth": depth}
