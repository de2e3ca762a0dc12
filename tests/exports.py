"""
COCO exports as annotation tools write them, built from each tool's documented format (small
images generated here; nothing downloaded). Sources: datumaro's COCO converter (CVAT "COCO
1.0"), label-studio-sdk's converter (Label Studio), wkentaro/labelme's and fcakyon's labelme2coco,
Roboflow's published exports.
"""

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

H, W = 64, 96


def _image(path: Path, seed: int, size=(H, W)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 80, (*size, 3), dtype=np.uint8)
    img[8:40, 10:50] += 120  # something to detect
    Image.fromarray(img).save(path)


def _objects(k: int) -> List[List[float]]:
    """Boxes [x, y, w, h] inside an H x W image."""
    return [[4.0 + 13 * (j % 6), 4.0 + 9 * (j // 6 % 6), 20.0, 14.0] for j in range(k)]


def _polygon(b) -> List[List[float]]:
    x, y, w, h = b
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _uncompressed_rle(b, size=(H, W)) -> Dict:
    """datumaro's mask_to_rle: column-major counts starting with the zero run, size [h, w]."""
    m = np.zeros(size, np.uint8)
    x, y, w, h = map(int, b)
    m[y : y + h, x : x + w] = 1
    flat = m.ravel(order="F")
    counts, last, run = [], 0, 0
    for v in flat:
        if v != last:
            counts.append(run)
            run, last = 0, v
        run += 1
    counts.append(run)
    return {"counts": counts, "size": list(size)}


def _compressed_rle(b, size=(H, W)) -> Dict:
    m = np.zeros(size, np.uint8)
    x, y, w, h = map(int, b)
    m[y : y + h, x : x + w] = 1
    rle = mask_util.encode(np.asfortranarray(m))
    return {"counts": rle["counts"].decode("ascii"), "size": list(size)}


def _flavour(json_file, images, category_ids, objects, crowd=0, masks=True, opts=()) -> Dict:
    """What a test needs of an export: its files, the config overrides it needs, what the
    loader must find (category ids, objects and crowd regions) and whether it has masks."""
    return dict(
        json=json_file,
        images=images,
        opts=list(opts),
        category_ids=category_ids,
        masks=masks,
        objects=objects,
        crowd=crowd,
    )


def _write(root: Path, data: Dict, name="annotations.json") -> str:
    path = root / name
    path.write_text(json.dumps(data))
    return str(path)


def roboflow(root: Path) -> Dict:
    """Roboflow COCO: ids from 0, placeholder category 0 (the project's name, supercategory
    "none", no annotations), real classes with it as supercategory, float boxes past the edge,
    ``extra`` fields, file names like ``x_jpg.rf.<hash>.jpg`` beside the json."""
    images, anns = [], []
    for i in range(4):
        fn = f"img{i}_jpg.rf.{i:08x}.jpg"
        _image(root / "train" / fn, i)
        images.append(
            {
                "id": i,
                "license": 1,
                "file_name": fn,
                "height": H,
                "width": W,
                "date_captured": "2024-01-01T00:00:00+00:00",
                "extra": {"name": f"img{i}.jpg"},
            }
        )
        for j, b in enumerate(_objects(3)):
            if j == 2:
                b = [W - 12.5, b[1] + 0.25, 20.75, 14.5]  # past the right edge
            anns.append(
                {
                    "id": len(anns),
                    "image_id": i,
                    "category_id": 1 + (i + j) % 2,
                    "bbox": b,
                    "area": round(b[2] * b[3], 3),
                    "segmentation": _polygon(b),
                    "iscrowd": 0,
                    "extra": {},
                }
            )
    data = {
        "info": {
            "year": "2024",
            "version": "1",
            "description": "Exported from roboflow.com",
            "contributor": "",
            "url": "https://public.roboflow.com",
            "date_created": "",
        },
        "licenses": [
            {"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}
        ],
        "categories": [
            {"id": 0, "name": "mushrooms", "supercategory": "none"},
            {"id": 1, "name": "cep", "supercategory": "mushrooms"},
            {"id": 2, "name": "chanterelle", "supercategory": "mushrooms"},
        ],
        "images": images,
        "annotations": anns,
    }
    js = _write(root / "train", data, "_annotations.coco.json")
    return _flavour(
        js, str(root / "train"), {1, 2}, 12, opts=["dataset.drop_empty_categories=True"]
    )


def cvat(root: Path) -> Dict:
    """CVAT "COCO 1.0" (datumaro): brush masks as uncompressed RLE with iscrowd 1, polygons,
    rectangles with ``segmentation: []``, ``attributes`` on every annotation, ids from 1,
    file_name with the subset folder under ``images/``."""
    images, anns = [], []
    for i in range(4):
        fn = f"val/{i:06d}.jpg"
        _image(root / "images" / fn, 10 + i)
        images.append(
            {
                "id": i + 1,
                "width": W,
                "height": H,
                "file_name": fn,
                "license": 0,
                "flickr_url": "",
                "coco_url": "",
                "date_captured": 0,
            }
        )
        for j, b in enumerate(_objects(3)):
            ann = {
                "id": len(anns) + 1,
                "image_id": i + 1,
                "category_id": 1 + j % 2,
                "bbox": b,
                "area": float(b[2] * b[3]),
                "iscrowd": 0,
                "attributes": {"occluded": False},
            }
            if j == 0:  # brush
                ann.update(segmentation=_uncompressed_rle(b), iscrowd=1)
            elif j == 1:  # polygon
                ann["segmentation"] = _polygon(b)
            else:  # rectangle
                ann.update(segmentation=[], attributes={"occluded": False, "rotation": 0.0})
            anns.append(ann)
    data = {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {
            "contributor": "",
            "date_created": "",
            "description": "",
            "url": "",
            "version": "",
            "year": "",
        },
        "categories": [
            {"id": 1, "name": "fire", "supercategory": ""},
            {"id": 2, "name": "smoke", "supercategory": ""},
        ],
        "images": images,
        "annotations": anns,
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    js = _write(root / "annotations", data, "instances_val.json")
    return _flavour(js, str(root / "images"), {1, 2}, 12)


def _label_studio_ann(ann_id: int, image_id: int, category_id: int, box, segmentation) -> Dict:
    """An annotation as Label Studio's COCO export writes it (with its ``ignore`` field)."""
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": segmentation,
        "bbox": box,
        "ignore": 0,
        "iscrowd": 0,
        "area": box[2] * box[3],
    }


def label_studio(root: Path) -> Dict:
    """Label Studio COCO: file_name ``images/<hash>-name.jpg`` (relative to the export folder,
    while the user points at the images folder) or the raw upload URL, width/height null for
    one image, ``ignore: 0``, categories and ids from 0 without supercategory, rectangles with
    ``segmentation: []`` and polygons."""
    images, anns = [], []
    names = [
        "images/1a2b3c4d-cat.jpg",
        "/data/upload/1/5e6f7a8b-dog.jpg",
        "images/9c0d1e2f-cow.jpg",
        "/data/local-files/?d=farm/3a4b5c6d-hen.jpg",
    ]
    for i, fn in enumerate(names):
        _image(root / "images" / fn.split("/")[-1], 20 + i)
        size = (None, None) if i == 2 else (W, H)
        images.append({"width": size[0], "height": size[1], "id": i, "file_name": fn})
        for j, b in enumerate(_objects(2)):
            anns.append(
                _label_studio_ann(len(anns), i, (i + j) % 2, b, _polygon(b) if j == 0 else [])
            )
    data = {
        "images": images,
        "categories": [{"id": 0, "name": "Animal"}, {"id": 1, "name": "Person"}],
        "annotations": anns,
        "info": {
            "year": 2024,
            "version": "1.0",
            "description": "",
            "contributor": "Label Studio",
            "url": "",
            "date_created": "2024-01-01 00:00:00",
        },
    }
    js = _write(root, data, "result.json")
    return _flavour(js, str(root / "images"), {0, 1}, 8)


def label_studio_annotators(root: Path, same_size: bool = True) -> Dict:
    """Label Studio COCO of a project with two annotators: one image entry per annotation, so
    ``images/1a2b3c4d-cat.jpg`` is listed twice (ids 0 and 2), each entry with its annotator's
    objects; with ``same_size=False`` the second entry has width and height swapped."""
    entries = [
        ("images/1a2b3c4d-cat.jpg", _objects(2)),
        ("images/5e6f7a8b-dog.jpg", _objects(1)),
        ("images/1a2b3c4d-cat.jpg", _objects(5)[2:]),  # the other annotator's objects
    ]
    images, anns = [], []
    for i, (fn, boxes) in enumerate(entries):
        _image(root / "images" / fn.split("/")[-1], 50 + len(fn))
        size = (H, W) if same_size or i < 2 else (W, H)
        images.append({"width": size[1], "height": size[0], "id": i, "file_name": fn})
        for b in boxes:
            anns.append(_label_studio_ann(len(anns), i, len(anns) % 2, b, _polygon(b)))
    data = {
        "images": images,
        "categories": [{"id": 0, "name": "Animal"}, {"id": 1, "name": "Person"}],
        "annotations": anns,
        "info": {"year": 2024, "version": "1.0", "contributor": "Label Studio"},
    }
    js = _write(root, data, "result.json")
    return _flavour(js, str(root / "images"), {0, 1}, 6)


def keypoints(root: Path) -> Dict:
    """Keypoint annotations (CVAT's "COCO Keypoints 1.0", COCO person keypoints): ``keypoints``
    (x, y, visibility triples) and ``num_keypoints``, a bbox around the points, no
    ``segmentation`` and no ``area``; the one category is CVAT's "default" skeleton."""
    images, anns = [], []
    for i in range(2):
        _image(root / "images" / f"{i}.jpg", 60 + i)
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "height": H, "width": W})
        for x, y, w, h in _objects(2):
            points = [x, y, 2, x + w, y, 2, x + w / 2, y + h, 1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "iscrowd": 0,
                    "keypoints": points,
                    "num_keypoints": 3,
                    "bbox": [x, y, w, h],
                }
            )
    data = {
        "images": images,
        "annotations": anns,
        "categories": [
            {
                "id": 1,
                "name": "default",
                "supercategory": "",
                "keypoints": ["1", "2", "3"],
                "skeleton": [[1, 2], [2, 3]],
            }
        ],
    }
    js = _write(root, data)
    return _flavour(js, str(root / "images"), {1}, 4, masks=False)


def labelme(root: Path) -> Dict:
    """labelme -> COCO (labelme2coco): 1-based image and annotation ids, float areas, a
    ``_background_`` category with no annotations, file_name ``JPEGImages/x.jpg``."""
    images, anns = [], []
    for i in range(4):
        _image(root / "JPEGImages" / f"x{i}.jpg", 30 + i)
        images.append(
            {
                "license": 0,
                "url": None,
                "file_name": f"JPEGImages/x{i}.jpg",
                "height": H,
                "width": W,
                "date_captured": None,
                "id": i + 1,
            }
        )
        for j, b in enumerate(_objects(2)):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": 1 + j,
                    "segmentation": _polygon(b),
                    "area": float(b[2] * b[3]) - 0.5,
                    "bbox": [float(v) for v in b],
                    "iscrowd": 0,
                }
            )
    data = {
        "info": {
            "description": None,
            "url": None,
            "version": None,
            "year": 2024,
            "contributor": None,
            "date_created": "2024-01-01",
        },
        "licenses": [{"url": None, "id": 0, "name": None}],
        "images": images,
        "type": "instances",
        "annotations": anns,
        "categories": [
            {"supercategory": None, "id": 0, "name": "_background_"},
            {"supercategory": None, "id": 1, "name": "apple"},
            {"supercategory": None, "id": 2, "name": "pear"},
        ],
    }
    js = _write(root, data)
    return _flavour(js, str(root), {1, 2}, 8, opts=["dataset.drop_empty_categories=True"])


