"""
Checks of a COCO-format instance dataset, all problems in one pass.

Each problem names the file or annotation and says what to do. Fatal problems would stop or
corrupt training (they are refused before training starts); the others are handled while
training (converted, dropped or kept, as the message says).

Used by :func:`pvt_fpn_d2.data.register_coco_json` before training and by the command line
``python -m pvt_fpn_d2.check_dataset --json J --images DIR``.
"""

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "Problem",
    "DatasetReport",
    "DatasetError",
    "BadImageError",
    "check_coco_dataset",
    "read_image",
    "MIN_IMAGE_SIZE",
    "MAX_ASPECT_RATIO",
]

logger = logging.getLogger(__name__)

MIN_IMAGE_SIZE = 32  # below this, the image is upscaled (by the resize) or padded to 32
MAX_ASPECT_RATIO = 10.0


class DatasetError(ValueError):
    """The dataset has problems that would stop or corrupt training."""


class BadImageError(OSError):
    """An image file cannot be read, or does not match its annotation."""


@dataclass
class Problem:
    fatal: bool
    where: str  # a file, "annotation <id>", "image <id>" or the json itself
    message: str

    def __str__(self) -> str:
        return f"{'ERROR' if self.fatal else 'warning'}: {self.where}: {self.message}"


@dataclass
class DatasetReport:
    json_file: str
    problems: List[Problem] = field(default_factory=list)
    num_images: int = 0
    num_annotations: int = 0

    @property
    def fatal(self) -> List[Problem]:
        return [p for p in self.problems if p.fatal]

    def add(self, fatal: bool, where: str, message: str) -> None:
        self.problems.append(Problem(fatal, str(where), message))

    def summary(self, limit: Optional[int] = None) -> str:
        shown = sorted(self.problems, key=lambda p: not p.fatal)[:limit]
        lines = [
            f"{self.json_file}: {self.num_images} images, {self.num_annotations} annotations, "
            f"{len(self.fatal)} errors, {len(self.problems) - len(self.fatal)} warnings"
        ]
        lines += [f"  {p}" for p in shown]
        if limit is not None and len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


