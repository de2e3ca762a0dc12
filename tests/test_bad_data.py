"""Bad datasets and configuration mistakes: named, handled or stopped before training (#6)."""

import json
import logging
import subprocess
import sys

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from PIL import Image, ImageOps

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.utils.events import EventStorage

from pvt_fpn_d2 import PVTv2Backbone
from pvt_fpn_d2.config import apply_overrides
from pvt_fpn_d2.data import (
    BadImageError,
    DatasetError,
    DatasetMapper,
    check_coco_dataset,
    read_image,
    register_coco_json,
)
from pvt_fpn_d2.engine import check_classes

from .conftest import REPO, subprocess_env

H, W = 64, 80
_counter = iter(range(10**6))


def _dataset(tmp_path, num_images=3):
    """A valid tiny COCO dataset on disk; tests break one thing at a time."""
    (tmp_path / "images").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(num_images):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(
            tmp_path / "images" / f"{i}.jpg"
        )
        images.append({"id": i, "file_name": f"{i}.jpg", "height": H, "width": W})
        anns.append(
            {
                "id": i + 1,
                "image_id": i,
                "category_id": 1 + i % 2,
                "iscrowd": 0,
                "bbox": [10.0, 8.0, 30.0, 24.0],
                "area": 720.0,
                "segmentation": [[10.0, 8.0, 40.0, 8.0, 40.0, 32.0, 10.0, 32.0]],
            }
        )
    data = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    return data, tmp_path / "annotations.json", str(tmp_path / "images")


def _write(data, path):
    path.write_text(json.dumps(data))
    return str(path)


def _register_fails(data, path, images, match, error=DatasetError):
    json_file = _write(data, path) if data is not None else str(path)
    with pytest.raises(error, match=match):
        register_coco_json(f"bad_{next(_counter)}", json_file, images)


# ---------------------------------------------------------------- json-level problems


def test_missing_json(tmp_path):
    _, path, images = _dataset(tmp_path)
    _register_fails(None, path, images, "annotations.json' does not exist", FileNotFoundError)


def test_unreadable_json(tmp_path):
    _, path, images = _dataset(tmp_path)
    path.write_text('{"images": [')
    _register_fails(None, path, images, "is not valid JSON", ValueError)


def test_json_that_is_not_coco(tmp_path):
    _, path, images = _dataset(tmp_path)
    _register_fails(
        {"images": []},
        path,
        images,
        r"missing key\(s\) \['annotations', 'categories'\]",
        ValueError,
    )


def test_category_id_absent_from_categories(tmp_path):
    data, path, images = _dataset(tmp_path)
    data["annotations"][1]["category_id"] = 9
    _register_fails(data, path, images, r"annotation 2: category_id 9 is not in 'categories'")


def test_duplicate_image_ids(tmp_path):
    data, path, images = _dataset(tmp_path)
    data["images"][2]["id"] = 0
    _register_fails(data, path, images, "image 0: image id used by 2 images")


def test_duplicate_annotation_ids_are_renumbered(tmp_path):
    data, path, images = _dataset(tmp_path)
    data["annotations"][2]["id"] = 1
    json_file = _write(data, path)
    report = check_coco_dataset(json_file, images)
    assert report.fatal == []
    assert "annotations re-numbered 1..N: missing or repeated ids" in report.summary()
    name = register_coco_json(f"dup_{next(_counter)}", json_file, images)
    assert sum(len(d["annotations"]) for d in DatasetCatalog.get(name)) == 3
    gt = json.loads(open(MetadataCatalog.get(name).json_file).read())  # what evaluation reads
    assert sorted(a["id"] for a in gt["annotations"]) == [1, 2, 3]
    assert json.loads(open(json_file).read()) == data  # the user's file is untouched


def test_annotation_of_an_unknown_image(tmp_path):
    data, path, images = _dataset(tmp_path)
    data["annotations"][0]["image_id"] = 77
    _register_fails(data, path, images, "annotation 1: image_id 77 is not in 'images'")


def test_dataset_folder_that_does_not_exist(tmp_path):
    data, path, _ = _dataset(tmp_path)
    _register_fails(
        data, path, str(tmp_path / "nope"), "image folder .*nope' does not exist", FileNotFoundError
    )


