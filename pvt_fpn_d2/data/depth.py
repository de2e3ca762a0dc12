"""
Monocular depth datasets: a folder of RGB images and a folder of 16-bit depth PNGs with the same
names, in the NYU Depth v2 layout (depth in millimetres: ``depth_scale=1000``) or the KITTI one
(sparse, ``depth_scale=256``, 0 where there is no measurement). 0 is "no depth" in both.

:func:`register_depth_folder` registers one for training and for
:class:`~pvt_fpn_d2.evaluation.DepthEvaluator`; :class:`DepthDatasetMapper` reads an image (with
the one image reader) and its depth map (:func:`read_depth`, in metres) and applies the
augmentations to both (nearest-neighbour resizing keeps sparse depth sparse).
"""

import copy
import logging
import os
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T

from .images import BadImageError, read_image

__all__ = ["read_depth", "register_depth_folder", "load_depth_folder", "DepthDatasetMapper"]

logger = logging.getLogger(__name__)


def read_depth(file_name: str, depth_scale: float) -> np.ndarray:
    """
    A 16-bit depth PNG as float32 metres (``value / depth_scale``; 0 stays 0, "no depth").

    Raises:
        BadImageError: the file cannot be read or is not a single-channel 16-bit image.
    """
    try:
        with Image.open(file_name) as im:
            mode = im.mode
            arr = np.array(im)
    except FileNotFoundError:
        raise BadImageError(f"{file_name}: depth file not found.") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImageError(f"{file_name}: cannot read the depth map ({e}).") from None
    if arr.ndim != 2 or arr.dtype not in (np.uint16, np.int32):
        raise BadImageError(
            f"{file_name}: a depth map must be a single-channel 16-bit PNG (depth x "
            f"depth_scale), got PIL mode {mode!r} ({arr.dtype}, shape {arr.shape}). An 8-bit "
            "PNG cannot hold depth at millimetre precision: write it with 16 bits."
        )
    return arr.astype(np.float32) / float(depth_scale)


def _stems(folder: str, ext: str) -> Dict[str, str]:
    return {
        os.path.splitext(f)[0]: f for f in sorted(os.listdir(folder)) if f.lower().endswith(ext)
    }


def load_depth_folder(image_root: str, depth_root: str, image_ext: str) -> List[Dict[str, Any]]:
    """Dataset dicts ``{"file_name", "depth_file_name", "image_id"}`` of matching names."""
    images, depths = _stems(image_root, image_ext), _stems(depth_root, ".png")
    return [
        {
            "file_name": os.path.join(image_root, images[s]),
            "depth_file_name": os.path.join(depth_root, depths[s]),
            "image_id": i,
        }
        for i, s in enumerate(sorted(images))
    ]


def register_depth_folder(
    name: str,
    image_root: str,
    depth_root: str,
    depth_scale: float = 1000.0,
    max_depth: float = 10.0,
    image_ext: str = ".jpg",
) -> str:
    """
    Register ``image_root/x.jpg`` <-> ``depth_root/x.png`` (16-bit, depth x ``depth_scale``)
    under ``name`` and return the name, for ``names=L(register_depth_folder)(...)``.

    Args:
        depth_scale: PNG value per metre: 1000 (NYU Depth v2, millimetres), 256 (KITTI).
        max_depth: the evaluated range's upper end, in metres (metadata for the evaluator).

    Raises:
        FileNotFoundError: a folder is missing or holds no image; ValueError: images without a
        depth file, a bad scale, or the name registered with other arguments; BadImageError:
        the first depth file is not 16-bit or its size differs from its image.
    """
    if depth_scale <= 0 or max_depth <= 0:
        raise ValueError(
            f"Dataset {name!r}: depth_scale and max_depth must be > 0, got {depth_scale} and "
            f"{max_depth}."
        )
    image_root, depth_root = str(image_root), str(depth_root)
    if not image_ext.startswith("."):
        image_ext = "." + image_ext
    metadata = dict(
        image_root=image_root,
        depth_root=depth_root,
        depth_scale=float(depth_scale),
        max_depth=float(max_depth),
        evaluator_type="depth",
    )
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if {k: meta.get(k) for k in metadata} == metadata:
            return name
        raise ValueError(f"Dataset name {name!r} is already registered with other arguments.")
    for kind, folder in (("image", image_root), ("depth", depth_root)):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Dataset {name!r}: {kind} folder {folder!r} does not exist.")
    images, depths = _stems(image_root, image_ext), _stems(depth_root, ".png")
    if not images:
        raise FileNotFoundError(f"Dataset {name!r}: no *{image_ext} images in {image_root!r}.")
    missing = sorted(set(images) - set(depths))
    if missing:
        raise ValueError(
            f"Dataset {name!r}: {len(missing)} of {len(images)} images have no depth PNG of the "
            f"same name in {depth_root!r}, e.g. {[images[s] for s in missing[:5]]}."
        )
    first = sorted(images)[0]
    depth = read_depth(os.path.join(depth_root, depths[first]), depth_scale)
    h, w = read_image(os.path.join(image_root, images[first])).shape[:2]
    if depth.shape != (h, w):
        raise BadImageError(
            f"Dataset {name!r}: depth map {os.path.join(depth_root, depths[first])} is "
            f"{depth.shape[0]}x{depth.shape[1]} but its image is {h}x{w}; they must match."
        )
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: load_depth_folder(image_root, depth_root, image_ext))
    MetadataCatalog.get(name).set(**metadata)
    logger.info(
        f"Registered dataset {name!r}: {len(images)} images in {image_root!r}, depth in "
        f"{depth_root!r} (1 m = {depth_scale:g}), evaluated up to {max_depth:g} m"
    )
    return name


class DepthDatasetMapper:
    """
    Reads an image and its depth map and applies the augmentations to both. Returns the
    dataset dict with ``"image"`` (C, H, W) uint8 and ``"depth"`` (H, W) float32 metres (0: no
    depth), ``"height"`` and ``"width"`` of the original image.
    """

    def __init__(
        self,
        is_train: bool,
        augmentations: Sequence[Any],
        image_format: str = "RGB",
        depth_scale: float = 1000.0,
    ):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(list(augmentations))
        self.image_format = image_format
        self.depth_scale = float(depth_scale)

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        d = copy.deepcopy(dataset_dict)
        image = read_image(d["file_name"], format=self.image_format)
        depth = read_depth(d["depth_file_name"], self.depth_scale)
        if depth.shape != image.shape[:2]:
            raise BadImageError(
                f"{d['depth_file_name']}: the depth map is {depth.shape[0]}x{depth.shape[1]} but "
                f"the image {d['file_name']} is {image.shape[0]}x{image.shape[1]}."
            )
        d.setdefault("height", image.shape[0])
        d.setdefault("width", image.shape[1])
        aug = T.AugInput(image, sem_seg=depth)  # sem_seg: resized nearest-neighbour
        self.augmentations(aug)
        d["image"] = torch.as_tensor(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))
        d["depth"] = torch.as_tensor(np.ascontiguousarray(aug.sem_seg), dtype=torch.float32)
        return d
