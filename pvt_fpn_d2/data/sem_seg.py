"""
Semantic segmentation datasets: a folder of images and a folder of label PNGs (detectron2's
``sem_seg_file_name`` format), registered from a config for training and for detectron2's
``SemSegEvaluator``.
"""

import functools
import logging
import os
from typing import List, Sequence

import numpy as np
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg

from .images import BadImageError, read_label_map

__all__ = ["register_sem_seg_folder"]

logger = logging.getLogger(__name__)


def _strip_dot(ext: str) -> str:
    return ext[1:] if ext.startswith(".") else ext


def _stems(folder: str, ext: str) -> List[str]:
    suffix = "." + ext
    return sorted(f[: -len(suffix)] for f in os.listdir(folder) if f.endswith(suffix))


def _check_label_file(name: str, path: str, num_classes: int, ignore_label: int) -> None:
    """Check one label PNG: class indices (grey or palette, what the project's DatasetMapper and
    detectron2's SemSegEvaluator read alike) within ``[0, num_classes)`` or ``ignore_label``."""
    with Image.open(path) as im:
        mode = im.mode
    try:
        values = np.unique(read_label_map(path))
    except BadImageError as e:
        raise ValueError(
            f"Dataset {name!r}: label file {path!r} has PIL mode {mode!r}: {e}"
        ) from None
    bad = [int(v) for v in values if v >= num_classes and v != ignore_label]
    if bad:
        raise ValueError(
            f"Dataset {name!r}: label file {path!r} has values {bad}, outside the "
            f"{num_classes} classes (0..{num_classes - 1}) and ignore_label={ignore_label}."
        )


def register_sem_seg_folder(
    name: str,
    image_root: str,
    label_root: str,
    classes: Sequence[str],
    ignore_label: int = 255,
    image_ext: str = "jpg",
    label_ext: str = "png",
) -> str:
    """
    Register a semantic segmentation dataset stored as a folder of images and a folder of label
    PNGs with the same file names (``image_root/x.jpg`` <-> ``label_root/x.png``), and return its
    name, so a config can write ``names=L(register_sem_seg_folder)(name=..., ...)``.

    A label PNG holds one class index per pixel, into ``classes`` (0 is usually the background)
    or ``ignore_label``: a grey (8 or 16-bit) or palette PNG, detectron2's ``sem_seg_file_name``
    format, read alike by the project's ``DatasetMapper`` and detectron2's ``SemSegEvaluator``. The files
    are listed with detectron2's ``load_sem_seg``, and the metadata (``stuff_classes``,
    ``ignore_label``, ``evaluator_type="sem_seg"``, ``image_root``, ``sem_seg_root``) is what
    detectron2's ``SemSegEvaluator`` and ``Visualizer`` read.

    Registering the same name again with the same arguments does nothing; with other arguments
    it is an error.

    Args:
        name: dataset name, e.g. ``"my_sem_seg_train"``.
        image_root: folder of the images.
        label_root: folder of the label PNGs.
        classes: class names, index k = label value k.
        ignore_label: label value of pixels that are not evaluated nor trained on.
        image_ext, label_ext: file extensions (with or without the dot).

    Returns:
        str: ``name``.

    Raises:
        FileNotFoundError: a folder does not exist, or holds no image / no label file.
        ValueError: images without a label file, a label PNG of colours (not indices) or with
            values outside the classes (the first label file is checked), no classes, or the
            name already registered with other arguments.
    """
    classes = [str(c) for c in classes]
    if not classes:
        raise ValueError(f"Dataset {name!r}: classes is empty; give the class names.")
    image_ext, label_ext = _strip_dot(image_ext), _strip_dot(label_ext)
    image_root, label_root = str(image_root), str(label_root)
    metadata = dict(
        stuff_classes=classes,
        ignore_label=int(ignore_label),
        evaluator_type="sem_seg",
        image_root=image_root,
        sem_seg_root=label_root,
        image_ext=image_ext,
        sem_seg_ext=label_ext,
    )
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        registered = {k: meta.get(k) for k in metadata}
        if registered == metadata:
            return name
        diff = {k: (registered[k], v) for k, v in metadata.items() if registered[k] != v}
        raise ValueError(
            f"Dataset name {name!r} is already registered with other arguments "
            f"(registered, requested): {diff}. Use another name."
        )

    for kind, folder in (("image", image_root), ("label", label_root)):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Dataset {name!r}: {kind} folder {folder!r} does not exist.")
    images = _stems(image_root, image_ext)
    if not images:
        raise FileNotFoundError(f"Dataset {name!r}: no *.{image_ext} images in {image_root!r}.")
    labels = _stems(label_root, label_ext)
    if not labels:
        raise FileNotFoundError(
            f"Dataset {name!r}: no *.{label_ext} label files in {label_root!r}."
        )
    unlabelled = sorted(set(images) - set(labels))
    if unlabelled:
        examples = ", ".join(f"{s}.{image_ext}" for s in unlabelled[:5])
        raise ValueError(
            f"Dataset {name!r}: {len(unlabelled)} of {len(images)} images in {image_root!r} have "
            f"no label file in {label_root!r} (expected the same name with .{label_ext}), e.g. "
            f"{examples}."
        )
    unused = len(set(labels) - set(images))
    if unused:
        logger.warning(f"Dataset {name!r}: {unused} label files in {label_root!r} have no image.")
    _check_label_file(
        name, os.path.join(label_root, f"{images[0]}.{label_ext}"), len(classes), ignore_label
    )

    if name in MetadataCatalog.list():  # metadata left behind by a removed dataset
        MetadataCatalog.remove(name)
    DatasetCatalog.register(
        name,
        functools.partial(
            load_sem_seg, label_root, image_root, gt_ext=label_ext, image_ext=image_ext
        ),
    )
    MetadataCatalog.get(name).set(**metadata)
    logger.info(
        f"Registered dataset {name!r}: {len(images)} images in {image_root!r}, labels in "
        f"{label_root!r}, {len(classes)} classes {classes}"
    )
    return name