def _five_problems(tmp_path):
    """A dataset with five problems at once: an unreadable image, a missing file, a duplicated
    image id, and one annotation (on the unreadable image) with an unknown category id, a box of
    negative width and a polygon of two points."""
    data, path, images = _dataset(tmp_path, num_images=4)
    (tmp_path / "images" / "1.jpg").write_bytes(b"not an image")
    (tmp_path / "images" / "2.jpg").unlink()
    data["images"][3]["id"] = 0  # 3.jpg takes 0.jpg's id (and its annotation follows)
    data["annotations"][3]["image_id"] = 0
    data["annotations"][1].update(
        category_id=7, bbox=[5.0, 5.0, -4.0, 10.0], segmentation=[[1.0, 1.0, 5.0, 5.0]]
    )
    return _write(data, path), images


FIVE_PROBLEMS = [
    "ERROR: image 0: image id used by 2 images; ids must be unique",
    r"ERROR: {images}/1.jpg: cannot read the image",
    r"ERROR: {images}/2.jpg: file not found in {images}",
    "ERROR: annotation 2: category_id 7 is not in 'categories' (ids [1, 2])",
    "warning: annotation 2: box [5.0, 5.0, -4.0, 10.0] has no area: the annotation is dropped",
    "warning: annotation 2: no polygon with 3 or more points: kept as a box",
]


def test_every_problem_is_named_in_one_pass(tmp_path, capsys):
    """Whatever comes first (a duplicated image id, an unreadable image), every image and every
    annotation is checked; each problem of one annotation is on a line of its own (#35)."""
    from pvt_fpn_d2.check_dataset import main as check_dataset

    json_file, images = _five_problems(tmp_path)
    expected = [line.format(images=images) for line in FIVE_PROBLEMS]
    assert check_dataset(["--json", json_file, "--images", images]) == 1
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    for line in expected:
        assert sum(x.startswith(line) for x in lines) == 1, (line, lines)
    assert lines[0].endswith("4 images, 4 annotations, 4 errors, 2 warnings"), lines[0]
    assert len([x for x in lines if x.startswith(("ERROR", "warning"))]) == 6, lines
    # registration refuses it, with the same list
    with pytest.raises(DatasetError) as e:
        register_coco_json(f"five_{next(_counter)}", json_file, images)
    refusal = [line.strip() for line in str(e.value).splitlines()]
    for line in expected:
        assert sum(x.startswith(line) for x in refusal) == 1, (line, refusal)


def test_many_problems_of_one_kind_are_one_line(tmp_path):
    data, path, images = _dataset(tmp_path, num_images=12)
    for i in range(12):
        (tmp_path / "images" / f"{i}.jpg").unlink()
    for a in data["annotations"]:
        a["category_id"] = 5
    report = check_coco_dataset(_write(data, path), images)
    assert len(report.fatal) == 24
    lines = report.summary().splitlines()
    assert lines[1].startswith(
        f"  ERROR: 12 x image files not found ({images}/0.jpg, {images}/1.jpg, "
    ), lines
    assert f"{images}/9.jpg, ...; e.g. file not found in {images}" in lines[1], lines
    assert lines[2].startswith(
        "  ERROR: 12 x annotations of categories not in 'categories' (annotation 1, annotation 2,"
    ), lines
    assert "e.g. category_id 5 is not in 'categories'" in lines[2], lines
    # a refusal shows at most `limit` lines of errors, then how many more
    short = report.summary(limit=1).splitlines()
    assert short[1] == lines[1] and short[2] == "  ... and 12 more errors", short


# ---------------------------------------------------------------- image files


def test_missing_image_file(tmp_path):
    data, path, images = _dataset(tmp_path)
    (tmp_path / "images" / "1.jpg").unlink()
    _register_fails(data, path, images, r"1\.jpg: file not found")


