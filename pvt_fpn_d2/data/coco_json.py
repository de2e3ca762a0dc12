"""
Any COCO-format instance dataset (a json file and an image folder), registered from a config.

The json is the one source of truth for the classes: :func:`register_coco_json` puts its class
names and id mapping into the dataset's metadata, and :func:`coco_json_num_classes` gives the
number of classes that the config passes to the box, mask and RetinaNet heads.
"""

import json
import logging
import os
from functools import lru_cache
from typing import Any, Dict, List, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .validation import DatasetError, check_coco_dataset

__all__ = ["register_coco_json", "coco_json_num_classes", "coco_json_class_names"]

logger = logging.getLogger(__name__)


@lru_cache(maxsize=16)
def _read_json(path: str, mtime: float) -> Dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}). Is it a COCO annotation file?") from None
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if not isinstance(data, dict) or missing:
        raise ValueError(
            f"{path} is not a COCO instance annotation file: missing key(s) {missing}. "
            "It needs 'images', 'annotations' and 'categories'."
        )
    return data


def _coco_json(path: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"COCO annotation file {path!r} does not exist.")
    return _read_json(os.path.abspath(path), os.path.getmtime(path))


def _categories(path: str) -> List[Dict[str, Any]]:
    cats = sorted(_coco_json(path)["categories"], key=lambda c: c["id"])
    if not cats:
        raise ValueError(f"{path} has no categories: a detector needs at least one class.")
    return cats


def coco_json_class_names(json_file: str) -> List[str]:
    """Class names of a COCO json, ordered by category id (= the model's class indices)."""
    return [c["name"] for c in _categories(json_file)]


def coco_json_num_classes(json_file: str) -> int:
    """Number of classes of a COCO json: use it for the heads' ``num_classes`` in configs."""
    return len(_categories(json_file))


def _safe_for_cocoeval(data: Dict[str, Any]) -> Tuple[bool, str]:
    ids = [a.get("id") for a in data["annotations"]]
    if 0 in ids:
        # pycocotools marks "unmatched" with 0, so an annotation id 0 is never matched
        return False, "it has an annotation with id 0"
    if len(set(ids)) != len(ids):
        return False, "annotation ids are not unique"
    return True, ""


def register_coco_json(name: str, json_file: str, image_root: str, check: str = "header") -> str:
    """
    Register a COCO-format instance dataset under ``name`` (idempotent) and return the name,
    so a config can write ``names=L(register_coco_json)(name=..., json_file=..., image_root=...)``.

    Class names and the category-id mapping come from the json's ``categories``;
    non-contiguous category ids are mapped to contiguous class indices, and image id 0 works.

    The dataset is checked first (see :func:`pvt_fpn_d2.data.validation.check_coco_dataset`):
    problems that would stop or corrupt training raise :class:`DatasetError` listing them,
    the others are logged.

    Args:
        check: how the image files are checked: "header" (exists, readable header, size
            matches the json), "full" (decode every image), or "none".
    """
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"Dataset {name!r}: image folder {image_root!r} does not exist.")
    data = _coco_json(json_file)
    cats = _categories(json_file)
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if (meta.get("source_json"), meta.get("image_root")) == (json_file, image_root):
            return name
        raise ValueError(
            f"Dataset name {name!r} is already registered for {meta.get('source_json')} and "
            f"{meta.get('image_root')}; use another name for {json_file}."
        )
    report = check_coco_dataset(json_file, image_root, images=check, data=data)
    if report.fatal:
        raise DatasetError(
            f"Dataset {name!r} cannot be used for training:\n{report.summary(limit=20)}\n"
            f"Fix these, then check again with: python -m pvt_fpn_d2.check_dataset "
            f"--json {json_file} --images {image_root}"
        )
    if report.problems:
        logger.warning(f"Dataset {name!r}, handled while loading:\n{report.summary(limit=10)}")
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    meta = dict(
        thing_classes=[c["name"] for c in cats],
        thing_dataset_id_to_contiguous_id={c["id"]: i for i, c in enumerate(cats)},
        image_root=image_root,
        source_json=json_file,
        evaluator_type="coco",
    )
    safe, why = _safe_for_cocoeval(data)
    if safe:
        meta["json_file"] = json_file  # COCOEvaluator reads the ground truth from here
    else:
        logger.warning(
            f"Dataset {name!r}: {why}, which COCO evaluation cannot use as is; the evaluator "
            "will use a converted copy with fresh annotation ids."
        )
    MetadataCatalog.get(name).set(**meta)
    logger.info(
        f"Registered dataset {name!r}: {len(data['images'])} images, "
        f"{len(data['annotations'])} annotations, {len(cats)} classes {meta['thing_classes']}"
    )
    return name
