"""
What annotation tools write into their COCO exports, and how it is read: the one place that
turns any tool's COCO json into the dataset that training and evaluation both use.

:func:`prepare_coco` takes the parsed json and returns a normalised copy (the input is never
modified) together with what it changed, once per dataset, and the dataset's statistics. Per tool
(see docs/CUSTOM_DATASETS.md, "Annotation tools"):

* **Roboflow**: image and annotation ids from 0 (annotation id 0 is pycocotools' "unmatched"
  marker, so annotations are re-numbered), category 0 is a placeholder named after the project
  with no annotations (named; ``drop_empty_categories=True`` drops it), float boxes past the
  image edge (clipped by detectron2's transforms).
* **CVAT** ("COCO 1.0", datumaro): masks drawn with the brush are written as uncompressed RLE
  with ``iscrowd: 1`` (datumaro's "guess" mode), which detectron2 skips in training and COCO
  evaluation ignores: with ``crowd_masks="auto"`` they are read as objects in a CVAT export
  (detected by the ``attributes: {"occluded": ...}`` CVAT writes on every annotation);
  ``file_name`` is relative to the subset folder (found under ``images/`` too, as the only file
  of its name); boxes have ``segmentation: []``.
* **Label Studio**: ``file_name`` like ``images/abc.jpg``, ``/data/upload/1/abc.jpg``,
  ``/data/local-files/?d=folder/abc.jpg`` or ``..\\..\\media\\upload\\4\\abc.jpg``: resolved
  under the image folder by the shortest path suffix that exists; ``width``/``height`` may be
  null (read from the file); ``ignore`` fields; ids from 0; one image entry per annotator, so
  one file may be listed by several entries (merged into one image when their sizes agree).
* **labelme -> COCO**: ids from 0 or 1, float areas, a ``_background_`` category without
  annotations, ``file_name`` with a folder prefix or an absolute path.
* Any COCO: missing ``area`` (computed from the mask, else the box), missing ``iscrowd`` (0),
  missing ``bbox`` (from the mask), image ids that are strings (mapped to integers, the original
  kept as ``original_id``), ``segmentation`` that is ``[]``, ``None`` or has no valid polygon
  (the annotation stays as a box without a mask), file extensions in another case, keypoint
  annotations (``keypoints``/``num_keypoints``: counted, trained as boxes; the keypoints
  themselves are not trained), one file listed by several image entries (merged when their
  sizes agree: one image with the annotations of all the entries; else left for the check to
  refuse).
"""

import logging
import os
import re
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import pycocotools.mask as mask_util

from .images import BadImageError, image_size

__all__ = [
    "PreparedCoco",
    "prepare_coco",
    "has_mask",
    "has_keypoints",
    "box_polygon",
    "detect_tool",
    "CROWD_MASKS",
]

logger = logging.getLogger(__name__)

CROWD_MASKS = ("auto", "objects", "crowd")


@dataclass
class PreparedCoco:
    """A COCO dataset as training and evaluation read it."""

    data: Dict[str, Any]  # the normalised COCO dict
    changed: bool = False  # whether ``data`` differs from the json as written
    tool: str = ""  # the annotation tool the export looks like, if recognised
    # (kind, count, message): what was changed or needs attention, once per dataset
    notes: List[Tuple[str, int, str]] = field(default_factory=list)
    empty_categories: List[Dict[str, Any]] = field(default_factory=list)  # no annotation
    dropped_categories: List[Dict[str, Any]] = field(default_factory=list)
    num_with_mask: int = 0  # non-crowd annotations with a mask
    num_without_mask: int = 0  # non-crowd annotations with a box only
    max_instances: int = 0  # most non-crowd annotations in one image
    max_instances_file: str = ""
    # the json's own id of each annotation of ``data["annotations"]`` (they may be re-numbered)
    source_ids: List[Any] = field(default_factory=list)
    # what was done to single annotations, by kind ("bad polygons", "short polygons"): the
    # json's own ids of those annotations, so that the check names each
    flagged: Dict[str, List[Any]] = field(default_factory=dict)
    # category id -> number of annotations with keypoints (trained as boxes)
    keypoint_annotations: Dict[Any, int] = field(default_factory=dict)
    # files listed by more than one image entry: (file_name, [(json image id, height, width)],
    # merged); not merged when the sizes disagree or an image id is used twice
    repeated_files: List[Tuple[str, List[Tuple[Any, Any, Any]], bool]] = field(default_factory=list)

    def note(self, kind: str, count: int, message: str) -> None:
        if count:
            self.notes.append((kind, count, message))