def test_corrupt_truncated_jpeg(tmp_path, caplog):
    data, path, images = _dataset(tmp_path)
    f = tmp_path / "images" / "2.jpg"
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) * 2 // 3])  # header intact, image data cut
    json_file = _write(data, path)
    report = check_coco_dataset(json_file, images, images="full")
    assert [p.where for p in report.fatal] == [str(f)]
    assert "cannot read the image" in report.fatal[0].message
    # the checker's command line reports it and fails
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pvt_fpn_d2.check_dataset",
            "--json",
            json_file,
            "--images",
            images,
            "--full",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
    )
    assert r.returncode == 1 and "2.jpg" in r.stdout and "FAILED" in r.stdout
    # registered with a header check only, training skips it with a warning naming the file
    name = register_coco_json(f"trunc_{next(_counter)}", json_file, images, check="header")
    record = next(d for d in DatasetCatalog.get(name) if d["file_name"].endswith("2.jpg"))
    mapper = DatasetMapper(is_train=True, augmentations=[], image_format="RGB")
    with caplog.at_level(logging.WARNING, logger="pvt_fpn_d2.data.mapper"):
        assert mapper(record) is None
    assert "Skipping an image in training" in caplog.text and "2.jpg" in caplog.text
    # evaluation cannot skip an image: a clear error naming it
    with pytest.raises(BadImageError, match=r"2\.jpg: cannot read"):
        DatasetMapper(is_train=False, augmentations=[], image_format="RGB")(record)
    # and check="full" refuses it before training
    with pytest.raises(DatasetError, match=r"2\.jpg: cannot read the image"):
        register_coco_json(f"trunc_{next(_counter)}", json_file, images, check="full")


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_grayscale_rgba_palette_and_16_bit_images_are_converted(tmp_path, mode):
    base = np.linspace(0, 255, H * W, dtype=np.float64).reshape(H, W)
    if mode == "I;16":
        img = Image.fromarray((base * 257).astype(np.uint16))  # full 16-bit range
    else:
        img = Image.fromarray(base.astype(np.uint8), mode="L").convert(mode)
    path = tmp_path / "x.png"
    img.save(path)
    arr = read_image(str(path), "RGB")
    assert arr.shape == (H, W, 3) and arr.dtype == np.uint8
    assert abs(int(arr.max()) - 255) <= 1 and int(arr.min()) == 0  # not clipped to white


def test_exif_rotated_image(tmp_path):
    data, path, images = _dataset(tmp_path)
    img = Image.open(tmp_path / "images" / "0.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: the model sees a W x H image
    img.save(tmp_path / "images" / "0.jpg", exif=exif)
    assert read_image(str(tmp_path / "images" / "0.jpg")).shape[:2] == (W, H)
    # the json still has the unrotated size: named, with the EXIF hint
    _register_fails(
        data, path, images, r"0\.jpg: the json says 64x80 .* is 80x64 after its EXIF rotation"
    )
    data["images"][0].update(height=W, width=H)  # fixed: accepted
    register_coco_json(f"exif_{next(_counter)}", _write(data, path), images)


def test_json_size_disagreeing_with_the_file(tmp_path):
    data, path, images = _dataset(tmp_path)
    data["images"][1]["width"] = 100
    _register_fails(
        data, path, images, r"1\.jpg: the json says 64x100 \(HxW\) but the image is 64x80"
    )


# ---------------------------------------------------------------- annotations


def _train_step(records, tmp_path):
    """One training step of a tiny Mask R-CNN on mapped records (the real mapper)."""
    cfg = LazyConfig.load(str(REPO / "configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py"))
    cfg.model.roi_heads.num_classes = 2
    model = instantiate(cfg.model).train()
    mapper = DatasetMapper(
        is_train=True,
        augmentations=[T.ResizeShortestEdge(64, 1333)],
        image_format="RGB",
        use_instance_mask=True,
    )
    batch = [mapper(r) for r in records]
    with EventStorage():
        losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total), losses
    total.backward()
    return batch


