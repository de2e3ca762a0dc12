"""A deterministic synthetic instance-segmentation dataset in COCO format.

Each image shows 2-8 (by default) filled shapes, one of :data:`SYNTHETIC_CLASSES`, painted in order
over a textured background, so later shapes may hide parts of earlier ones. The task is small
enough for a PVT-v2-b0 Mask R-CNN trained from scratch on a CPU, yet it is not trivial:

* the three classes have the same distribution of areas (every shape has the area of a circle of
  the sampled radius) and of colours, so only the outline tells them apart;
* sizes span COCO "small" (< 32^2 px) and "medium" (32^2..96^2 px) objects at 160 px;
* colours are random per object (with a minimum contrast to the local background and to the shapes
  they overlap), objects carry a random shading gradient and pixel noise, triangles and squares are
  rotated at random, and objects may be cut by the image border;
* backgrounds are a random colour gradient plus one or two textures (stripes, a rotated
  checkerboard, blurred blobs) and sometimes thin distractor lines, plus Gaussian pixel noise;
* objects occlude each other; the annotations describe the *visible* part of each object.

Visibility rules: an object's visible mask is its full mask clipped to the image, minus the union of
the masks painted after it. A placement (position and rotation) is re-sampled when it would leave
the new object, or any object already placed, with a visible part under half of its full area
(inside and outside the image), with a hole (an enclosed occluder, which a COCO polygon cannot
describe) or with a small detached fragment; it is also re-sampled when the shapes would cover more
than 60% of the image, so every image keeps background pixels.

Polygons are traced from the visible masks with ``cv2.findContours`` (outer contours) on a 2x
nearest-neighbour upsampled mask and mapped back to pixel-corner coordinates, so that they run a
quarter pixel inside the boundary pixels' outer edges, and simplified by less than a quarter pixel:
rasterised with pycocotools they give back exactly the visible masks (so ``area`` and ``bbox``,
computed from the visible masks, also match the polygons).

Every image draws its randomness from ``np.random.default_rng([seed, split, index])``: the same
arguments give byte-identical json files and identical pixels, and the size of one split does not
change the images of the other.
"""

import json
import logging
import math
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..utils import atomic_write_text

__all__ = [
    "SYNTHETIC_CLASSES",
    "generate_synthetic_coco",
    "generate_synthetic_classification",
    "generate_synthetic_depth",
]

logger = logging.getLogger(__name__)

SYNTHETIC_CLASSES = ("circle", "triangle", "square")

_SPLITS = ("train", "val")
_SPLIT_CODES = {"train": 0, "val": 1}

# Geometry is defined at a 160 px reference and scaled with min(height, width) / 160.
_REFERENCE_SIZE = 160.0
# radius of the equal-area circle: diameters of 12..72 px, areas of ~113..4072 px at 160 px
_RADIUS_RANGE = (6.0, 36.0)
_MIN_VISIBLE_FRACTION = 0.5
_MAX_COVERAGE = 0.6
_PLACEMENT_TRIES = 30
# a detached piece of a visible mask must have at least this many pixels and this share of it
_MIN_FRAGMENT_PIXELS = 12
_MIN_FRAGMENT_FRACTION = 0.1
# tolerated enclosed pixels (in the union of a visible mask's outer contours but not in it)
_MAX_HOLE_FRACTION = 0.01
_MIN_COLOUR_DISTANCE = 80.0
_COLOUR_TRIES = 30
_JPEG_QUALITY = 95
# polygons are simplified (Douglas-Peucker) by at most this many pixels: under the quarter pixel
# between a traced contour and the nearest pixel centres, so they still rasterise exactly
_POLYGON_TOLERANCE = 0.225
_FILE_PATTERN = re.compile(r"^\d{6}\.(jpg|png)$")


class _Shape:
    """One placed object: its class, its in-image full mask and its current visible mask."""

    def __init__(self, category_id: int, mask: np.ndarray, full_area: int, box: Tuple[int, ...]):
        self.category_id = category_id
        self.mask = mask  # full shape clipped to the image, bool HxW
        self.full_area = full_area  # pixel count of the whole shape, inside and outside the image
        self.box = box  # (y0, y1, x0, x1) of ``mask``, exclusive ends
        self.visible = mask.copy()
        self.colour = np.zeros(3, np.float32)