def crowd_rle(root: Path) -> Dict:
    """COCO with compressed-RLE ``iscrowd: 1`` regions beside polygon objects."""
    data = _plain(root, 40)
    for a in data["annotations"][::3]:
        a.update(iscrowd=1, segmentation=_compressed_rle(a["bbox"]))
    js = _write(root, data)
    return _flavour(js, str(root / "images"), {1, 2}, 8, crowd=4)


def boxes_only(root: Path) -> Dict:
    """Boxes-only COCO: ``segmentation: []`` or absent."""
    data = _plain(root, 50)
    for k, a in enumerate(data["annotations"]):
        if k % 2:
            a["segmentation"] = []
        else:
            del a["segmentation"]
    js = _write(root, data)
    return _flavour(js, str(root / "images"), {1, 2}, 12, masks=False)


def missing_fields(root: Path) -> Dict:
    """No ``area``, no ``iscrowd``, no ``width``/``height``."""
    data = _plain(root, 60)
    for a in data["annotations"]:
        del a["area"], a["iscrowd"]
    for im in data["images"]:
        del im["width"], im["height"]
    js = _write(root, data)
    return _flavour(js, str(root / "images"), {1, 2}, 12)


def odd_ids(root: Path) -> Dict:
    """Image ids that are large integers and strings, category ids 3, 7, 12."""
    data = _plain(root, 70, cats=(3, 7, 12))
    new_ids = [2**40 + 5, "frame_0001", "a7f3", 10**12]
    remap = {im["id"]: new for im, new in zip(data["images"], new_ids)}
    for im in data["images"]:
        im["id"] = remap[im["id"]]
    for a in data["annotations"]:
        a["image_id"] = remap[a["image_id"]]
    js = _write(root, data)
    return _flavour(js, str(root / "images"), {3, 7, 12}, 12)


