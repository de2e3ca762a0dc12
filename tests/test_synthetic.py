"""The synthetic shapes dataset: determinism, COCO validity, sizes, occlusion, semantics, loading."""

import itertools
import json
import runpy
import sys
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from detectron2.data import MetadataCatalog
from detectron2.data.datasets import load_coco_json, load_sem_seg
from detectron2.structures import BoxMode

from pvt_fpn_d2.data import synthetic
from pvt_fpn_d2.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic_coco

from .conftest import REPO

SMALL = dict(num_train=12, num_val=4, image_size=128)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """12 train + 4 val images of 128 px, with semantic PNGs."""
    out = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic_coco(str(out), **SMALL)


def _load(json_file):
    with open(json_file) as f:
        return json.load(f)


def _by_image(coco):
    anns = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        anns[ann["image_id"]].append(ann)
    return anns


def _rasterize(ann, height, width):
    rles = mask_utils.frPyObjects(ann["segmentation"], height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def _boxes_overlap(a, b):
    """Whether two XYWH boxes share some area."""
    overlap_x = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    overlap_y = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return overlap_x > 0 and overlap_y > 0


def _read_split(paths):
    """(coco dict, {file_name: BGR image}, {file_name: label map or None})."""
    coco = _load(paths["json_file"])
    images, labels = {}, {}
    for img in coco["images"]:
        images[img["file_name"]] = cv2.imread(str(Path(paths["image_root"]) / img["file_name"]))
        labels[img["file_name"]] = None
        if paths["sem_seg_root"] is not None:
            png = Path(paths["sem_seg_root"]) / (Path(img["file_name"]).stem + ".png")
            labels[img["file_name"]] = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    return coco, images, labels


def _assert_same_split(a, b):
    assert Path(a["json_file"]).read_bytes() == Path(b["json_file"]).read_bytes()
    coco, images_a, labels_a = _read_split(a)
    _, images_b, labels_b = _read_split(b)
    assert images_a.keys() == images_b.keys() and len(images_a) == len(coco["images"])
    for name in images_a:
        assert images_a[name] is not None
        np.testing.assert_array_equal(images_a[name], images_b[name])
        np.testing.assert_array_equal(labels_a[name], labels_b[name])


def test_deterministic_and_splits_independent(tmp_path):
    a = generate_synthetic_coco(str(tmp_path / "a"), **SMALL)
    b = generate_synthetic_coco(str(tmp_path / "b"), **SMALL)
    for split in ("train", "val"):
        _assert_same_split(a[split], b[split])

    # a smaller train split changes neither val nor the train images both runs make
    c = generate_synthetic_coco(str(tmp_path / "c"), **{**SMALL, "num_train": 5})
    _assert_same_split(a["val"], c["val"])
    _, images_a, _ = _read_split(a["train"])
    _, images_c, _ = _read_split(c["train"])
    assert len(images_c) == 5
    for name, image in images_c.items():
        np.testing.assert_array_equal(image, images_a[name])

    # another seed gives other images
    d = generate_synthetic_coco(str(tmp_path / "d"), **{**SMALL, "seed": 1})
    _, images_d, _ = _read_split(d["val"])
    _, images_a_val, _ = _read_split(a["val"])
    assert not any(np.array_equal(images_d[n], images_a_val[n]) for n in images_d)

    # regenerating a smaller split in place leaves no stale files behind
    generate_synthetic_coco(str(tmp_path / "a"), **{**SMALL, "num_train": 5})
    assert len(list(Path(a["train"]["image_root"]).iterdir())) == 5
    assert len(list(Path(a["train"]["sem_seg_root"]).iterdir())) == 5


def test_coco_json_is_valid(dataset):
    assert set(dataset) == {"train", "val"}
    for split, num_images in (("train", SMALL["num_train"]), ("val", SMALL["num_val"])):
        paths = dataset[split]
        api = COCO(paths["json_file"])
        coco = _load(paths["json_file"])
        assert coco["info"]["seed"] == 0 and coco["info"]["image_size"] == [128, 128]
        assert sorted(api.getImgIds()) == list(range(1, num_images + 1))
        ann_ids = sorted(api.getAnnIds())
        assert ann_ids == list(range(1, len(ann_ids) + 1))
        assert len(ann_ids) >= 2 * num_images  # min_objects=2
        cats = api.loadCats(api.getCatIds())
        names = [(c["id"], c["name"]) for c in cats]
        assert names == [(1, "circle"), (2, "triangle"), (3, "square")]
        assert {a["category_id"] for a in api.loadAnns(ann_ids)} == {1, 2, 3}
        for img in api.loadImgs(api.getImgIds()):
            assert (img["height"], img["width"]) == (128, 128)
            assert (Path(paths["image_root"]) / img["file_name"]).is_file()
        for ann in api.loadAnns(ann_ids):
            img = api.loadImgs(ann["image_id"])[0]
            assert ann["iscrowd"] == 0 and ann["area"] > 0
            assert isinstance(ann["segmentation"], list) and ann["segmentation"]
            for polygon in ann["segmentation"]:
                assert len(polygon) >= 6 and len(polygon) % 2 == 0
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0
            assert 0 <= x and 0 <= y and x + w <= img["width"] and y + h <= img["height"]
            # the polygons rasterise to the visible mask that gave area and box
            mask = api.annToMask(ann).astype(bool)
            assert int(mask.sum()) == ann["area"]
            ys, xs = np.nonzero(mask)
            box = [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            assert [int(v) for v in box] == ann["bbox"]


def test_small_and_medium_objects(tmp_path):
    paths = generate_synthetic_coco(str(tmp_path), num_train=20, num_val=0, image_size=160)
    coco = _load(paths["train"]["json_file"])
    areas = np.array([a["area"] for a in coco["annotations"]])
    small = int((areas < 32**2).sum())
    medium = int(((areas >= 32**2) & (areas < 96**2)).sum())
    assert small >= 10 and medium >= 10, (small, medium)
    assert _load(paths["val"]["json_file"])["images"] == []


def test_occlusion_between_annotations(dataset):
    coco, _, _ = _read_split(dataset["train"])
    occluded_images = 0
    for image_id, anns in _by_image(coco).items():
        masks = [_rasterize(a, 128, 128) for a in anns]
        found = False
        for (a, ma), (b, mb) in itertools.combinations(zip(anns, masks), 2):
            # visible masks never overlap, yet their boxes may
            assert not (ma & mb).any()
            found |= _boxes_overlap(a["bbox"], b["bbox"])
        occluded_images += found
    assert occluded_images >= 3


def test_visibility_rules():
    """White-box: visible = full mask minus later masks, >= 50% visible, frequent occlusion."""
    occluded_images = 0
    for index in range(30):
        rng = np.random.default_rng([0, 0, index])
        image, shapes = synthetic._render_image(rng, 128, 128, 2, 8)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert 2 <= len(shapes) <= 8
        occluded = False
        for i, shape in enumerate(shapes):
            above = np.zeros((128, 128), bool)
            for later in shapes[i + 1 :]:
                above |= later.mask
            np.testing.assert_array_equal(shape.visible, shape.mask & ~above)
            assert shape.visible.sum() >= 0.5 * shape.full_area
            occluded |= bool((shape.mask & above).any())
        occluded_images += occluded
    assert occluded_images >= 0.3 * 30


def test_polygons_match_semantic_labels(dataset):
    for split in ("train", "val"):
        coco, _, labels = _read_split(dataset[split])
        files = {img["id"]: img["file_name"] for img in coco["images"]}
        for image_id, anns in _by_image(coco).items():
            label = labels[files[image_id]]
            assert label.shape == (128, 128) and label.dtype == np.uint8
            assert set(np.unique(label)) <= {0, 1, 2, 3}
            assert (label == 0).sum() > 0
            union = {k: np.zeros((128, 128), bool) for k in (1, 2, 3)}
            for ann in anns:
                mask = _rasterize(ann, 128, 128)
                assert (label[mask] == ann["category_id"]).mean() >= 0.9
                union[ann["category_id"]] |= mask
            for k, mask in union.items():
                sem = label == k
                if sem.any() or mask.any():
                    assert (sem & mask).sum() / (sem | mask).sum() >= 0.85


def test_textured_backgrounds(dataset):
    coco, images, labels = _read_split(dataset["train"])
    for img in coco["images"]:
        image = images[img["file_name"]].astype(np.float32)
        background = labels[img["file_name"]] == 0
        assert image[background].std(axis=0).min() > 8
        # not only pixel noise: structure survives a blur
        blurred = cv2.GaussianBlur(image, (0, 0), 1.5)
        assert blurred[background].std(axis=0).max() > 8


def test_detectron2_loads_it(dataset):
    paths = dataset["train"]
    name = f"synthetic_test_{uuid.uuid4().hex}"
    records = load_coco_json(paths["json_file"], paths["image_root"], name)
    assert len(records) == SMALL["num_train"]
    assert MetadataCatalog.get(name).thing_classes == list(SYNTHETIC_CLASSES)
    for record in records:
        assert Path(record["file_name"]).is_file()
        assert (record["height"], record["width"]) == (128, 128)
        assert record["annotations"]
        for ann in record["annotations"]:
            assert ann["bbox_mode"] == BoxMode.XYWH_ABS
            assert ann["category_id"] in (0, 1, 2)
            assert ann["segmentation"] and all(len(p) >= 6 for p in ann["segmentation"])
    sem_records = load_sem_seg(paths["sem_seg_root"], paths["image_root"], "png", "jpg")
    assert len(sem_records) == SMALL["num_train"]
    assert all(Path(r["sem_seg_file_name"]).is_file() for r in sem_records)


def test_cli(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli"
    argv = ["prepare_synthetic.py", "--out", str(out), "--num-train", "3", "--num-val", "2"]
    argv += ["--size", "96", "128", "--no-semantic"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(REPO / "datasets" / "prepare_synthetic.py"), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("train: 3 images,") and lines[1].startswith("val: 2 images,")
    assert not (out / "train" / "sem_seg").exists()
    coco = _load(out / "train" / "annotations.json")
    assert {(i["height"], i["width"]) for i in coco["images"]} == {(96, 128)}
    image = cv2.imread(str(out / "train" / "images" / coco["images"][0]["file_name"]))
    assert image.shape == (96, 128, 3)
