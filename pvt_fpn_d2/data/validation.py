"""
Checks of a COCO-format instance dataset, all problems in one pass: every image and every
annotation is checked, whatever else is wrong (duplicated ids, unreadable files), and each
problem of an annotation is named on its own.

Each problem names the file or annotation (by the json's own ids) and says what to do. Fatal
problems would stop or corrupt training (they are refused before training starts, all of them
listed); the others are handled while training (converted, dropped or kept, as the message says).

Used by :func:`pvt_fpn_d2.data.register_coco_json` before training and by the command line
``python -m pvt_fpn_d2.check_dataset --json J --images DIR``.
"""

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


from .exports import PreparedCoco, prepare_coco
from .images import BadImageError, image_size, read_image

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
_EXAMPLES = {True: 10, False: 3}  # places named on the line of a kind: errors, warnings


class DatasetError(ValueError):
    """The dataset has problems that would stop or corrupt training."""


@dataclass
class Problem:
    fatal: bool
    where: str  # a file, "annotation <id>", "image <id>" or the json itself
    message: str
    kind: str = ""  # problems of one kind are reported together, once per dataset

    def __str__(self) -> str:
        return f"{'ERROR' if self.fatal else 'warning'}: {self.where}: {self.message}"


@dataclass
class DatasetReport:
    json_file: str
    problems: List[Problem] = field(default_factory=list)
    num_images: int = 0
    num_annotations: int = 0
    info: List[str] = field(default_factory=list)  # facts about the dataset, not problems
    prepared: Optional[PreparedCoco] = None  # the dataset as training reads it

    @property
    def fatal(self) -> List[Problem]:
        return [p for p in self.problems if p.fatal]

    def add(self, fatal: bool, where: str, message: str, kind: str = "") -> None:
        self.problems.append(Problem(fatal, str(where), message, kind))

    def summary(self, limit: Optional[int] = None) -> str:
        """
        One line per kind of problem, errors first (at most ``limit`` lines of them): a problem
        alone of its kind in full, else the count, the first places and an example; then the
        facts.
        """
        groups: Dict[tuple, List[Problem]] = {}
        for p in self.problems:
            groups.setdefault((not p.fatal, p.kind or p.message), []).append(p)
        errors = [g for (warning, _), g in groups.items() if not warning]
        warnings = [g for (warning, _), g in groups.items() if warning]
        num_errors = len(self.fatal)
        lines = [
            f"{self.json_file}: {self.num_images} images, {self.num_annotations} annotations, "
            f"{num_errors} errors, {len(self.problems) - num_errors} warnings"
        ]
        shown = errors if limit is None else errors[:limit]
        for group in shown + warnings:
            if len(group) == 1:
                lines.append(f"  {group[0]}")
                continue
            p, k = group[0], _EXAMPLES[group[0].fatal]
            where = ", ".join(q.where for q in group[:k]) + (", ..." if len(group) > k else "")
            label = "ERROR" if p.fatal else "warning"
            lines.append(
                f"  {label}: {len(group)} x {p.kind or p.message} ({where}; e.g. {p.message})"
            )
        if len(shown) < len(errors):
            hidden = sum(len(g) for g in errors[len(shown) :])
            lines.insert(len(shown) + 1, f"  ... and {hidden} more errors")
        lines += [f"  {line}" for line in self.info]
        return "\n".join(lines)


def _check_segmentation(report, ann, where, h, w) -> None:
    """Masks the loader cannot use (boxes without masks are reported once, in the facts)."""
    segm = ann.get("segmentation")
    if isinstance(segm, list) or segm is None:
        return
    if isinstance(segm, dict):
        size = segm.get("size")
        if not (isinstance(size, list) and len(size) == 2 and "counts" in segm):
            report.add(
                False,
                where,
                "malformed RLE (needs 'size' and 'counts'): the mask is ignored",
                kind="malformed RLE masks",
            )
        elif h is not None and list(size) != [h, w]:
            report.add(
                False,
                where,
                f"RLE mask of size {size} on an image of {[h, w]}: the annotation is dropped",
                kind="RLE masks of another size than their image: dropped",
            )
    else:
        report.add(
            False,
            where,
            f"segmentation of type {type(segm).__name__}: the mask is ignored",
            kind="segmentations of an unknown type",
        )