def test_bad_boxes_polygons_and_rle_are_dropped_or_clipped(tmp_path, caplog):
    data, path, images = _dataset(tmp_path)
    a = data["annotations"]
    a[0]["bbox"] = [10.0, 8.0, 0.0, 24.0]  # zero width
    extra = [
        {"bbox": [5.0, 5.0, -4.0, 10.0]},  # negative size
        {"bbox": [200.0, 200.0, 10.0, 10.0]},  # outside the image
        {"bbox": [70.0, 50.0, 30.0, 30.0]},  # partly outside: clipped
        {"segmentation": [[1.0, 1.0, 5.0, 5.0]]},  # a polygon of 2 points
        {"segmentation": []},  # empty segmentation
    ]
    for i, e in enumerate(extra):
        ann = dict(a[1], id=100 + i, segmentation=[[10.0, 8.0, 40.0, 8.0, 40.0, 32.0]])
        ann.update(e)
        a.append(ann)
    rle = mask_util.encode(np.asfortranarray(np.ones((10, 10), np.uint8)))  # wrong size
    a.append(dict(a[1], id=200, segmentation={"size": [10, 10], "counts": rle["counts"].decode()}))
    json_file = _write(data, path)
    report = check_coco_dataset(json_file, images)
    assert report.fatal == []
    text = "\n".join(map(str, report.problems))
    for expected in [
        "annotation 1: box [10.0, 8.0, 0.0, 24.0] has no area",
        "annotation 100: box [5.0, 5.0, -4.0, 10.0] has no area",
        "annotation 101: box [200.0, 200.0, 10.0, 10.0] is outside",
        "annotation 102: box [70.0, 50.0, 30.0, 30.0] extends outside",
        "annotation 103: no polygon with 3 or more points: kept as a box",
        "annotation 200: RLE mask of size [10, 10] on an image of [64, 80]",
    ]:
        assert expected in text
    # the two annotations without a usable mask stay as boxes, reported once
    assert "masks: 2 of 9 objects have a box and no mask" in report.summary()
    name = register_coco_json(f"annos_{next(_counter)}", json_file, images)
    records = DatasetCatalog.get(name)
    with caplog.at_level(logging.WARNING, logger="pvt_fpn_d2.data.mapper"):
        batch = _train_step(records[:2], tmp_path)
    assert "dropping an annotation whose RLE mask has size [10, 10]" in caplog.text
    boxes = batch[1]["instances"].gt_boxes.tensor
    assert len(boxes) > 0 and bool((boxes[:, 2:] > boxes[:, :2]).all())  # only real boxes left


def test_images_without_annotations_train_and_evaluate(tmp_path):
    data, path, images = _dataset(tmp_path)
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 1]
    name = register_coco_json(f"empty_{next(_counter)}", _write(data, path), images)
    records = DatasetCatalog.get(name)
    empty = [r for r in records if not r["annotations"]]
    assert len(empty) == 1
    batch = _train_step([empty[0], empty[0]], tmp_path)  # a batch of only empty images
    assert all(len(b["instances"]) == 0 for b in batch)
    _train_step(records, tmp_path)  # and mixed with annotated ones


