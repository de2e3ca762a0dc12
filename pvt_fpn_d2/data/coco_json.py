"""
Any COCO-format instance dataset (a json file and an image folder), registered from a config,
including the exports of annotation tools (read as :mod:`pvt_fpn_d2.data.exports` says).

The json is the one source of truth for the classes: :func:`register_coco_json` puts its class
names and id mapping into the dataset's metadata, and :func:`coco_json_num_classes` gives the
number of classes that the config passes to the box, mask and RetinaNet heads.

A json is parsed once per process: the class lookups of the configs, the checks and the
registration share one cached read, and detectron2's ``load_coco_json`` (the dataset dicts) and
the project's ``COCOEvaluator`` (the ground truth) get one pycocotools ``COCO`` object built from
it (:func:`registered_coco_apis`) instead of parsing the file again.
"""

import atexit
import contextlib
import functools
import io
import json
import logging
import os
import shutil
import tempfile
from functools import lru_cache
from typing import Any, Dict, List, Optional, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from ..compat import preloaded_coco_apis
from .validation import DatasetError, check_coco_dataset

__all__ = [
    "register_coco_json",
    "coco_json_num_classes",
    "coco_json_class_names",
    "coco_json_data",
    "is_registered_json",
]

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


def _categories(path: str, drop_empty_categories: bool = False) -> List[Dict[str, Any]]:
    data = _coco_json(path)
    cats = sorted(data["categories"], key=lambda c: c["id"])
    if drop_empty_categories:
        used = {a.get("category_id") for a in data["annotations"]}
        cats = [c for c in cats if c["id"] in used]
    if not cats:
        raise ValueError(f"{path} has no categories: a detector needs at least one class.")
    return cats


def coco_json_class_names(json_file: str, drop_empty_categories: bool = False) -> List[str]:
    """Class names of a COCO json, ordered by category id (= the model's class indices)."""
    return [c["name"] for c in _categories(json_file, drop_empty_categories)]


def coco_json_num_classes(json_file: str, drop_empty_categories: bool = False) -> int:
    """Number of classes of a COCO json: use it for the heads' ``num_classes`` in configs.
    With ``drop_empty_categories``, categories without annotations do not count."""
    return len(_categories(json_file, drop_empty_categories))


_TMP_DIR: Optional[str] = None


# the json files training and evaluation read (absolute paths) -> (modification time, data)
_REGISTERED_JSON: Dict[str, Tuple[float, Dict[str, Any]]] = {}
_SHARED_APIS: Dict[str, Any] = {}  # path -> the COCO object load_coco_json reads


def coco_json_data(path: str) -> Dict[str, Any]:
    """The data of a COCO json: what its registration read (the prepared copy's data where that
    is the registered file) while the file is unchanged, else the file read once by the
    project's cached reader. Never a second parse of a json that training or evaluation read."""
    entry = _REGISTERED_JSON.get(os.path.abspath(path))
    if entry is not None and entry[0] == os.path.getmtime(path):
        return entry[1]
    return _coco_json(path)


def is_registered_json(path: str) -> bool:
    """Whether a dataset registration of this process has read ``path``."""
    return os.path.abspath(path) in _REGISTERED_JSON


class _CocoApis:
    """``COCO`` objects of the registered json files, by absolute path, while the file is
    unchanged: one shared object (``load_coco_json`` only reads it), or with ``own_annotations``
    a new one whose annotation dicts are copies (COCOeval writes into the ground truth:
    ``ignore``, and polygons turned into RLE), so an evaluation changes nothing else."""

    def __init__(self, own_annotations: bool):
        self.own_annotations = own_annotations

    def get(self, path, default=None):
        entry = _REGISTERED_JSON.get(path)
        try:
            fresh = entry is not None and os.path.getmtime(path) == entry[0]
        except OSError:
            fresh = False
        if not fresh:
            return default
        data = entry[1]
        if self.own_annotations:
            return _build_coco_api(dict(data, annotations=[dict(a) for a in data["annotations"]]))
        if path not in _SHARED_APIS:
            _SHARED_APIS[path] = _build_coco_api(data)
        return _SHARED_APIS[path]


def registered_coco_apis(own_annotations: bool = False):
    """A context in which detectron2's ``COCO(path)`` of a registered dataset's json returns a
    ``COCO`` object built from the data already read (:class:`_CocoApis`) instead of parsing the
    file again."""
    return preloaded_coco_apis(_CocoApis(own_annotations))


def _build_coco_api(data: Dict[str, Any]):
    from pycocotools.coco import COCO

    api = COCO()
    api.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
        api.createIndex()
    return api


def _load_coco_json(json_file: str, image_root: str, name: str) -> List[Dict[str, Any]]:
    """detectron2's ``load_coco_json``, reading the data of the registration, not the file."""
    with registered_coco_apis():
        return load_coco_json(json_file, image_root, name)