def _check_box(report, ann, where, h, w) -> None:
    """Malformed, degenerate and out-of-image boxes (``h``, ``w`` None: the size is unknown)."""
    bbox = ann.get("bbox")
    if not (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    ):
        report.add(
            True,
            where,
            f"bbox must be [x, y, width, height], got {bbox!r}",
            kind="malformed boxes",
        )
        return
    x, y, bw, bh = bbox
    if bw <= 0 or bh <= 0:
        report.add(
            False,
            where,
            f"box {bbox} has no area: the annotation is dropped",
            kind="boxes without area: dropped",
        )
    elif h is None:
        return
    elif x >= w or y >= h or x + bw <= 0 or y + bh <= 0:
        report.add(
            False,
            where,
            f"box {bbox} is outside the {h}x{w} image: dropped",
            kind="boxes outside their image: dropped",
        )
    elif x < 0 or y < 0 or x + bw > w or y + bh > h:
        report.add(
            False,
            where,
            f"box {bbox} extends outside the {h}x{w} image: clipped",
            kind="boxes past the image edge: clipped",
        )


def _check_repeated_files(report, prepared: PreparedCoco) -> None:
    """Files listed by more than one image entry: merged (sizes agree) or refused."""
    for file_name, entries, merged in prepared.repeated_files:
        ids = ", ".join(str(iid) for iid, _, _ in entries)
        if merged:
            report.add(
                False,
                file_name,
                f"listed by {len(entries)} image entries (ids {ids}; Label Studio writes one per "
                f"annotator): merged into one image, id {entries[0][0]}, with the annotations "
                "of all of them (if they are two annotators' labels of the same objects, each "
                "object is there twice: export one annotator's)",
                kind="files listed by more than one image entry: merged into one image each",
            )
            continue
        sizes = {(h, w) for _, h, w in entries if isinstance(h, int) and isinstance(w, int)}
        if len(sizes) > 1:
            listed = ", ".join(f"image {iid}: {h}x{w}" for iid, h, w in entries)
            report.add(
                True,
                file_name,
                f"listed by {len(entries)} image entries of different sizes (HxW: {listed}): "
                "one file has one size; fix height/width of the wrong entry, or its file_name "
                "if it is another image",
                kind="files listed by image entries of different sizes",
            )
        # else: an image id used twice, named by its own error; nothing was merged


def _check_keypoints(report, prepared: PreparedCoco) -> None:
    """Keypoint annotations: trained as boxes (no model here has a keypoint head)."""
    counts = prepared.keypoint_annotations
    if not counts:
        return
    names = {c.get("id"): c.get("name") for c in prepared.data["categories"]}
    classes = [f"{names.get(cid, cid)!r}" for cid in counts]
    if len(counts) == 1:
        of = f"of class {classes[0]}"
    else:
        of = "of classes " + ", ".join(f"{c} ({n})" for c, n in zip(classes, counts.values()))
    n = sum(counts.values())
    report.add(
        False,
        f"{n} keypoint annotations",
        f"trained as boxes {of}; the keypoints themselves are not trained (the models "
        "here have no keypoint head)",
        kind="keypoint annotations",
    )


BOX_ONLY_CONFIGS = (
    "configs/finetune/faster_rcnn_pvt_v2_b0_fpn_coco_json.py or "
    "configs/finetune/retinanet_pvt_v2_b0_fpn_coco_json.py"
)


def masks_fact(prepared: PreparedCoco) -> str:
    """One line: what each config family does with the dataset's boxes that have no mask."""
    n, k = prepared.num_with_mask + prepared.num_without_mask, prepared.num_without_mask
    if k == 0:
        return f"masks: all {n} objects have a mask"
    if k == n:
        return (
            f"masks: none of the {n} objects has a mask (boxes only): train a box-only config "
            f"({BOX_ONLY_CONFIGS}); a Mask R-CNN config stops before training"
        )
    return (
        f"masks: {k} of {n} objects have a box and no mask: Mask R-CNN and Cascade configs train "
        "them in the box and RPN heads only (no mask loss for them); box-only configs "
        "(Faster R-CNN, RetinaNet) use every box"
    )


