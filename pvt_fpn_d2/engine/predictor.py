"""Prediction on image files with a LazyConfig and a checkpoint (used by tools/predict.py)."""

import json
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch
import tqdm
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException
from PIL import Image

from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import convert_image_to_rgb
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.structures import Instances
from detectron2.utils.visualizer import ColorMode, Visualizer

from .checkpoint import PVTCheckpointer, check_writable_folder, write_error
from ..data import coco_json
from ..data.images import IMAGE_EXTENSIONS, read_image
from .trainer import resolve_device

__all__ = [
    "ImageIds",
    "Predictor",
    "dataset_image_ids",
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


def predictions_to_coco(
    results: List[Dict], metadata, image_files: List[str], image_ids: Optional[Sequence] = None
) -> Dict:
    """
    All predictions as a COCO-format dataset (``images``, ``categories``, ``annotations`` with
    a ``score``): pycocotools' ``COCO()`` loads it, and it can serve as pseudo-labels.

    Args:
        results: per image, {"height", "width", "instances": Instances}.
        image_files: per image, its ``file_name``.
        image_ids: per image, its ``id`` (default 1..N), e.g. from :func:`dataset_image_ids`.
    """
    if image_ids is None:
        image_ids = range(1, len(results) + 1)
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
    for image_id, r, file_name in zip(image_ids, results, image_files):
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


# a json this large (COCO's train2017: 450 MB) is read only when an input image lies in its
# image folder: most images predicted with a COCO config are not COCO's
_LARGE_JSON = 64 * 2**20


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # another drive
        return False


class _JsonImage(NamedTuple):
    id: Any  # the id in the user's json
    file_name: str  # the file_name in the user's json
    size: Tuple[Optional[int], Optional[int]]  # (height, width) in the json


class _DatasetImages:
    """The images of a registered COCO-json dataset, by absolute path and by unique basename."""

    def __init__(self, name: str, meta):
        self.name = name
        self.root = os.path.normpath(os.path.abspath(meta.image_root))
        # the user's json; json_file may be a prepared copy (file names resolved, ids fixed)
        self.json_file = meta.get("source_json", None) or meta.json_file
        images = coco_json.coco_json_data(meta.json_file)["images"]
        own = images
        if os.path.abspath(self.json_file) != os.path.abspath(meta.json_file):
            own = coco_json.coco_json_data(self.json_file)["images"]
        own_by_id = {im.get("id"): im for im in own if isinstance(im.get("id"), (int, str))}
        self.by_path: Dict[str, _JsonImage] = {}
        by_name: Dict[str, _JsonImage] = {}
        counts: Counter = Counter()
        for im in images:
            # prepare_coco numbers non-integer ids 1..N, keeping the json's as original_id
            own_id = im.get("original_id", im["id"])
            if not isinstance(own_id, (int, str)):
                own_id = im["id"]
            source = own_by_id.get(own_id, im)
            entry = _JsonImage(
                own_id, str(source.get("file_name")), (im.get("height"), im.get("width"))
            )
            path = os.path.normpath(os.path.join(self.root, str(im.get("file_name"))))
            self.by_path[path] = entry
            base = os.path.basename(path)
            by_name.setdefault(base, entry)
            counts[base] += 1
        self.by_name = {b: e for b, e in by_name.items() if counts[b] == 1}
        # numbers for the other images: above every integer id of the json
        self.next_id = 1 + max((im.get("id") for im in own if type(im.get("id")) is int), default=0)

    @classmethod
    def load(cls, name: str, paths: Sequence[str]) -> Optional["_DatasetImages"]:
        """The dataset's images, or None if it has no json file (or a large one that none of
        ``paths`` is in the image folder of)."""
        meta = MetadataCatalog.get(name)
        json_file, root = meta.get("json_file", None), meta.get("image_root", None)
        if not json_file or not root or not os.path.isfile(json_file):
            return None
        if (
            os.path.getsize(json_file) > _LARGE_JSON
            and not coco_json.is_registered_json(json_file)
            and not any(_inside(p, os.path.abspath(root)) for p in paths)
        ):
            return None
        return cls(name, meta)

    def match(self, paths: Sequence[str], sizes: Sequence[Tuple[int, int]]):
        """({index: json image} found by path under the image folder, {index: json image} found
        elsewhere by a basename that is unique in the json, with the json's size), each json
        image given to one file at most."""
        by_path, by_name, used = {}, {}, set()
        for i, p in enumerate(paths):
            entry = self.by_path.get(p)
            if entry is not None and entry.id not in used:
                by_path[i] = entry
                used.add(entry.id)
        for i, (p, size) in enumerate(zip(paths, sizes)):
            if i in by_path or _inside(p, self.root):
                continue
            entry = self.by_name.get(os.path.basename(p))
            if entry is None or entry.id in used:
                continue
            if None not in entry.size and tuple(entry.size) != tuple(size):
                continue  # another picture of the same name
            by_name[i] = entry
            used.add(entry.id)
        return by_path, by_name


def _dataset_names(cfg, split: str, paths: Sequence[str]) -> List[str]:
    """
    The dataset names of ``dataloader.<split>``, registered as the loaders register them. A
    dataset that the config registers (``L(register_coco_json)(...)``) and that is not registered
    yet is registered (its images checked) only for the test split, or when one of ``paths`` is
    in its ``image_root``: predicting new pictures does not check a large training set.
    """
    node = cfg.dataloader.get(split, None) if cfg is not None and "dataloader" in cfg else None
    if node is None or "dataset" not in node or "names" not in node.dataset:
        return []
    names = node.dataset.names
    if split != "test" and isinstance(names, DictConfig) and "image_root" in names:
        if names.get("name", None) not in DatasetCatalog.list():
            try:
                root = os.path.normpath(os.path.abspath(str(names.image_root)))
            except OmegaConfBaseException:  # not given ("???"): nothing to look in
                return []
            if not any(_inside(p, root) for p in paths):
                return []
    names = instantiate(names)
    return [names] if isinstance(names, str) else list(names)


class ImageIds(NamedTuple):
    """What :func:`dataset_image_ids` found."""

    ids: List[Any]  # per image, the ``id`` of predictions.json
    file_names: List[str]  # per image, the ``file_name`` of predictions.json
    dataset: Optional[str]  # the dataset whose json ids are used, or None
    message: str  # one line saying which


def dataset_image_ids(cfg, files: Sequence[str], sizes: Sequence[Tuple[int, int]]) -> ImageIds:
    """
    The ``id`` and ``file_name`` that ``predictions.json`` gives each image, so that pycocotools'
    ``COCO(json).loadRes(predictions["annotations"])`` scores it against the user's json (as
    detectron2's ``instances_to_coco_json`` writes each prediction with its ``image_id``).

    An image of the config's test dataset (``dataloader.test``), else of its training dataset,
    gets the ``id`` and ``file_name`` of that dataset's json (the user's own json, not a prepared
    copy). An image is found in a dataset by its path under the dataset's image folder, or,
    outside it, by a file name that is unique in the json, with the json's height and width. The
    dataset that holds the most images by path (then by name) is used; its other images, if any,
    are numbered from the json's largest id + 1 on. With no image in a dataset they are numbered
    1..N. The training dataset is looked at only when not every image is in the test dataset's
    folder, and, unless it is registered already, only when an image lies in its image folder
    (registering checks all its images); a json over 64 MB is read only when an image lies in
    its image folder.

    Args:
        cfg: the LazyConfig (None: no dataset).
        files: the image files.
        sizes: (height, width) of each image as read (EXIF orientation applied).
    """
    n = len(files)
    paths = [os.path.normpath(os.path.abspath(str(f))) for f in files]
    consulted, best = [], None
    for split in ("test", "train"):
        if best is not None and len(best[1]) == n:
            break  # every image found by its path: the training json is not read
        try:
            names = _dataset_names(cfg, split, paths)
        except Exception as e:  # e.g. dataset paths left "???"; predicting needs no dataset
            logger.info(f"predictions.json: the dataset of dataloader.{split} is not used: {e}")
            continue
        for name in names:
            dataset = None if name in consulted else _DatasetImages.load(name, paths)
            if dataset is None:
                continue
            consulted.append(name)
            by_path, by_name = dataset.match(paths, sizes)
            if best is None or (len(by_path), len(by_name)) > (len(best[1]), len(best[2])):
                best = (dataset, by_path, by_name)
    if best is None or not (best[1] or best[2]):
        where = (
            " or ".join(repr(c) for c in consulted)
            if consulted
            else "a dataset of the config (none has a json file to look them up in)"
        )
        return ImageIds(
            list(range(1, n + 1)),
            [str(f) for f in files],
            None,
            f"0 of {n} images are in {where}: they are numbered 1..{n}.",
        )
    dataset, by_path, by_name = best
    found = {**by_name, **by_path}
    ids, file_names, number = [], [], dataset.next_id
    for i, f in enumerate(files):
        if i in found:
            ids.append(found[i].id)
            file_names.append(found[i].file_name)
        else:
            ids.append(number)
            file_names.append(str(f))
            number += 1
    message = (
        f"{len(found)} of {n} images are in {dataset.name!r} ({dataset.json_file}"
        + (f"; {len(by_name)} by file name outside {dataset.root}" if by_name else "")
        + "): their json ids are used"
    )
    if len(found) < n:
        message += (
            f"; the others are numbered from {dataset.next_id} on (after the json's largest "
            "image id)"
        )
    return ImageIds(ids, file_names, dataset.name, message + ".")


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
    instances above ``score_threshold``; images of the config's datasets keep their json's
    ``id`` and ``file_name``, see :func:`dataset_image_ids`), which is returned. Semantic
    segmentation models write ``<output_dir>/<image stem>.png`` (uint8 class-index label maps,
    detectron2's ``sem_seg_file_name`` format) and ``<output_dir>/sem_seg_predictions.json``
    (per image: the label file and the share of pixels of each class), which is returned. Classifiers write
    ``<output_dir>/classification_predictions.json`` (per image: the top-5 classes and their
    scores), which is returned, with the top classes written on each picture. Depth models
    write each image beside its coloured depth, ``<image stem>_depth.png`` (16-bit, depth x the
    dataset's ``depth_scale``) and ``depth_predictions.json``, which is returned.

    A file that cannot be written (disk full, read-only folder) stops with
    :class:`~pvt_fpn_d2.engine.checkpoint.OutputWriteError`, which names it; an output folder
    that cannot be written into stops before the first image.
    """
    files = find_images(inputs)[:max_images]
    again = "run the prediction again"
    # a read-only or unusable output folder stops here, before any image is predicted
    check_writable_folder(output_dir, "the predictions into", then=again)

    def write(what: str, file: str, writer: Callable[[], Any], done: int) -> None:
        try:
            if writer() is False:  # cv2.imwrite says no more than that
                raise OSError("OpenCV's imwrite failed")
        except OSError as e:
            state = f"The outputs of {done} of the {len(files)} images were written before it."
            raise write_error(what, file, e, state, then=again) from e

    results, names, sem_seg, classified, depths = [], [], [], [], []
    for done, path in enumerate(files):
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
            depth_png = np.clip(np.round(depth * scale), 0, 65535).astype(np.uint16)
            write("depth map", depth_file, lambda: cv2.imwrite(depth_file, depth_png), done)
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
            write("label map", label_file, lambda: Image.fromarray(labels).save(label_file), done)
            classes = predictor.metadata.get("stuff_classes", None)
            values, counts = np.unique(labels, return_counts=True)
            share = {
                (classes[v] if classes and v < len(classes) else str(v)): round(c / labels.size, 4)
                for v, c in zip(values.tolist(), counts.tolist())
            }
            sem_seg.append({"file_name": str(path), "label_file": label_file, "classes": share})
            logger.info(f"{path}: {share} -> {picture}, {label_file}")
        write("picture", picture, lambda: Image.fromarray(drawn).save(picture, quality=92), done)
    if depths:
        name, payload = "depth_predictions.json", depths
    elif classified:
        name, payload = "classification_predictions.json", classified
    elif sem_seg:
        name, payload = "sem_seg_predictions.json", sem_seg
    else:
        name = "predictions.json"
        sizes = [(r["height"], r["width"]) for r in results]
        found = dataset_image_ids(getattr(predictor, "cfg", None), files, sizes)
        logger.info(found.message)
        payload = predictions_to_coco(results, predictor.metadata, found.file_names, found.ids)
    json_file = os.path.join(output_dir, name)

    def dump() -> None:
        with open(json_file, "w") as f:
            json.dump(payload, f)

    write("predictions file", json_file, dump, len(files))
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
    folder = os.path.dirname(os.path.abspath(output_file))
    check_writable_folder(folder, "the video into", then="run the prediction again")
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
