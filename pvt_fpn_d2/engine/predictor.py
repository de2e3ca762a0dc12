"""Prediction on image files with a LazyConfig and a checkpoint (used by tools/predict.py)."""

import json
import logging
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch
from PIL import Image

from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import convert_image_to_rgb
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.structures import Instances
from detectron2.utils.visualizer import ColorMode, Visualizer

from .checkpoint import PVTCheckpointer
from ..data.images import IMAGE_EXTENSIONS, read_image
from .trainer import resolve_device

__all__ = ["Predictor", "find_images", "predictions_to_coco"]

logger = logging.getLogger(__name__)


def find_images(inputs: Iterable[str]) -> List[Path]:
    """Image files among ``inputs`` (files, or folders searched recursively), sorted."""
    found = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"Input {item!r} is neither an image file nor a folder.")
    if not found:
        raise FileNotFoundError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {list(inputs)}."
        )
    return found


class Predictor:
    """
    A detector built from a LazyConfig, with the checkpoint loaded, that preprocesses images
    exactly like the config's test data loader (format and resize).
    """

    def __init__(self, cfg, checkpoint: str):
        self.cfg = cfg
        self.device = resolve_device(cfg.train.device)
        self.model = instantiate(cfg.model).to(self.device).eval()
        PVTCheckpointer(self.model).load(checkpoint)
        mapper = instantiate(cfg.dataloader.test.mapper)
        self.augmentations = mapper.augmentations  # a T.AugmentationList
        self.image_format = mapper.image_format
        # registering the test dataset (if the config does it) gives the class names
        self.metadata = MetadataCatalog.get(instantiate(cfg.dataloader.test.dataset.names))

    @torch.no_grad()
    def predict(self, image: np.ndarray) -> Dict:
        """
        Args:
            image: (H, W, C) array in the config's input format (see ``read``).

        Returns:
            The model's outputs on the CPU, in the coordinates of ``image``: ``"instances"``
            (detectors) and/or ``"sem_seg"`` (semantic segmentation: (K, H, W) scores), or
            ``"scores"`` (K,) and ``"pred_class"`` (classifiers), or ``"depth"`` (H, W) metres.
        """
        h, w = image.shape[:2]
        aug = T.AugInput(image)
        self.augmentations(aug)
        tensor = torch.as_tensor(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))
        (out,) = self.model([{"image": tensor.to(self.device), "height": h, "width": w}])
        return {
            k: v.to("cpu") if hasattr(v, "to") else v
            for k, v in out.items()
            if k in ("instances", "sem_seg", "scores", "pred_class", "depth")
        }

    def __call__(self, image: np.ndarray) -> Instances:
        """The detected Instances of ``image`` (see :meth:`predict`)."""
        out = self.predict(image)
        if "instances" not in out:
            raise TypeError(
                f"{type(self.model).__name__} predicts {sorted(out)}, not instances; "
                f"use Predictor.predict()."
            )
        return out["instances"]

    def read(self, path: str) -> np.ndarray:
        """Read an image file in the model's input format with the reader training and
        evaluation use (EXIF orientation applied; grayscale, palette, 16-bit converted)."""
        return read_image(str(path), format=self.image_format)

    def draw(self, image: np.ndarray, instances: Instances) -> np.ndarray:
        """Masks, boxes, class names and scores drawn on the image (RGB uint8)."""
        rgb = convert_image_to_rgb(image, self.image_format)
        vis = Visualizer(rgb, self.metadata, instance_mode=ColorMode.IMAGE)
        return vis.draw_instance_predictions(instances).get_image()

    def class_names(self) -> List[str]:
        return list(self.metadata.get("classes", None) or self.metadata.get("thing_classes", []))

    def draw_top_labels(self, image: np.ndarray, top: List[Dict]) -> np.ndarray:
        """The top classes and their scores written on the image (RGB uint8)."""
        rgb = convert_image_to_rgb(image, self.image_format)
        vis = Visualizer(rgb, self.metadata)
        font = max(10, min(rgb.shape[:2]) // 12)
        for i, t in enumerate(top):
            vis.draw_text(
                f"{t['class']} {t['score']:.2f}",
                (4, 4 + i * (font + 4)),
                font_size=font,
                horizontal_alignment="left",
            )
        return vis.get_output().get_image()

    def draw_sem_seg(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """A (H, W) label map drawn on the image with the class names (RGB uint8)."""
        rgb = convert_image_to_rgb(image, self.image_format)
        vis = Visualizer(rgb, self.metadata, instance_mode=ColorMode.IMAGE)
        return vis.draw_sem_seg(labels, alpha=0.5).get_image()


def predictions_to_coco(results: List[Dict], metadata, image_files: List[str]) -> Dict:
    """
    All predictions as a COCO-format dataset (``images``, ``categories``, ``annotations`` with
    a ``score``): pycocotools' ``COCO()`` loads it, and it can serve as pseudo-labels.

    Args:
        results: per image, {"height", "width", "instances": Instances}.
    """
    names = metadata.get("thing_classes", None)
    id_map = metadata.get("thing_dataset_id_to_contiguous_id", None)
    to_dataset_id = {v: k for k, v in id_map.items()} if id_map else None
    num = (
        len(names)
        if names
        else 1
        + max(
            (int(r["instances"].pred_classes.max()) for r in results if len(r["instances"])),
            default=0,
        )
    )
    categories = [
        {"id": to_dataset_id[i] if to_dataset_id else i + 1, "name": names[i] if names else str(i)}
        for i in range(num)
    ]
    images, annotations = [], []
    for image_id, (r, file_name) in enumerate(zip(results, image_files), start=1):
        images.append(
            {"id": image_id, "file_name": file_name, "height": r["height"], "width": r["width"]}
        )
        # detectron2's converter (boxes XYWH, RLE masks), then the dataset's category ids and
        # the fields that make the file a COCO dataset (id, area, iscrowd) as well
        for ann in instances_to_coco_json(r["instances"], image_id):
            c = ann["category_id"]
            ann["category_id"] = to_dataset_id[c] if to_dataset_id else c + 1
            ann["id"] = len(annotations) + 1
            ann["iscrowd"] = 0
            if "segmentation" in ann:
                ann["area"] = float(mask_util.area(ann["segmentation"]))
            else:
                ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
            annotations.append(ann)
    return {"images": images, "categories": categories, "annotations": annotations}


def run_prediction(
    predictor: Predictor,
    inputs: Iterable[str],
    output_dir: str,
    score_threshold: float = 0.5,
    max_images: Optional[int] = None,
) -> Dict:
    """
    Predict every image in ``inputs`` and write ``<output_dir>/<image stem>.jpg`` with the
    predictions drawn. Detectors also write ``<output_dir>/predictions.json`` (COCO format, all
    instances above ``score_threshold``), which is returned. Semantic segmentation models write
    ``<output_dir>/<image stem>.png`` (uint8 class-index label maps, detectron2's
    ``sem_seg_file_name`` format) and ``<output_dir>/sem_seg_predictions.json`` (per image: the
    label file and the share of pixels of each class), which is returned. Classifiers write
    ``<output_dir>/classification_predictions.json`` (per image: the top-5 classes and their
    scores), which is returned, with the top classes written on each picture. Depth models
    write each image beside its coloured depth, ``<image stem>_depth.png`` (16-bit, depth x the
    dataset's ``depth_scale``) and ``depth_predictions.json``, which is returned.
    """
    files = find_images(inputs)[:max_images]
    os.makedirs(output_dir, exist_ok=True)
    results, names, sem_seg, classified, depths = [], [], [], [], []
    for path in files:
        image = predictor.read(path)
        out = predictor.predict(image)
        picture = os.path.join(output_dir, f"{path.stem}.jpg")
        if picture in names:  # same stem in two folders
            picture = os.path.join(output_dir, f"{path.parent.name}_{path.stem}.jpg")
        names.append(picture)
        if "instances" in out:
            inst = out["instances"]
            inst = inst[inst.scores >= score_threshold]
            drawn = predictor.draw(image, inst)
            results.append({"height": image.shape[0], "width": image.shape[1], "instances": inst})
            logger.info(f"{path}: {len(inst)} instances -> {picture}")
        elif "depth" in out:
            depth = out["depth"].numpy()
            scale = float(predictor.metadata.get("depth_scale", 1000.0))
            max_depth = float(predictor.metadata.get("max_depth", depth.max() or 1.0))
            norm = np.clip(depth / max_depth, 0, 1)
            coloured = cv2.applyColorMap((255 * (1 - norm)).astype(np.uint8), cv2.COLORMAP_JET)
            drawn = np.concatenate([convert_image_to_rgb(image, predictor.image_format),
                                    coloured[:, :, ::-1]], axis=1)  # fmt: skip
            depth_file = picture[: -len(".jpg")] + "_depth.png"
            cv2.imwrite(depth_file, np.clip(np.round(depth * scale), 0, 65535).astype(np.uint16))
            depths.append(
                {
                    "file_name": str(path),
                    "depth_file": depth_file,
                    "depth_scale": scale,
                    "min_m": round(float(depth.min()), 3),
                    "median_m": round(float(np.median(depth)), 3),
                    "max_m": round(float(depth.max()), 3),
                }
            )
            logger.info(f"{path}: depth {depths[-1]['median_m']} m (median) -> {depth_file}")
        elif "scores" in out:  # classification
            names = predictor.class_names()
            scores = out["scores"]
            k = min(5, len(scores))
            values, indices = scores.topk(k)
            top = [
                {
                    "class": names[i] if i < len(names) else str(i),
                    "class_id": int(i),
                    "score": round(float(v), 4),
                }
                for v, i in zip(values.tolist(), indices.tolist())
            ]
            drawn = predictor.draw_top_labels(image, top)
            classified.append({"file_name": str(path), "top5": top})
            logger.info(f"{path}: {top[0]['class']} {top[0]['score']:.2f} -> {picture}")
        else:
            labels = out["sem_seg"].argmax(dim=0).numpy().astype(np.uint8)
            drawn = predictor.draw_sem_seg(image, labels)
            label_file = picture[: -len(".jpg")] + ".png"
            Image.fromarray(labels).save(label_file)
            classes = predictor.metadata.get("stuff_classes", None)
            values, counts = np.unique(labels, return_counts=True)
            share = {
                (classes[v] if classes and v < len(classes) else str(v)): round(c / labels.size, 4)
                for v, c in zip(values.tolist(), counts.tolist())
            }
            sem_seg.append({"file_name": str(path), "label_file": label_file, "classes": share})
            logger.info(f"{path}: {share} -> {picture}, {label_file}")
        Image.fromarray(drawn).save(picture, quality=92)
    if depths:
        name, payload = "depth_predictions.json", depths
    elif classified:
        name, payload = "classification_predictions.json", classified
    elif sem_seg:
        name, payload = "sem_seg_predictions.json", sem_seg
    else:
        name = "predictions.json"
        payload = predictions_to_coco(results, predictor.metadata, [str(f) for f in files])
    with open(os.path.join(output_dir, name), "w") as f:
        json.dump(payload, f)
    return payload