def _as_hw(image_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(image_size, (int, np.integer)):
        height = width = int(image_size)
    else:
        height, width = (int(v) for v in image_size)
    if min(height, width) < 32:
        raise ValueError(f"image_size must be at least 32 px on each side, got {image_size}")
    return height, width


def _shape_vertices(category_id: int, radius: float, angle: float) -> Optional[np.ndarray]:
    """Vertices (relative to the centre) of a shape whose area is ``pi * radius**2``.

    Returns None for a circle.
    """
    name = SYNTHETIC_CLASSES[category_id - 1]
    if name == "circle":
        return None
    if name == "square":
        circumradius = radius * math.sqrt(math.pi / 2.0)  # half-side sqrt(pi)/2 * r, times sqrt(2)
        angles = angle + np.pi / 4 + np.arange(4) * (np.pi / 2)
    else:  # equilateral triangle: side sqrt(4 pi / sqrt(3)) * r, circumradius side / sqrt(3)
        circumradius = radius * math.sqrt(4.0 * math.pi / math.sqrt(3.0)) / math.sqrt(3.0)
        angles = angle + np.arange(3) * (2 * np.pi / 3)
    return circumradius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _rasterize(
    category_id: int, cx: float, cy: float, radius: float, angle: float, height: int, width: int
) -> Tuple[np.ndarray, int, Tuple[int, int, int, int]]:
    """Draw one shape.

    Args:
        category_id: 1-based index into :data:`SYNTHETIC_CLASSES`.
        cx, cy: centre in pixel-corner coordinates (pixel ``i`` spans ``[i, i + 1)``).
        radius: radius of the circle of equal area.
        angle: rotation in radians (ignored for circles).
        height, width: image size.

    Returns:
        the shape's mask clipped to the image (bool, HxW), the pixel count of the whole shape
        (inside and outside the image) and the (y0, y1, x0, x1) box of the clipped mask.
    """
    vertices = _shape_vertices(category_id, radius, angle)
    extent = radius if vertices is None else float(np.abs(vertices).max())
    x0 = int(math.floor(cx - extent)) - 2
    y0 = int(math.floor(cy - extent)) - 2
    x1 = int(math.ceil(cx + extent)) + 2
    y1 = int(math.ceil(cy + extent)) + 2
    patch = np.zeros((y1 - y0, x1 - x0), np.uint8)
    # OpenCV puts pixel centres on integer coordinates: shift by half a pixel.
    centre = np.array([cx - x0 - 0.5, cy - y0 - 0.5])
    shift = 4
    if vertices is None:
        c = tuple(int(v) for v in np.round(centre * (1 << shift)))
        cv2.circle(patch, c, int(round(radius * (1 << shift))), 1, -1, cv2.LINE_8, shift)
    else:
        pts = np.round((vertices + centre) * (1 << shift)).astype(np.int32)
        cv2.fillPoly(patch, [pts], 1, cv2.LINE_8, shift)
    full_area = int(patch.sum())
    mask = np.zeros((height, width), bool)
    iy0, iy1, ix0, ix1 = max(y0, 0), min(y1, height), max(x0, 0), min(x1, width)
    if iy0 < iy1 and ix0 < ix1:
        mask[iy0:iy1, ix0:ix1] = patch[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] > 0
    return mask, full_area, (iy0, max(iy1, iy0), ix0, max(ix1, ix0))


def _visible_ok(visible: np.ndarray, full_area: int, box: Tuple[int, int, int, int]) -> bool:
    """Whether a visible mask may be annotated: large enough, no holes, no small fragments."""
    y0, y1, x0, x1 = box
    crop = visible[y0:y1, x0:x1]
    area = int(crop.sum())
    if full_area <= 0 or area < _MIN_VISIBLE_FRACTION * full_area:
        return False
    crop = crop.astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    if count > 2:
        min_fragment = max(_MIN_FRAGMENT_PIXELS, _MIN_FRAGMENT_FRACTION * area)
        if stats[1:, cv2.CC_STAT_AREA].min() < min_fragment:
            return False
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(crop)
    cv2.drawContours(filled, contours, -1, 1, -1)
    return int(filled.sum()) - area <= _MAX_HOLE_FRACTION * area


def _mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """COCO polygons (pixel-corner coordinates) whose rasterisation is ``mask``.

    The outer contours are traced on a 2x upsampled mask, so that a polygon runs a quarter pixel
    inside the outer edges of the boundary pixels, every pixel centre a quarter pixel away from
    it; simplifying by less than that keeps the rasterisation (pycocotools) equal to ``mask``,
    as long as the mask has no holes.

    Args:
        mask: bool or uint8 HxW mask.

    Returns:
        one flat ``[x0, y0, x1, y1, ...]`` list per outer contour with at least 3 points and a
        non-zero area.
    """
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return []
    y0, x0 = int(ys.min()), int(xs.min())
    crop = mask[y0 : ys.max() + 1, x0 : xs.max() + 1].astype(np.uint8)
    crop = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    # pad so that contours touching the crop's border are traced like interior ones
    crop = cv2.copyMakeBorder(crop, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        contour = cv2.approxPolyDP(contour, 2 * _POLYGON_TOLERANCE, True)
        if len(contour) < 3 or cv2.contourArea(contour) <= 0:
            continue
        # upsampled pixel u (after removing the pad) has its centre at (u + 0.5) / 2 in the image
        points = (contour.reshape(-1, 2).astype(np.float64) - 1 + 0.5) / 2 + (x0, y0)
        polygons.append([float(v) for v in points.ravel()])
    return polygons


def _random_texture_amplitude(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    return (rng.uniform(low, high, 3) * rng.choice([-1.0, 1.0], 3)).astype(np.float32)


def _background(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """A random colour gradient, one or two textures, distractor lines and pixel noise.

    Returns:
        float32 HxWx3 RGB image, not clipped.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    t = xx * np.cos(theta) + yy * np.sin(theta)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    c0, c1 = rng.uniform(40, 215, (2, 3)).astype(np.float32)
    image = c0 + (c1 - c0) * t[..., None]

    num_textures = 1 + int(rng.random() < 0.35)
    for kind in rng.choice(3, size=num_textures, replace=False):
        if kind == 0:  # stripes
            period = rng.uniform(6, 28) * scale
            phi = rng.uniform(0, 2 * np.pi)
            u = xx * np.cos(phi) + yy * np.sin(phi)
            wave = np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
            image += wave[..., None] * _random_texture_amplitude(rng, 15, 35)
        elif kind == 1:  # rotated checkerboard
            cell = rng.uniform(6, 24) * scale
            phi = rng.uniform(0, np.pi / 2)
            u = xx * np.cos(phi) + yy * np.sin(phi)
            v = -xx * np.sin(phi) + yy * np.cos(phi)
            board = (np.floor(u / cell) + np.floor(v / cell)) % 2 * 2 - 1
            image += board[..., None] * _random_texture_amplitude(rng, 15, 30)
        else:  # blurred blobs
            grid = rng.uniform(8, 28) * scale
            gh, gw = int(math.ceil(height / grid)) + 1, int(math.ceil(width / grid)) + 1
            low = rng.standard_normal((gh, gw, 3)).astype(np.float32)
            blobs = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
            blobs = cv2.GaussianBlur(blobs, (0, 0), grid / 4)
            blobs /= max(float(blobs.std()), 1e-3)
            image += blobs * np.abs(_random_texture_amplitude(rng, 15, 30))

    if rng.random() < 0.5:  # thin distractor lines: background clutter that is not an object
        for _ in range(rng.integers(1, 6)):
            p = rng.uniform(0, 1, 4) * (width, height, width, height)
            p = np.round(p * 16).astype(int)
            colour = [float(v) for v in rng.uniform(0, 255, 3)]
            cv2.line(image, (p[0], p[1]), (p[2], p[3]), colour, 1, cv2.LINE_AA, 4)

    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(4, 10))
    return image


def _pick_colour(
    rng: np.random.Generator, background: np.ndarray, neighbours: List[np.ndarray]
) -> np.ndarray:
    """A random colour, re-drawn until it stands out from the background and overlapped shapes."""
    references = [background] + neighbours
    best, best_distance = None, -1.0
    for _ in range(_COLOUR_TRIES):
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        distance = min(float(np.linalg.norm(colour - ref)) for ref in references)
        if distance > best_distance:
            best, best_distance = colour, distance
        if distance >= _MIN_COLOUR_DISTANCE:
            break
    return best


def _place_shape(
    rng: np.random.Generator,
    shapes: List[_Shape],
    covered: np.ndarray,
    category_id: int,
    radius: float,
) -> Optional[Tuple[_Shape, List[np.ndarray]]]:
    """Find a position and rotation for a new top-most shape that obeys the visibility rules.

    Returns:
        the new shape and the new visible masks of ``shapes``, or None after
        ``_PLACEMENT_TRIES`` failed placements.
    """
    height, width = covered.shape
    max_covered = _MAX_COVERAGE * height * width
    for _ in range(_PLACEMENT_TRIES):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        angle = rng.uniform(0, 2 * np.pi)
        mask, full_area, box = _rasterize(category_id, cx, cy, radius, angle, height, width)
        shape = _Shape(category_id, mask, full_area, box)
        if not _visible_ok(mask, full_area, box):
            continue
        if np.count_nonzero(covered | mask) > max_covered:
            continue
        visibles, ok = [], True
        for other in shapes:
            y0, y1, x0, x1 = other.box
            if not (mask[y0:y1, x0:x1] & other.visible[y0:y1, x0:x1]).any():
                visibles.append(other.visible)
                continue
            visible = other.visible & ~mask
            if not _visible_ok(visible, other.full_area, other.box):
                ok = False
                break
            visibles.append(visible)
        if ok:
            return shape, visibles
    return None


def _render_image(
    rng: np.random.Generator, height: int, width: int, min_objects: int, max_objects: int
) -> Tuple[np.ndarray, List[_Shape]]:
    """Render one image.

    Returns:
        uint8 HxWx3 RGB image and its shapes in painting order (visible masks up to date).
    """
    scale = min(height, width) / _REFERENCE_SIZE
    background = _background(rng, height, width, scale)
    image = background.copy()
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    target = int(rng.integers(min_objects, max_objects + 1))
    shapes: List[_Shape] = []
    covered = np.zeros((height, width), bool)
    candidates = 0
    while len(shapes) < target and candidates < 4 * target:
        candidates += 1
        category_id = int(rng.integers(1, len(SYNTHETIC_CLASSES) + 1))
        radius = float(rng.uniform(*_RADIUS_RANGE)) * scale
        placed = _place_shape(rng, shapes, covered, category_id, radius)
        if placed is None:
            continue
        shape, visibles = placed
        overlapped = [s.colour for s in shapes if (s.mask & shape.mask).any()]
        for other, visible in zip(shapes, visibles):
            other.visible = visible
        covered |= shape.mask
        shape.colour = _pick_colour(rng, background[shape.mask].mean(axis=0), overlapped)

        # paint: flat colour + a linear shading gradient + pixel noise
        ys, xs = np.nonzero(shape.mask)
        phi = rng.uniform(0, 2 * np.pi)
        proj = (xx[ys, xs] - xs.mean()) * np.cos(phi) + (yy[ys, xs] - ys.mean()) * np.sin(phi)
        proj /= max(float(np.abs(proj).max()), 1.0)
        shading = rng.uniform(10, 30) * proj
        noise = rng.normal(0, rng.uniform(2, 6), (len(ys), 3))
        image[ys, xs] = shape.colour + shading[:, None] + noise
        shapes.append(shape)
    if len(shapes) < min_objects:
        logger.debug("placed %d of %d shapes (minimum %d)", len(shapes), target, min_objects)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), shapes


def _write_split(
    split: str,
    out_dir: str,
    num_images: int,
    height: int,
    width: int,
    seed: int,
    min_objects: int,
    max_objects: int,
    semantic: bool,
) -> Dict[str, Optional[str]]:
    split_dir = os.path.join(out_dir, split)
    image_root = os.path.join(split_dir, "images")
    sem_seg_root = os.path.join(split_dir, "sem_seg") if semantic else None
    for d in (image_root, sem_seg_root):
        if d is not None:
            os.makedirs(d, exist_ok=True)

    images, annotations, written = [], [], set()
    for index in range(num_images):
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
        image, shapes = _render_image(rng, height, width, min_objects, max_objects)
        image_id = index + 1
        stem = f"{image_id:06d}"
        file_name = stem + ".jpg"
        cv2.imwrite(
            os.path.join(image_root, file_name),
            cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY],
        )
        written.add(file_name)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})

        labels = np.zeros((height, width), np.uint8)
        for shape in shapes:
            labels[shape.visible] = shape.category_id
            ys, xs = np.nonzero(shape.visible)
            polygons = _mask_to_polygons(shape.visible)
            if not polygons:
                continue
            x0, y0 = int(xs.min()), int(ys.min())
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": shape.category_id,
                    "segmentation": polygons,
                    "area": int(len(ys)),
                    "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
                    "iscrowd": 0,
                }
            )
        if sem_seg_root is not None:
            cv2.imwrite(os.path.join(sem_seg_root, stem + ".png"), labels)
            written.add(stem + ".png")

    # files of an earlier, larger generation would confuse loaders that list the directories
    for d in (image_root, sem_seg_root):
        if d is None:
            continue
        for name in sorted(os.listdir(d)):
            if _FILE_PATTERN.match(name) and name not in written:
                os.remove(os.path.join(d, name))

    coco = {
        "info": {
            "description": "pvt_fpn_d2 synthetic shapes (circle, triangle, square) with occlusion",
            "generator": "pvt_fpn_d2.data.synthetic.generate_synthetic_coco",
            "version": "1.0",
            "split": split,
            "seed": seed,
            "num_images": num_images,
            "image_size": [height, width],
            "min_objects": min_objects,
            "max_objects": max_objects,
            "semantic": semantic,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "shape"}
            for i, name in enumerate(SYNTHETIC_CLASSES)
        ],
    }
    json_file = os.path.join(split_dir, "annotations.json")
    atomic_write_text(json_file, json.dumps(coco))
    num_instances = len(annotations)
    logger.info(
        "synthetic %s: %d images, %d instances in %s", split, num_images, num_instances, split_dir
    )
    return {"json_file": json_file, "image_root": image_root, "sem_seg_root": sem_seg_root}


def generate_synthetic_coco(
    out_dir: str,
    num_train: int = 300,
    num_val: int = 50,
    image_size: Union[int, Tuple[int, int]] = 160,
    seed: int = 0,
    min_objects: int = 2,
    max_objects: int = 8,
    semantic: bool = True,
) -> Dict[str, Dict[str, Optional[str]]]:
    """Write the synthetic shapes dataset (train and val splits) in COCO format.

    Layout, for each split in ("train", "val")::

        out_dir/{split}/images/000001.jpg ...
        out_dir/{split}/annotations.json
        out_dir/{split}/sem_seg/000001.png ...   (when ``semantic``)

    The semantic PNGs are single-channel uint8 label maps: 0 is background and ``k`` is category
    id ``k`` (``SYNTHETIC_CLASSES[k - 1]``) where that class is visible, so the semantic classes
    are ``("background",) + SYNTHETIC_CLASSES``. Numbered files of an earlier generation that this
    one does not write are removed from those folders.

    Args:
        out_dir: output folder, created if missing.
        num_train: number of training images.
        num_val: number of validation images.
        image_size: int for square images, or (height, width).
        seed: non-negative base seed. Image ``i`` of a split uses
            ``np.random.default_rng([seed, split_code, i])``, so each split does not depend on the
            other's size.
        min_objects: fewest shapes per image (a crowded image may rarely get fewer).
        max_objects: most shapes per image.
        semantic: also write the semantic label PNGs.

    Returns:
        dict: split name -> {"json_file": str, "image_root": str, "sem_seg_root": str or None}.
    """
    height, width = _as_hw(image_size)
    if num_train < 0 or num_val < 0:
        raise ValueError(f"num_train and num_val must be >= 0, got {num_train}, {num_val}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0 <= min_objects <= max_objects:
        raise ValueError(f"need 0 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    counts = {"train": num_train, "val": num_val}
    return {
        split: _write_split(
            split,
            out_dir,
            counts[split],
            height,
            width,
            int(seed),
            int(min_objects),
            int(max_objects),
            bool(semantic),
        )
        for split in _SPLITS
    }


def generate_synthetic_classification(
    out_dir: str,
    num_train: int = 300,
    num_val: int = 50,
    image_size: Union[int, Tuple[int, int]] = 96,
    seed: int = 0,
    min_objects: int = 1,
    max_objects: int = 3,
) -> Dict[str, str]:
    """Write a small image classification set in the ImageNet folder layout: the shapes images
    of :func:`generate_synthetic_coco`, each labelled with the class whose shapes cover the most
    pixels, at least 3 times more than any other class ("which shape dominates the image"), the
    classes in turn (balanced)::

        out_dir/{split}/{circle,triangle,square}/000001.png ...

    Returns:
        dict: split name -> its folder (one sub-folder per class, ``SYNTHETIC_CLASSES``).
    """
    height, width = _as_hw(image_size)
    if num_train < 0 or num_val < 0:
        raise ValueError(f"num_train and num_val must be >= 0, got {num_train}, {num_val}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out = {}
    for split, count in (("train", num_train), ("val", num_val)):
        root = os.path.join(out_dir, split)
        for name in SYNTHETIC_CLASSES:
            os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(1, count + 1):
            rng = np.random.default_rng([int(seed), _SPLIT_CODES[split], 1000 + i])
            wanted = (i - 1) % len(SYNTHETIC_CLASSES)  # balanced: image i is of class i mod 3
            for _ in range(500):  # renders until that class clearly dominates
                image, shapes = _render_image(rng, height, width, min_objects, max_objects)
                area = np.zeros(len(SYNTHETIC_CLASSES) + 1)
                for s in shapes:
                    area[s.category_id] += np.count_nonzero(s.visible)
                others = np.delete(area[1:], wanted)
                if area[1 + wanted] > 0 and area[1 + wanted] >= 3 * others.max():
                    break
            label = SYNTHETIC_CLASSES[int(np.argmax(area[1:]))]
            cv2.imwrite(os.path.join(root, label, f"{i:06d}.png"), image[:, :, ::-1])  # BGR
        out[split] = root
    return out


def generate_synthetic_depth(
    out_dir: str,
    num_train: int = 300,
    num_val: int = 50,
    image_size: Union[int, Tuple[int, int]] = 96,
    seed: int = 0,
    near: float = 2.0,
    far: float = 9.0,
) -> Dict[str, Dict[str, str]]:
    """Write a small monocular depth set in the NYU Depth v2 layout (RGB + 16-bit PNG depth in
    millimetres)::

        out_dir/{split}/images/000001.jpg   out_dir/{split}/depth/000001.png

    The scene is a slanted ground plane, ``near`` metres at the bottom row to ``far`` at the top,
    with the shapes of :func:`generate_synthetic_coco` standing in front of it, each at one depth
    that follows its size (the largest, 1 m; the smallest, 8 m): what a model can read from the
    image, so it can beat predicting the mean depth.

    Returns:
        dict: split -> {"image_root", "depth_root"}.
    """
    height, width = _as_hw(image_size)
    if num_train < 0 or num_val < 0:
        raise ValueError(f"num_train and num_val must be >= 0, got {num_train}, {num_val}")
    if seed < 0 or not 0 < near < far:
        raise ValueError(f"need seed >= 0 and 0 < near < far, got {seed}, {near}, {far}")
    scale = min(height, width) / _REFERENCE_SIZE
    r_min, r_max = (r * scale for r in _RADIUS_RANGE)
    rows = np.linspace(far, near, height, dtype=np.float64)[:, None]  # top far, bottom near
    out = {}
    for split, count in (("train", num_train), ("val", num_val)):
        image_root = os.path.join(out_dir, split, "images")
        depth_root = os.path.join(out_dir, split, "depth")
        os.makedirs(image_root, exist_ok=True)
        os.makedirs(depth_root, exist_ok=True)
        for i in range(1, count + 1):
            rng = np.random.default_rng([int(seed), _SPLIT_CODES[split], 2000 + i])
            image, shapes = _render_image(rng, height, width, 2, 6)
            depth = np.repeat(rows, width, axis=1)
            for s in shapes:  # painting order: later shapes are in front
                radius = math.sqrt(s.full_area / math.pi)
                t = min(max((radius - r_min) / (r_max - r_min), 0.0), 1.0)
                depth[s.visible] = 8.0 - 7.0 * t
            cv2.imwrite(
                os.path.join(image_root, f"{i:06d}.jpg"),
                image[:, :, ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY],
            )
            cv2.imwrite(
                os.path.join(depth_root, f"{i:06d}.png"),
                np.round(depth * 1000).astype(np.uint16),
            )
        out[split] = {"image_root": image_root, "depth_root": depth_root}
    return out