def detect_tool(data: Dict[str, Any]) -> str:
    """The annotation tool that wrote a COCO json, from the marks each leaves ("" if none)."""
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    text = " ".join(str(v) for v in info.values()).lower()
    if "roboflow" in text:
        return "Roboflow"
    if "label studio" in text:
        return "Label Studio"
    anns = data.get("annotations") or []
    if any(
        isinstance(a.get("attributes"), dict) and "occluded" in a["attributes"] for a in anns[:50]
    ):
        return "CVAT"
    cats = data.get("categories") or []
    if any(c.get("name") in ("_background_", "__ignore__") for c in cats):
        return "labelme"
    return ""


def has_keypoints(ann: Dict[str, Any]) -> bool:
    """Whether an annotation has keypoints (``keypoints`` or ``num_keypoints``)."""
    kps, num = ann.get("keypoints"), ann.get("num_keypoints")
    return (isinstance(kps, list) and len(kps) > 0) or (isinstance(num, int) and num > 0)


def box_polygon(bbox) -> List[List[float]]:
    """The polygon of an XYWH box: the mask that stands in for an object drawn as a box."""
    x, y, w, h = bbox
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _valid_polygons(segm) -> list:
    return [p for p in segm if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]


def has_mask(ann: Dict[str, Any]) -> bool:
    """Whether a (normalised) annotation has a mask: polygons or an RLE."""
    segm = ann.get("segmentation")
    return bool(segm) and (isinstance(segm, dict) or bool(_valid_polygons(segm)))


def _rle(segm, h: int, w: int):
    if isinstance(segm, dict):
        if isinstance(segm.get("counts"), list):
            return mask_util.frPyObjects(segm, *segm["size"])
        return segm
    return mask_util.merge(mask_util.frPyObjects(_valid_polygons(segm), h, w))