@pytest.mark.parametrize(
    "size, small, extreme",
    [((20, 24), True, False), ((40, 480), False, True), ((16, 400), True, True)],
    ids=["small", "extreme-aspect", "both"],
)
def test_tiny_and_extreme_aspect_images_train(tmp_path, size, small, extreme):
    h, w = size
    (tmp_path / "images").mkdir()
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(tmp_path / "images" / "0.png")
    data = {
        "images": [{"id": 0, "file_name": "0.png", "height": h, "width": w}],
        "annotations": [
            {
                "id": 1,
                "image_id": 0,
                "category_id": 1,
                "iscrowd": 0,
                "area": 40.0,
                "bbox": [2.0, 2.0, 8.0, 5.0],
                "segmentation": [[2.0, 2.0, 10.0, 2.0, 10.0, 7.0, 2.0, 7.0]],
            }
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    json_file = _write(data, tmp_path / "a.json")
    warnings = "\n".join(map(str, check_coco_dataset(json_file, str(tmp_path / "images")).problems))
    assert ("upscaled" in warnings) == small, warnings
    assert (f"extreme aspect ratio {h}x{w}" in warnings) == extreme, warnings
    name = register_coco_json(f"tiny_{next(_counter)}", json_file, str(tmp_path / "images"))
    _train_step(DatasetCatalog.get(name) * 2, tmp_path)


# ---------------------------------------------------------------- configuration mistakes


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(
        ValueError, match="Unknown PVT-v2 variant 'pvt_v2_b7'. Valid names: pvt_v2_b0"
    ):
        PVTv2Backbone("pvt_v2_b7")


def test_num_classes_disagreeing_with_the_dataset(tmp_path):
    data, path, images = _dataset(tmp_path)
    cfg = LazyConfig.load(str(REPO / "configs/finetune/mask_rcnn_pvt_v2_b0_fpn_coco_json.py"))
    json_file = _write(data, path)
    cfg.dataset.update(
        train_json=json_file, train_images=images, val_json=json_file, val_images=images
    )
    cfg.model.roi_heads.num_classes = 5
    model = instantiate(cfg.model)
    with pytest.raises(
        ValueError,
        match=r"model has 5 classes \(model.roi_heads.num_classes\) but dataset 'coco_json_train' has 2",
    ):
        check_classes(cfg, model)


def test_val_classes_disagreeing_with_train(tmp_path):
    data, path, images = _dataset(tmp_path)
    cfg = LazyConfig.load(str(REPO / "configs/finetune/mask_rcnn_pvt_v2_b0_fpn_coco_json.py"))
    train_json = _write(data, path)
    data["categories"][1]["name"] = "c"
    val_json = _write(data, tmp_path / "val.json")
    cfg.dataset.update(
        train_json=train_json, train_images=images, val_json=val_json, val_images=images
    )
    cfg.dataloader.train.dataset.names.name = f"t_{next(_counter)}"
    cfg.dataloader.test.dataset.names.name = f"v_{next(_counter)}"
    with pytest.raises(
        ValueError, match=r"has classes \['a', 'b'\] but the test dataset .* has \['a', 'c'\]"
    ):
        check_classes(cfg, instantiate(cfg.model))


def test_override_of_a_key_that_does_not_exist():
    cfg = LazyConfig.load(str(REPO / "configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py"))
    with pytest.raises(
        KeyError, match=r"no key 'optimizer.learning_rate'. Did you mean optimizer.lr"
    ):
        apply_overrides(cfg, ["optimizer.learning_rate=0.1"])
    apply_overrides(cfg, ["optimizer.lr=0.1", "+train.note=hello"])  # explicit new key allowed
    assert cfg.optimizer.lr == 0.1 and cfg.train.note == "hello"


def test_overrides_fill_the_required_dataset_keys():
    # "???" values (must be given on the command line) are existing keys, list items too
    cfg = LazyConfig.load(str(REPO / "configs/finetune/mask_rcnn_pvt_v2_b0_fpn_coco_json.py"))
    apply_overrides(cfg, ["dataset.train_json=/data/t.json", "dataset.val_images=/data/val"])
    assert cfg.dataset.train_json == "/data/t.json" and cfg.dataset.val_images == "/data/val"
    with pytest.raises(KeyError, match="no key 'dataset.train_jsn'"):
        apply_overrides(cfg, ["dataset.train_jsn=/data/t.json"])


def test_missing_dataset_path_on_the_command_line_is_named(tmp_path):
    cfg = LazyConfig.load(str(REPO / "configs/finetune/mask_rcnn_pvt_v2_b0_fpn_coco_json.py"))
    with pytest.raises(Exception, match="dataset.train_json"):
        instantiate(cfg.model)


def test_training_evaluation_and_prediction_read_images_alike(tmp_path, tiny_dataset):
    """One reader: the train mapper, the test mapper and the predictor see the same pixels of a
    16-bit PNG, an EXIF-rotated JPEG, a palette PNG and a grayscale JPEG."""
    from detectron2.checkpoint import DetectionCheckpointer

    from pvt_fpn_d2.engine.predictor import Predictor

    from .conftest import tiny_config

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (H, W), dtype=np.uint8)
    files = {"16bit.png": Image.fromarray(base.astype(np.uint16) * 257)}
    files["palette.png"] = Image.fromarray(base).convert("P")
    files["gray.jpg"] = Image.fromarray(base, mode="L")
    for name, img in files.items():
        img.save(tmp_path / name)
    rotated = Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(tmp_path / "exif.jpg", exif=exif)

    names = [f"dataloader.{s}.dataset.names.name=reader_{s}" for s in ("train", "test")]
    cfg = LazyConfig.load(str(tiny_config(tmp_path, tiny_dataset, overrides=names)))
    model = instantiate(cfg.model)
    DetectionCheckpointer(model, str(tmp_path)).save("random")
    predictor = Predictor(cfg, str(tmp_path / "random.pth"))
    mappers = [  # no augmentation: nothing else changes the pixels
        DatasetMapper(is_train=is_train, augmentations=[], image_format="RGB")
        for is_train in (True, False)
    ]
    for name in ["16bit.png", "exif.jpg", "palette.png", "gray.jpg"]:
        path = str(tmp_path / name)
        expected = predictor.read(path)  # (H, W, 3) RGB
        # independent of the reader: the files' own pixels through PIL
        independent = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        if name != "16bit.png":  # PIL clips 16-bit values; the reader scales them
            assert np.array_equal(expected, independent), name
        else:
            assert np.array_equal(expected[:, :, 0], base), name
        for mapper in mappers:
            h, w = expected.shape[:2]
            out = mapper({"file_name": path, "height": h, "width": w, "annotations": []})
            assert np.array_equal(out["image"].permute(1, 2, 0).numpy(), expected), name
