"""
Image classification datasets in the ImageNet folder layout (``root/<class>/<image>``),
registered from a config for training and for :class:`~pvt_fpn_d2.evaluation.
ClassificationEvaluator`. Each dataset dict is ``{"file_name", "image_id", "label"}``; the
project's ``DatasetMapper`` reads the image and passes ``label`` through.
"""

import logging
import os
from typing import Any, Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog

from .images import IMAGE_EXTENSIONS

__all__ = ["register_image_folder", "load_image_folder"]

logger = logging.getLogger(__name__)


def load_image_folder(root: str, classes: Sequence[str]) -> List[Dict[str, Any]]:
    """The dataset dicts of ``root/<class>/<image>`` for the given classes (label = index)."""
    dicts = []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        for f in sorted(os.listdir(folder)):
            if f.lower().endswith(IMAGE_EXTENSIONS):
                dicts.append(
                    {"file_name": os.path.join(folder, f), "image_id": len(dicts), "label": label}
                )
    return dicts


def register_image_folder(name: str, root: str, classes: Optional[Sequence[str]] = None) -> str:
    """
    Register ``root/<class>/<image>`` (one folder per class, ImageNet's layout) under ``name``
    and return the name, so a config can write ``names=L(register_image_folder)(...)``.

    Args:
        classes: the class names in label order; None: the sub-folders of ``root``, sorted.
            A validation set should pass the training set's classes, so labels agree.

    Raises:
        FileNotFoundError: ``root`` or a class folder does not exist, or a class folder holds
            no image.
        ValueError: no classes, or the name is registered with other arguments.
    """
    root = str(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Dataset {name!r}: folder {root!r} does not exist.")
    if classes is None:
        classes = sorted(e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e)))
    classes = [str(c) for c in classes]
    if not classes:
        raise ValueError(
            f"Dataset {name!r}: no classes: {root!r} needs one sub-folder of images per class."
        )
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if (meta.get("image_root"), meta.get("classes")) == (root, classes):
            return name
        raise ValueError(
            f"Dataset name {name!r} is already registered for {meta.get('image_root')} with "
            f"classes {meta.get('classes')}; use another name."
        )
    extra = sorted(
        e
        for e in os.listdir(root)
        if os.path.isdir(os.path.join(root, e)) and e not in classes and not e.startswith(".")
    )
    if extra:
        raise ValueError(
            f"Dataset {name!r}: folder(s) {extra} in {root!r} are not among the classes "
            f"{classes}: their images would have labels outside the class list. Add them to "
            "the classes (and to the training set) or move them out."
        )
    counts = {}
    for c in classes:
        folder = os.path.join(root, c)
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"Dataset {name!r}: class {c!r} has no folder {folder!r}. The classes are the "
                f"sub-folders of {root!r} (or the classes given, e.g. the training set's)."
            )
        counts[c] = sum(f.lower().endswith(IMAGE_EXTENSIONS) for f in os.listdir(folder))
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise FileNotFoundError(
            f"Dataset {name!r}: class folder(s) with no image ({', '.join(IMAGE_EXTENSIONS)}): "
            f"{[os.path.join(root, c) for c in empty]}. Add images or leave the class out."
        )
    if name in MetadataCatalog.list():  # metadata left behind by a removed dataset
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: load_image_folder(root, classes))
    MetadataCatalog.get(name).set(
        classes=classes, thing_classes=classes, image_root=root, evaluator_type="classification"
    )
    logger.info(
        f"Registered dataset {name!r}: {sum(counts.values())} images in {root!r}, "
        f"{len(classes)} classes {counts}"
    )
    return name