def _path_suffixes(file_name: str) -> List[str]:
    """Candidate paths for a file_name written by a tool, longest first."""
    s = str(file_name).replace("\\", "/")
    if "?d=" in s:  # Label Studio local storage: /data/local-files/?d=folder/img.jpg
        s = s.split("?d=", 1)[1]
    s = urllib.parse.unquote(re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*", "", s))
    parts = [p for p in s.split("/") if p not in ("", ".", "..")]
    return ["/".join(parts[i:]) for i in range(len(parts))]


class _FileResolver:
    """Finds a file_name under the image folder: as written, by a path ending, in any letter
    case, or as the only file of its name in a subfolder."""

    def __init__(self, image_root: str):
        self.root = image_root
        self._listing: Dict[str, Dict[str, str]] = {}
        self._names: Optional[Dict[str, List[str]]] = None  # file name -> paths, built once

    def _casefold_match(self, rel: str) -> Optional[str]:
        folder, name = os.path.split(rel)
        if folder not in self._listing:
            try:
                entries = os.listdir(os.path.join(self.root, folder))
            except OSError:
                entries = []
            self._listing[folder] = {e.lower(): e for e in entries}
        found = self._listing[folder].get(name.lower())
        return os.path.join(folder, found) if found else None

    def __call__(self, file_name: str) -> Optional[str]:
        """The file_name to use (relative to the image folder), or None if not found."""
        if os.path.isfile(os.path.join(self.root, file_name)):
            return file_name
        candidates = _path_suffixes(file_name)
        for rel in candidates:
            if os.path.isfile(os.path.join(self.root, rel)):
                return rel
        for rel in candidates:
            match = self._casefold_match(rel)
            if match:
                return match
        return self._by_name(candidates[-1]) if candidates else None

    def _by_name(self, name: str) -> Optional[str]:
        """The one file of that name anywhere under the folder (e.g. CVAT's images/<subset>/)."""
        if self._names is None:
            self._names = {}
            for folder, _, files in os.walk(self.root):
                for f in files:
                    rel = os.path.relpath(os.path.join(folder, f), self.root)
                    self._names.setdefault(f.lower(), []).append(rel)
        found = self._names.get(name.lower(), [])
        return found[0] if len(found) == 1 else None


def _category_order(cat: Dict[str, Any]):
    """Categories by id; ids that are not integers (refused by the check) last."""
    cid = cat.get("id")
    return (0, cid, "") if isinstance(cid, int) else (1, 0, str(cid))


def _merge_repeated_files(
    images: List[Dict[str, Any]], image_root: str, out: PreparedCoco
) -> Tuple[List[Dict[str, Any]], Dict[Any, Any]]:
    """
    One image per file: the entries that list the same file (Label Studio writes one per
    annotator) are merged into the first when their sizes agree and their ids are unique.
    Records every repeated file in ``out.repeated_files``.

    Returns:
        The images, and the merged-away image ids -> the id of the image they were merged into.
    """
    groups: Dict[str, List[int]] = {}
    for k, im in enumerate(images):
        if isinstance(im.get("file_name"), str):
            key = os.path.normpath(os.path.join(image_root, im["file_name"]))
            groups.setdefault(key, []).append(k)
    id_counts = Counter(im.get("id") for im in images)
    drop, merged_into = set(), {}
    for members in groups.values():
        if len(members) < 2:
            continue
        entries = [images[k] for k in members]
        sizes = {
            (im.get("height"), im.get("width"))
            for im in entries
            if isinstance(im.get("height"), int) and isinstance(im.get("width"), int)
        }
        # an id used by two entries is ambiguous (the check refuses it): nothing is re-pointed
        merge = len(sizes) <= 1 and all(id_counts[im.get("id")] == 1 for im in entries)
        listed = [
            (im.get("original_id", im.get("id")), im.get("height"), im.get("width"))
            for im in entries
        ]
        out.repeated_files.append((entries[0]["file_name"], listed, merge))
        if merge:
            for im in entries[1:]:
                merged_into[im.get("id")] = entries[0].get("id")
            drop.update(members[1:])
    return [im for k, im in enumerate(images) if k not in drop], merged_into


def _image_size(path: str) -> Optional[Tuple[int, int]]:
    try:
        return image_size(path)
    except BadImageError:
        return None


def prepare_coco(
    data: Dict[str, Any],
    image_root: str,
    *,
    drop_empty_categories: bool = False,
    empty_categories_from: Optional[Dict[str, Any]] = None,
    crowd_masks: str = "auto",
    resolve_files: bool = True,
) -> PreparedCoco:
    """
    Normalise a COCO json as written by an annotation tool (see the module docstring).

    Args:
        data: the parsed json (not modified; the result shares its unchanged dicts).
        image_root: the folder the images are in.
        drop_empty_categories: drop the categories that have no annotation (in
            ``empty_categories_from``, default ``data``), and any annotation of them.
        empty_categories_from: the training json, when ``data`` is a validation json: the
            categories dropped are the training json's empty ones, so both keep the same classes.
        crowd_masks: what ``iscrowd: 1`` means: "auto" (objects in a CVAT export, crowd regions
            elsewhere), "objects" (train and evaluate as objects) or "crowd" (as written).
        resolve_files: look the image files up (resolve ``file_name``, read missing sizes).
    """
    if crowd_masks not in CROWD_MASKS:
        raise ValueError(f"crowd_masks must be one of {CROWD_MASKS}, got {crowd_masks!r}.")
    out = PreparedCoco(data=dict(data), tool=detect_tool(data))
    changed = False

    # ---------------------------------------------------------------- categories
    cats = sorted(data["categories"], key=_category_order)
    ann_cats = Counter(a.get("category_id") for a in data["annotations"])
    src_counts = ann_cats
    if empty_categories_from is not None:
        src_counts = Counter(a.get("category_id") for a in empty_categories_from["annotations"])
    out.empty_categories = [c for c in cats if not src_counts[c.get("id")]]
    if drop_empty_categories and out.empty_categories:
        dropped_ids = {c["id"] for c in out.empty_categories}
        out.dropped_categories = list(out.empty_categories)
        cats = [c for c in cats if c["id"] not in dropped_ids]
        changed = True
    else:
        dropped_ids = set()
    out.data["categories"] = cats

    # ---------------------------------------------------------------- images
    images = data["images"]
    id_map = None
    if any(not isinstance(im.get("id"), int) or isinstance(im.get("id"), bool) for im in images):
        # faster-coco-eval (and COCO's result format) need integer image ids
        id_map = {im.get("id"): i + 1 for i, im in enumerate(images)}
        out.note(
            "image ids",
            len(images),
            "image ids that are not integers: numbered 1..N (the original kept as 'original_id')",
        )
        changed = True
    resolver = _FileResolver(image_root)
    new_images, moved, sized, missing_files = [], [], 0, 0
    for im in images:
        im2 = im
        if id_map is not None:
            im2 = dict(im2, id=id_map[im.get("id")], original_id=im.get("id"))
        if resolve_files and isinstance(im.get("file_name"), str):
            rel = resolver(im["file_name"])
            if rel is None:
                missing_files += 1
            elif rel != im["file_name"]:
                im2 = dict(im2, file_name=rel)
                moved.append((im["file_name"], rel))
            if rel is not None and not (
                isinstance(im.get("height"), int) and isinstance(im.get("width"), int)
            ):
                size = _image_size(os.path.join(image_root, rel))
                if size is not None:
                    im2 = dict(im2, height=size[0], width=size[1])
                    sized += 1
        new_images.append(im2)
    if moved:
        a, b = moved[0]
        out.note(
            "file names",
            len(moved),
            f"file_name resolved under the image folder (e.g. {a!r} -> {b!r})",
        )
    out.note("image sizes", sized, "width/height missing in the json: read from the image file")
    changed |= bool(moved) or sized > 0 or id_map is not None
    new_images, merged_into = _merge_repeated_files(new_images, image_root, out)
    changed |= bool(merged_into)
    out.data["images"] = new_images
    sizes = {im.get("id"): (im.get("height"), im.get("width")) for im in new_images}
    names = {im.get("id"): im.get("file_name") for im in new_images}

    # ---------------------------------------------------------------- annotations
    objects_from_crowd = crowd_masks == "objects" or (crowd_masks == "auto" and out.tool == "CVAT")
    counts = Counter()
    per_image = Counter()
    keypoints = Counter()
    new_anns = []
    for a in data["annotations"]:
        a2 = dict(a)
        if a2.get("category_id") in dropped_ids:
            counts["dropped"] += 1
            continue
        out.source_ids.append(a.get("id"))
        if id_map is not None:
            a2["image_id"] = id_map.get(a2.get("image_id"), a2.get("image_id"))
        if a2.get("image_id") in merged_into:  # an entry merged into another of its file
            a2["image_id"] = merged_into[a2["image_id"]]
        if "ignore" in a2:  # Label Studio; detectron2's loader refuses a non-zero "ignore"
            ignore = a2.pop("ignore")
            if ignore:
                a2["iscrowd"] = 1
                counts["ignore"] += 1
        if "iscrowd" not in a2 or a2["iscrowd"] is None:
            a2["iscrowd"] = 0
            counts["iscrowd"] += 1
        segm = a2.get("segmentation")
        if "segmentation" in a2 and not has_mask(a2):
            del a2["segmentation"]  # [], None or no valid polygon: a box without a mask
            if segm not in ([], None):
                out.flagged.setdefault("bad polygons", []).append(a.get("id"))
        elif isinstance(segm, list) and len(_valid_polygons(segm)) < len(segm):
            a2["segmentation"] = _valid_polygons(segm)
            out.flagged.setdefault("short polygons", []).append(a.get("id"))
        if a2["iscrowd"] and objects_from_crowd and has_mask(a2):
            a2["iscrowd"] = 0
            counts["crowd masks"] += 1
        h, w = sizes.get(a2.get("image_id"), (None, None))
        bbox = a2.get("bbox")
        mask_ok = has_mask(a2) and isinstance(h, int) and isinstance(w, int)
        if mask_ok and isinstance(a2["segmentation"], dict):
            mask_ok = list(a2["segmentation"].get("size", [])) == [h, w]
        if not (isinstance(bbox, list) and len(bbox) == 4) and mask_ok:
            a2["bbox"] = [float(x) for x in mask_util.toBbox(_rle(a2["segmentation"], h, w))]
            counts["bbox"] += 1
        if not isinstance(a2.get("area"), (int, float)):
            if mask_ok:
                a2["area"] = float(mask_util.area(_rle(a2["segmentation"], h, w)))
            elif isinstance(a2.get("bbox"), list) and len(a2["bbox"]) == 4:
                a2["area"] = float(a2["bbox"][2]) * float(a2["bbox"][3])
            counts["area"] += 1
        if not a2["iscrowd"]:
            if has_mask(a2):
                out.num_with_mask += 1
            else:
                out.num_without_mask += 1
            per_image[a2.get("image_id")] += 1
            if has_keypoints(a2):  # trained as a box (the mappers drop the keypoints)
                keypoints[a2.get("category_id")] += 1
        if a2 == a:
            a2 = a  # unchanged: the parsed dict itself, not a second copy of a large json
        else:
            changed = True
        new_anns.append(a2)

    ids = [a.get("id") for a in new_anns]
    if any(not isinstance(i, int) or i == 0 for i in ids) or len(set(ids)) != len(ids):
        # pycocotools matches with annotation ids and takes 0 for "unmatched"
        new_anns = [dict(a2, id=i + 1) for i, a2 in enumerate(new_anns)]
        why = "id 0 (pycocotools' 'unmatched' marker)" if 0 in ids else "missing or repeated ids"
        out.note("annotation ids", len(ids), f"annotations re-numbered 1..N: {why}")
        changed = True
    out.data["annotations"] = new_anns

    out.note(
        "dropped categories",
        counts["dropped"],
        "annotations of dropped categories removed",
    )
    out.note("ignore", counts["ignore"], "'ignore': 1 read as iscrowd 1 (a region, not an object)")
    out.note("iscrowd", counts["iscrowd"], "iscrowd missing: 0 (an object)")
    out.note("area", counts["area"], "area missing: computed from the mask, else the box")
    out.note("bbox", counts["bbox"], "bbox missing: computed from the mask")
    out.note(
        "crowd masks",
        counts["crowd masks"],
        "iscrowd 1 masks (CVAT writes every brush mask so) read as objects; "
        "crowd_masks='crowd' keeps them as crowd regions",
    )
    out.keypoint_annotations = dict(keypoints)
    if per_image:
        image_id, out.max_instances = per_image.most_common(1)[0]
        out.max_instances_file = str(names.get(image_id, image_id))
    out.changed = changed
    return out