def _to_uint8(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer / float images scaled to 8 bits (PIL would clip them)."""
    if img.mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float32) / 257.0  # 65535 -> 255
    elif img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        arr = arr / 257.0 if arr.max() > 255 else arr
    else:
        return img
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), mode="L")


def _open(file_name: str, decode: bool) -> Image.Image:
    try:
        img = Image.open(file_name)
        if decode:
            img.load()  # raises on truncated or corrupt data
        return img
    except FileNotFoundError:
        raise BadImageError(
            f"{file_name}: file not found. Fix file_name or add the image."
        ) from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for unreadable data
        raise BadImageError(
            f"{file_name}: cannot read the image ({e}). Re-export it or remove it from the json."
        ) from None


def read_image(file_name: str, format: str = "RGB") -> np.ndarray:
    """
    Read an image robustly: EXIF orientation applied, grayscale / palette / RGBA / CMYK
    converted, 16-bit scaled to 8 bits; corrupt or truncated files raise :class:`BadImageError`.

    Returns:
        (H, W, 3) uint8 array in ``format`` ("RGB" or "BGR"), or (H, W, 1) for "L".
    """
    img = _open(file_name, decode=True)
    img = _to_uint8(ImageOps.exif_transpose(img))
    if format == "L":
        return np.asarray(img.convert("L"))[:, :, None]
    arr = np.asarray(img.convert("RGB"))
    return arr[:, :, ::-1] if format == "BGR" else arr


def _image_size(file_name: str, decode: bool) -> tuple:
    """(height, width) as the model sees it (after EXIF orientation)."""
    img = _open(file_name, decode)
    w, h = img.size
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # malformed EXIF: PIL reads the pixels anyway, without rotation
        orientation = 1
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _check_segmentation(report, ann, where, h, w) -> None:
    segm = ann.get("segmentation")
    if segm is None:
        return
    if isinstance(segm, list):
        valid = [p for p in segm if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
        if not segm:
            report.add(False, where, "empty segmentation: the annotation is ignored")
        elif not valid:
            report.add(False, where, "no polygon has 3 or more points: the annotation is ignored")
        elif len(valid) < len(segm):
            report.add(False, where, "polygons with fewer than 3 points are dropped")
    elif isinstance(segm, dict):
        size = segm.get("size")
        if not (isinstance(size, list) and len(size) == 2 and "counts" in segm):
            report.add(False, where, "malformed RLE (needs 'size' and 'counts'): ignored")
        elif h is not None and list(size) != [h, w]:
            report.add(
                False,
                where,
                f"RLE mask of size {size} on an image of {[h, w]}: the annotation is dropped",
            )
    else:
        report.add(False, where, f"segmentation of type {type(segm).__name__}: ignored")


def check_coco_dataset(
    json_file: str, image_root: str, images: str = "header", data: Optional[Dict] = None
) -> DatasetReport:
    """
    Check a COCO instance dataset and report every problem.

    Args:
        json_file: the COCO json.
        image_root: the folder the json's ``file_name`` entries are relative to.
        images: "full" decodes every image (finds truncated files), "header" reads only the
            headers (existence, format, size, EXIF orientation), "none" skips the files.
        data: the json already loaded (optional).
    """
    report = DatasetReport(json_file)
    if data is None:
        if not os.path.isfile(json_file):
            report.add(True, json_file, "annotation file not found; check the path")
            return report
        try:
            with open(json_file) as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            report.add(True, json_file, f"not valid JSON ({e})")
            return report
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if not isinstance(data, dict) or missing:
        report.add(True, json_file, f"not a COCO instance file: missing key(s) {missing}")
        return report
    report.num_images, report.num_annotations = len(data["images"]), len(data["annotations"])

    cat_ids = [c.get("id") for c in data["categories"]]
    if not cat_ids:
        report.add(True, json_file, "no categories: a detector needs at least one class")
    for cid, n in Counter(cat_ids).items():
        if n > 1:
            report.add(True, json_file, f"category id {cid} is defined {n} times")

    image_ids = [im.get("id") for im in data["images"]]
    for iid, n in Counter(image_ids).items():
        if n > 1:
            report.add(True, f"image {iid}", f"image id used by {n} images; ids must be unique")
    sizes: Dict[Any, tuple] = {}
    annotated = {a.get("image_id") for a in data["annotations"]}
    for im in data["images"]:
        where = f"image {im.get('id')}"
        if not all(k in im for k in ("id", "file_name", "height", "width")):
            report.add(True, where, "needs 'id', 'file_name', 'height' and 'width'")
            continue
        h, w = im["height"], im["width"]
        sizes[im["id"]] = (h, w)
        path = os.path.join(image_root, im["file_name"])
        if images != "none":
            try:
                fh, fw = _image_size(path, decode=images == "full")
            except BadImageError as e:
                report.add(True, path, str(e).split(": ", 1)[1])
                continue
            if (fh, fw) != (h, w):
                rotated = (fw, fh) == (h, w)
                report.add(
                    True,
                    path,
                    f"the json says {h}x{w} (HxW) but the image is {fh}x{fw}"
                    + (" after its EXIF rotation" if rotated else "")
                    + ": fix height/width in the json (and the annotations, if they were made "
                    "on the other orientation)",
                )
        if min(h, w) < MIN_IMAGE_SIZE:
            report.add(
                False, path, f"only {h}x{w} px: it is upscaled by the resize or padded to 32"
            )
        if max(h, w) / max(min(h, w), 1) > MAX_ASPECT_RATIO:
            report.add(False, path, f"extreme aspect ratio {h}x{w}: the short side becomes tiny")
        if im["id"] not in annotated:
            report.add(
                False,
                where,
                "no annotations: dropped from training unless filter_empty=False; evaluated",
            )

    ann_ids = [a.get("id") for a in data["annotations"]]
    for aid, n in Counter(ann_ids).items():
        if n > 1:
            report.add(
                True, f"annotation {aid}", f"annotation id used {n} times; ids must be unique"
            )
    if 0 in ann_ids:
        report.add(
            False,
            "annotation 0",
            "annotation id 0 (pycocotools' 'unmatched' marker): evaluation uses a re-numbered copy",
        )
    known_cats = set(cat_ids)
    for a in data["annotations"]:
        where = f"annotation {a.get('id')}"
        if a.get("image_id") not in sizes:
            report.add(True, where, f"image_id {a.get('image_id')} is not in 'images'")
            continue
        if a.get("category_id") not in known_cats:
            report.add(
                True,
                where,
                f"category_id {a.get('category_id')} is not in 'categories' "
                f"(ids {sorted(known_cats)}); add the category or fix the annotation",
            )
        h, w = sizes[a["image_id"]]
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            report.add(True, where, f"bbox must be [x, y, width, height], got {bbox!r}")
        else:
            x, y, bw, bh = bbox
            if bw <= 0 or bh <= 0:
                report.add(False, where, f"box {bbox} has no area: the annotation is dropped")
            elif x >= w or y >= h or x + bw <= 0 or y + bh <= 0:
                report.add(False, where, f"box {bbox} is outside the {h}x{w} image: dropped")
            elif x < 0 or y < 0 or x + bw > w or y + bh > h:
                report.add(False, where, f"box {bbox} extends outside the {h}x{w} image: clipped")
        _check_segmentation(report, a, where, h, w)
    return report
