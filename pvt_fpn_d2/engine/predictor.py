"""Prediction on image files with a LazyConfig and a checkpoint (used by tools/predict.py)."""

import json
import logging
import os
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch
import tqdm
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

__all__ = [
    "Predictor",
    "draw_outputs",
    "find_images",
    "open_video",
    "predictions_to_coco",
    "run_prediction",
    "run_video",
]

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


def top_classes(predictor: Predictor, scores: torch.Tensor, k: int = 5) -> List[Dict]:
    """The ``k`` best classes of a classifier's scores: [{"class", "class_id", "score"}]."""
    names = predictor.class_names()
    values, indices = scores.topk(min(k, len(scores)))
    return [
        {
            "class": names[i] if i < len(names) else str(i),
            "class_id": int(i),
            "score": round(float(v), 4),
        }
        for v, i in zip(values.tolist(), indices.tolist())
    ]


def colour_depth(predictor: Predictor, depth: np.ndarray) -> np.ndarray:
    """A (H, W) depth map in metres as an RGB picture (near red, far blue), scaled to the
    dataset's ``max_depth`` (or the map's own maximum)."""
    max_depth = float(predictor.metadata.get("max_depth", depth.max() or 1.0))
    norm = np.clip(depth / max_depth, 0, 1)
    return cv2.applyColorMap((255 * (1 - norm)).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]


def draw_outputs(
    predictor: Predictor, image: np.ndarray, out: Dict, score_threshold: float = 0.5
) -> np.ndarray:
    """The outputs of :meth:`Predictor.predict` drawn on ``image`` (RGB uint8): instances above
    ``score_threshold``, the semantic classes, the top-5 classes, or the image beside its
    coloured depth."""
    if "instances" in out:
        inst = out["instances"]
        return predictor.draw(image, inst[inst.scores >= score_threshold])
    if "depth" in out:
        rgb = convert_image_to_rgb(image, predictor.image_format)
        return np.concatenate([rgb, colour_depth(predictor, out["depth"].numpy())], axis=1)
    if "scores" in out:
        return predictor.draw_top_labels(image, top_classes(predictor, out["scores"]))
    labels = out["sem_seg"].argmax(dim=0).numpy().astype(np.uint8)
    return predictor.draw_sem_seg(image, labels)


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
        drawn = draw_outputs(predictor, image, out, score_threshold)
        if "instances" in out:
            inst = out["instances"]
            inst = inst[inst.scores >= score_threshold]
            results.append({"height": image.shape[0], "width": image.shape[1], "instances": inst})
            logger.info(f"{path}: {len(inst)} instances -> {picture}")
        elif "depth" in out:
            depth = out["depth"].numpy()
            scale = float(predictor.metadata.get("depth_scale", 1000.0))
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
            top = top_classes(predictor, out["scores"])
            classified.append({"file_name": str(path), "top5": top})
            logger.info(f"{path}: {top[0]['class']} {top[0]['score']:.2f} -> {picture}")
        else:
            labels = out["sem_seg"].argmax(dim=0).numpy().astype(np.uint8)
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


def open_video(source: str) -> "cv2.VideoCapture":
    """A ``cv2.VideoCapture`` of a video file, or of camera ``N`` for ``source="webcam:N"``."""
    if source.startswith("webcam:"):
        capture = cv2.VideoCapture(int(source.split(":", 1)[1]))
        what = f"camera {source.split(':', 1)[1]}"
    else:
        if not os.path.isfile(source):
            raise FileNotFoundError(f"Video {source!r} does not exist.")
        capture = cv2.VideoCapture(source)
        what = f"video {source!r}"
    if not capture.isOpened():
        raise ValueError(
            f"OpenCV cannot open {what}: not a video it can decode (opencv reads .mp4, .avi, "
            f".mkv, ... with the codecs its FFmpeg has) or no such camera."
        )
    return capture


def run_video(
    predictor: Predictor,
    source: str,
    output_file: str,
    score_threshold: float = 0.5,
    max_frames: Optional[int] = None,
) -> Dict:
    """
    Predict every frame of a video file (or camera, ``source="webcam:0"``) and write the frames
    with the predictions drawn to ``output_file`` (``.mp4``: mp4v, ``.avi``: MJPG), at the
    source's frame rate, with a progress bar and the frames/s.

    Returns:
        {"frames", "seconds", "fps", "output"}.
    """
    capture = open_video(source)
    rate = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    total = total if total > 0 else None  # cameras and some containers do not say
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)
    fourcc = "MJPG" if output_file.lower().endswith(".avi") else "mp4v"
    writer, frames = None, 0
    start = time.perf_counter()
    try:
        with tqdm.tqdm(total=total, unit="frame", desc=os.path.basename(output_file)) as bar:
            while max_frames is None or frames < max_frames:
                ok, bgr = capture.read()
                if not ok:
                    break
                image = bgr if predictor.image_format == "BGR" else bgr[:, :, ::-1]
                drawn = draw_outputs(predictor, image, predictor.predict(image), score_threshold)
                if writer is None:  # the drawing may be wider than the frame (depth)
                    h, w = drawn.shape[:2]
                    writer = cv2.VideoWriter(
                        output_file, cv2.VideoWriter_fourcc(*fourcc), rate, (w, h)
                    )
                    if not writer.isOpened():
                        raise ValueError(f"OpenCV cannot write {output_file!r} ({fourcc}).")
                writer.write(np.ascontiguousarray(drawn[:, :, ::-1]))
                frames += 1
                bar.update(1)
                bar.set_postfix(fps=f"{frames / (time.perf_counter() - start):.2f}")
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        raise ValueError(f"No frame could be read from {source!r}.")
    seconds = time.perf_counter() - start
    logger.info(f"{frames} frames in {seconds:.1f} s ({frames / seconds:.2f} frames/s) -> "
                f"{output_file}")  # fmt: skip
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds, "output": output_file}