def upper_case(root: Path) -> Dict:
    """Files named ``IMG_0001.JPG`` while the json says ``IMG_0001.jpg`` (and one ``.PNG`` that
    the json names as it is)."""
    data = _plain(root, 80)
    for k, im in enumerate(data["images"]):
        src = root / "images" / im["file_name"]
        ext = ".PNG" if k == 0 else ".JPG"
        dst = root / "images" / f"IMG_{k:04d}{ext}"
        Image.open(src).save(dst, format="PNG" if k == 0 else "JPEG")
        src.unlink()
        im["file_name"] = dst.name if k == 0 else f"IMG_{k:04d}.jpg"
    js = _write(root, data)
    return _flavour(js, str(root / "images"), {1, 2}, 12)


def _plain(root: Path, seed: int, cats=(1, 2), num_images=4, per_image=3) -> Dict:
    images, anns = [], []
    for i in range(num_images):
        fn = f"{i}.jpg"
        _image(root / "images" / fn, seed + i)
        images.append({"id": i + 1, "file_name": fn, "height": H, "width": W})
        for j, b in enumerate(_objects(per_image)):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": cats[(i + j) % len(cats)],
                    "bbox": b,
                    "area": b[2] * b[3],
                    "segmentation": _polygon(b),
                    "iscrowd": 0,
                }
            )
    return {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c, "name": f"class{c}"} for c in cats],
    }


def dense(root: Path, num_objects: int = 320) -> Dict:
    """One image of 256x256 px with ``num_objects`` small objects, one with a few."""
    size = (256, 256)
    images, anns = [], []
    for i, k in enumerate([num_objects, 3]):
        fn = f"{i}.jpg"
        _image(root / "images" / fn, 90 + i, size=size)
        images.append({"id": i + 1, "file_name": fn, "height": size[0], "width": size[1]})
        for j in range(k):
            b = [float(1 + 14 * (j % 18)), float(1 + 14 * (j // 18)), 10.0, 8.0]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": 1 + j % 2,
                    "bbox": b,
                    "area": 80.0,
                    "segmentation": _polygon(b),
                    "iscrowd": 0,
                }
            )
    data = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    js = _write(root, data)
    return _flavour(js, str(root / "images"), {1, 2}, 323)


FLAVOURS = {
    "roboflow": roboflow,
    "cvat": cvat,
    "label_studio": label_studio,
    "labelme": labelme,
    "crowd_rle": crowd_rle,
    "boxes_only": boxes_only,
    "missing_fields": missing_fields,
    "odd_ids": odd_ids,
    "upper_case": upper_case,
}