def _category_list(cats) -> str:
    return ", ".join(f"{c.get('id')} {c.get('name')!r}" for c in cats)


def _placeholder_hint(prepared: PreparedCoco, cats) -> str:
    """Roboflow's placeholder: an empty category that is the supercategory of all the others."""
    all_cats = prepared.data["categories"] + prepared.dropped_categories
    for c in cats:
        others = [o for o in all_cats if o is not c]
        if others and all(o.get("supercategory") == c.get("name") for o in others):
            return f" ({c.get('name')!r} is the supercategory of all the others: a placeholder)"
    return ""


# what prepare_coco did to single annotations (PreparedCoco.flagged): one warning per annotation
_FLAGGED_POLYGONS = (
    (
        "bad polygons",
        "no polygon with 3 or more points: kept as a box",
        "annotations without a polygon of 3 or more points: kept as boxes",
    ),
    (
        "short polygons",
        "polygons under 3 points dropped (the others kept)",
        "polygons under 3 points: dropped",
    ),
)


def check_coco_dataset(
    json_file: str,
    image_root: str,
    images: str = "header",
    data: Optional[Dict] = None,
    *,
    drop_empty_categories: bool = False,
    empty_categories_from: Optional[Dict] = None,
    crowd_masks: str = "auto",
    prepared: Optional[PreparedCoco] = None,
) -> DatasetReport:
    """
    Check a COCO instance dataset as the loader reads it (after
    :func:`pvt_fpn_d2.data.exports.prepare_coco`) and report every problem, once per kind.

    Args:
        json_file: the COCO json.
        image_root: the folder the json's ``file_name`` entries are relative to.
        images: "full" decodes every image (finds truncated files), "header" reads only the
            headers (existence, format, size, EXIF orientation), "none" skips the files.
        data: the json already loaded (optional).
        drop_empty_categories, empty_categories_from, crowd_masks: as
            :func:`~pvt_fpn_d2.data.exports.prepare_coco`.
        prepared: the prepared dataset, if already made from ``data``.

    Returns:
        The report; ``report.prepared`` is the dataset as training reads it.
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

    # every check below runs whatever the others find: one pass names every problem
    cat_ids = [c.get("id") for c in data["categories"]]
    if not cat_ids:
        report.add(True, json_file, "no categories: a detector needs at least one class")
    for c in data["categories"]:
        if not isinstance(c.get("id"), int) or not isinstance(c.get("name"), str):
            report.add(
                True,
                "categories",
                f"category {c!r} needs an integer 'id' and a 'name'",
                kind="categories without an integer id or a name",
            )
    for cid, n in Counter(cat_ids).items():
        if n > 1:
            report.add(
                True,
                json_file,
                f"category id {cid} is defined {n} times; ids must be unique",
                kind="category ids defined more than once",
            )
    for iid, n in Counter(im.get("id") for im in data["images"]).items():
        if n > 1:
            report.add(
                True,
                f"image {iid}",
                f"image id used by {n} images; ids must be unique",
                kind="image ids used by more than one image",
            )

    if prepared is None:
        prepared = prepare_coco(
            data,
            image_root,
            drop_empty_categories=drop_empty_categories,
            empty_categories_from=empty_categories_from,
            crowd_masks=crowd_masks,
            resolve_files=images != "none",
        )
    report.prepared = prepared
    if prepared.tool:
        report.info.append(
            f"export: looks like {prepared.tool}'s; read as docs/CUSTOM_DATASETS.md says"
        )
    for kind, count, message in prepared.notes:
        report.add(False, f"{count} x", message, kind=kind)
    _check_repeated_files(report, prepared)
    data = prepared.data

    sizes: Dict[Any, tuple] = {}
    annotated = {a.get("image_id") for a in data["annotations"]}
    for im in data["images"]:
        where = f"image {im.get('original_id', im.get('id'))}"
        if "id" not in im or not isinstance(im.get("file_name"), str):
            report.add(
                True, where, "needs 'id' and 'file_name'", kind="images without id or file_name"
            )
            continue
        path = os.path.join(image_root, im["file_name"])
        file_size = None
        if images != "none":
            try:
                file_size = image_size(path, decode=images == "full")
            except BadImageError as e:
                message = str(e).split(": ", 1)[1]
                kind = "unreadable image files"
                if "not found" in message:
                    kind = "image files not found"
                    message = (
                        f"file not found in {image_root} (nor any ending of the path, in any "
                        "letter case): fix file_name or --images / dataset.*_images"
                    )
                report.add(True, path, message, kind=kind)
        h, w = im.get("height"), im.get("width")
        if not (isinstance(h, int) and isinstance(w, int)):
            report.add(
                True,
                where,
                f"needs integer 'height' and 'width', got {h!r} and {w!r}",
                kind="images without integer height and width",
            )
            continue
        sizes[im["id"]] = (h, w)  # the json's size: the annotations are checked against it
        if file_size is not None and file_size != (h, w):
            fh, fw = file_size
            rotated = (fw, fh) == (h, w)
            report.add(
                True,
                path,
                f"the json says {h}x{w} (HxW) but the image is {fh}x{fw}"
                + (" after its EXIF rotation" if rotated else "")
                + ": fix height/width in the json (and the annotations, if they were made "
                "on the other orientation)",
                kind="json sizes that disagree with the image files",
            )
        if min(h, w) < MIN_IMAGE_SIZE:
            report.add(
                False,
                path,
                f"only {h}x{w} px: it is upscaled by the resize or padded to 32",
                kind="images under 32 px",
            )
        if max(h, w) / max(min(h, w), 1) > MAX_ASPECT_RATIO:
            report.add(
                False,
                path,
                f"extreme aspect ratio {h}x{w}: the short side becomes tiny",
                kind="images of extreme aspect ratio",
            )
        if im["id"] not in annotated:
            report.add(
                False,
                where,
                "no annotations: dropped from training unless filter_empty=False; evaluated",
                kind="images without annotations",
            )

    known_cats = {c.get("id") for c in data["categories"]}
    listed_cats = sorted(c for c in known_cats if isinstance(c, int))
    image_ids = {im.get("id") for im in data["images"]}
    source_ids = prepared.source_ids  # the json's ids (the prepared ones may be re-numbered)
    if len(source_ids) != len(data["annotations"]):
        source_ids = [a.get("id") for a in data["annotations"]]
    for a, source_id in zip(data["annotations"], source_ids):
        # each problem of an annotation on its own: the image, the category, the box, the mask
        where = f"annotation {source_id}"
        if a.get("image_id") not in image_ids:
            report.add(
                True,
                where,
                f"image_id {a.get('image_id')} is not in 'images'; add the image or remove "
                "the annotation",
                kind="annotations of images not in 'images'",
            )
        if a.get("category_id") not in known_cats:
            report.add(
                True,
                where,
                f"category_id {a.get('category_id')} is not in 'categories' "
                f"(ids {listed_cats}); add the category or fix the annotation",
                kind="annotations of categories not in 'categories'",
            )
        h, w = sizes.get(a.get("image_id"), (None, None))
        _check_box(report, a, where, h, w)
        _check_segmentation(report, a, where, h, w)
    for flag, message, kind in _FLAGGED_POLYGONS:
        for source_id in prepared.flagged.get(flag, []):
            report.add(False, f"annotation {source_id}", message, kind=kind)
    _check_keypoints(report, prepared)

    cats = data["categories"]
    report.info.append(f"classes: {len(cats)}: {[c.get('name') for c in cats]}")
    if prepared.dropped_categories:
        report.info.append(
            "dropped categories without annotations (drop_empty_categories): "
            + _category_list(prepared.dropped_categories)
        )
    elif prepared.empty_categories:
        report.add(
            False,
            "categories",
            f"no annotation in category {_category_list(prepared.empty_categories)}"
            + _placeholder_hint(prepared, prepared.empty_categories)
            + ": a class the model cannot learn, an empty row in the AP table. Drop with "
            "dataset.drop_empty_categories=True (check_dataset --drop-empty-categories)",
            kind="categories without annotations",
        )
    report.info.append(masks_fact(prepared))
    if prepared.max_instances:
        report.info.append(
            f"most objects in one image: {prepared.max_instances} ({prepared.max_instances_file})"
            + (
                "; detectors keep 100 detections per image by default: train_net.py names the "
                "key that raises it"
                if prepared.max_instances > 100
                else ""
            )
        )
    return report