def _prepared_copy_dir() -> str:
    """A folder for the prepared copies of this process, removed when the process exits."""
    global _TMP_DIR
    if _TMP_DIR is None or not os.path.isdir(_TMP_DIR):
        _TMP_DIR = tempfile.mkdtemp(prefix="pvt_fpn_d2_datasets_")
        owner = os.getpid()
        # forked data-loader workers inherit atexit handlers: only the owner removes it
        atexit.register(lambda d=_TMP_DIR: os.getpid() == owner and shutil.rmtree(d, True))
    return _TMP_DIR


def register_coco_json(
    name: str,
    json_file: str,
    image_root: str,
    check: str = "header",
    *,
    drop_empty_categories: bool = False,
    classes_from: Optional[str] = None,
    crowd_masks: str = "auto",
) -> str:
    """
    Register a COCO-format instance dataset under ``name`` (idempotent) and return the name,
    so a config can write ``names=L(register_coco_json)(name=..., json_file=..., image_root=...)``.

    The json may come from any annotation tool: it is read as
    :func:`pvt_fpn_d2.data.exports.prepare_coco` says (file names resolved, ids fixed, missing
    fields filled, the image entries of one file merged into one image). When that changes
    anything, training and evaluation both read one prepared copy, written to a temporary folder
    that is removed when the process exits; the json itself is never modified. Class names and the category-id mapping come from the json's
    ``categories``; non-contiguous category ids are mapped to contiguous class indices.

    The dataset is checked first (see :func:`pvt_fpn_d2.data.validation.check_coco_dataset`):
    problems that would stop or corrupt training raise :class:`DatasetError` listing all of
    them (every image and annotation is checked), the others are logged once per kind.

    Args:
        check: how the image files are checked: "header" (exists, readable header, size
            matches the json), "full" (decode every image), or "none".
        drop_empty_categories: drop the categories without annotations (in ``classes_from``).
        classes_from: the training json, when registering a validation json: the categories
            dropped are the training json's empty ones.
        crowd_masks: "auto", "objects" or "crowd": what ``iscrowd: 1`` masks are (see
            :func:`~pvt_fpn_d2.data.exports.prepare_coco`).
    """
    if name in DatasetCatalog.list():  # each config node that names it registers it again
        meta = MetadataCatalog.get(name)
        if (meta.get("source_json"), meta.get("image_root")) == (json_file, image_root):
            return name
        raise ValueError(
            f"Dataset name {name!r} is already registered for {meta.get('source_json')} and "
            f"{meta.get('image_root')}; use another name for {json_file}."
        )
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"Dataset {name!r}: image folder {image_root!r} does not exist.")
    data = _coco_json(json_file)
    report = check_coco_dataset(
        json_file,
        image_root,
        images=check,
        data=data,
        drop_empty_categories=drop_empty_categories,
        empty_categories_from=_coco_json(classes_from) if classes_from else None,
        crowd_masks=crowd_masks,
    )
    if report.fatal:
        raise DatasetError(
            f"Dataset {name!r} cannot be used for training:\n{report.summary(limit=20)}\n"
            f"Fix these, then check again with: python -m pvt_fpn_d2.check_dataset "
            f"--json {json_file} --images {image_root}"
        )
    prepared = report.prepared
    # once per dataset: what was handled and how, then the facts (classes, masks, density)
    (logger.warning if report.problems else logger.info)(f"Dataset {name!r}: {report.summary()}")
    source = json_file
    if prepared.changed:
        source = os.path.join(_prepared_copy_dir(), f"{name}.json")
        with open(source, "w") as f:
            json.dump(prepared.data, f)
    path = os.path.abspath(source)
    _REGISTERED_JSON[path] = (os.path.getmtime(path), prepared.data)
    _SHARED_APIS.pop(path, None)
    DatasetCatalog.register(name, functools.partial(_load_coco_json, source, image_root, name))
    cats = prepared.data["categories"]
    MetadataCatalog.get(name).set(
        thing_classes=[c["name"] for c in cats],
        thing_dataset_id_to_contiguous_id={c["id"]: i for i, c in enumerate(cats)},
        image_root=image_root,
        source_json=json_file,
        json_file=source,  # COCOEvaluator reads the ground truth from here
        evaluator_type="coco",
        num_objects_with_mask=prepared.num_with_mask,
        num_objects_without_mask=prepared.num_without_mask,
        max_objects_per_image=prepared.max_instances,
        max_objects_file=prepared.max_instances_file,
    )
    logger.info(
        f"Registered dataset {name!r}: {len(prepared.data['images'])} images, "
        f"{len(prepared.data['annotations'])} annotations, {len(cats)} classes "
        f"{[c['name'] for c in cats]}"
        + (f" (read from a prepared copy: {source})" if prepared.changed else "")
    )
    return name
