"""predictions.json of tools/predict.py scored against the user's own json (the json's image ids),
and prediction outputs that cannot be written (#35)."""

import contextlib
import errno
import io
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog

from pvt_fpn_d2.engine.checkpoint import OutputWriteError
from pvt_fpn_d2.engine.predictor import Predictor, dataset_image_ids, run_prediction

from .conftest import REPO, run_tool, subprocess_env, tiny_config

# the val json's image ids, renumbered: neither 1..N nor in the order of the file names
NEW_IDS = {1: 907, 2: 42, 3: 513}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, tiny_dataset):
    """A tiny Mask R-CNN config whose val json has ids of its own, and a checkpoint of its
    random weights."""
    tmp = tmp_path_factory.mktemp("predictions_json")
    val = json.loads(open(tiny_dataset["val"]["json_file"]).read())
    for im in val["images"]:
        im["id"] = NEW_IDS[im["id"]]
    for a in val["annotations"]:
        a["image_id"] = NEW_IDS[a["image_id"]]
    val_json = tmp / "val.json"
    val_json.write_text(json.dumps(val))
    dataset = dict(tiny_dataset, val=dict(tiny_dataset["val"], json_file=str(val_json)))
    config = tiny_config(tmp, dataset)
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(str(config)).model)
    checkpoint = tmp / "model.pth"
    torch.save({"model": model.state_dict()}, checkpoint)
    return config, checkpoint, dataset


def _pycocotools_ap(val_json, predictions, iou_type):
    """AP of predictions.json's annotations against the json, as a user scores them."""
    gt = COCO(str(val_json))
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(gt, gt.loadRes([dict(a) for a in predictions]), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats * 100


def test_predictions_json_scores_against_the_users_json(model_files, tmp_path):
    config, checkpoint, dataset = model_files
    cfg = LazyConfig.load(str(config))
    predictor = Predictor(cfg, str(checkpoint))
    outputs, last, read, predict = {}, {}, predictor.read, predictor.predict

    def reading(path):  # each image's outputs are kept, to evaluate the same ones
        last["path"] = str(path)
        return read(path)

    def predicting(image):
        outputs[last["path"]] = out = predict(image)
        return out

    predictor.read, predictor.predict = reading, predicting
    val = dataset["val"]
    run_prediction(predictor, [val["image_root"]], str(tmp_path / "pred"), score_threshold=0.0)
    predictions = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    user_json = json.loads(open(val["json_file"]).read())
    assert [(im["id"], im["file_name"]) for im in predictions["images"]] == [
        (im["id"], im["file_name"]) for im in user_json["images"]
    ]  # 907, 42, 513, in the order of the (sorted) files

    # the project's evaluator on the same outputs, each given the image_id of the dataset dicts
    # that detectron2's load_coco_json reads (not the lookup predict.py makes)
    evaluator = instantiate(cfg.dataloader.evaluator)
    evaluator.reset()
    for d in DatasetCatalog.get(instantiate(cfg.dataloader.test.dataset.names)):
        evaluator.process([d], [outputs[d["file_name"]]])
    results = evaluator.evaluate()
    assert results["bbox"]["AP"] > 0  # random weights, threshold 0: some boxes hit
    for iou_type in ("bbox", "segm"):
        stats = _pycocotools_ap(val["json_file"], predictions["annotations"], iou_type)
        assert stats[0] == pytest.approx(results[iou_type]["AP"], abs=1e-9), iou_type
        assert stats[1] == pytest.approx(results[iou_type]["AP50"], abs=1e-9), iou_type


def _image(path, h, w, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8))
    return path


def _found(cfg, files):
    return dataset_image_ids(cfg, files, [cv2.imread(str(f)).shape[:2] for f in files])


def test_images_are_found_by_path_or_unique_name_and_the_others_numbered(model_files, tmp_path):
    config, _, dataset = model_files
    cfg = LazyConfig.load(str(config))
    val, train = dataset["val"]["image_root"], dataset["train"]["image_root"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(os.path.join(val, "000003.jpg"), elsewhere)  # a copy: found by its name
    files = [
        os.path.join(val, "000002.jpg"),
        str(elsewhere / "000003.jpg"),
        str(_image(elsewhere / "photo.jpg", 96, 96, 0)),
        str(_image(elsewhere / "000001.jpg", 64, 80, 1)),  # the name of a val image, not its size
    ]
    found = _found(cfg, files)
    assert found.ids == [42, 513, 908, 909]
    assert found.file_names == ["000002.jpg", "000003.jpg", files[2], files[3]]
    assert found.message == (
        f"2 of 4 images are in 'coco_json_val' ({dataset['val']['json_file']}; 1 by file name "
        f"outside {val}): their json ids are used; the others are numbered from 908 on (after "
        "the json's largest image id)."
    )

    # training images (the val json has the same names and sizes): found by their path in the
    # training dataset, not by their names in the test one
    found = _found(cfg, [os.path.join(train, f) for f in ("000004.jpg", "000001.jpg")])
    assert found.ids == [4, 1] and found.dataset == "coco_json_train"
    assert found.message.startswith("2 of 2 images are in 'coco_json_train' (")


def test_images_in_no_dataset_keep_1_to_n_and_the_tool_says_so(model_files, tmp_path):
    config, checkpoint, _ = model_files
    photos = tmp_path / "photos"
    _image(photos / "b_street.jpg", 72, 120, 2)
    _image(photos / "a_garden.jpg", 100, 64, 3)
    out = tmp_path / "pred"
    r = run_tool("tools/predict.py", "--config-file", config, "--checkpoint", checkpoint,
                 "--input", photos, "--output", out, "--confidence-threshold", "0.0")  # fmt: skip
    assert "0 of 2 images are in 'coco_json_val': they are numbered 1..2." in r.stdout, r.stdout[
        -3000:
    ]
    predictions = json.loads((out / "predictions.json").read_text())
    assert [(im["id"], im["file_name"]) for im in predictions["images"]] == [
        (1, str(photos / "a_garden.jpg")),
        (2, str(photos / "b_street.jpg")),
    ]
    assert {a["image_id"] for a in predictions["annotations"]} == {1, 2}


class _NotCalled:
    """A predictor that must not be reached."""

    cfg = None

    def read(self, path):
        raise AssertionError(f"{path} was read: the output folder was not checked first")


def test_a_read_only_output_folder_stops_before_predicting(model_files, tmp_path, monkeypatch):
    _, _, dataset = model_files
    out = tmp_path / "pred"
    out.mkdir()
    real = os.open

    def read_only(path, flags, *args, **kwargs):  # root writes anywhere: simulated
        if str(path).startswith(str(out)) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(OutputWriteError) as info:
        run_prediction(_NotCalled(), [dataset["val"]["image_root"]], str(out))
    assert str(info.value) == (
        f"Cannot write the predictions into {out}: read-only file system [EROFS]. Make {out} "
        "writable (or write to another folder), then run the prediction again."
    )


def test_an_output_folder_under_a_file_is_named_by_the_tool(model_files, tmp_path):
    config, checkpoint, dataset = model_files
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    out = tmp_path / "notes.txt" / "pred"
    r = subprocess.run(
        [sys.executable, str(REPO / "tools/predict.py"), "--config-file", str(config),
         "--checkpoint", str(checkpoint), "--input", dataset["val"]["image_root"],
         "--output", str(out)],
        capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=600,
    )  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        f"pvt_fpn_d2.engine.checkpoint.OutputWriteError: Cannot write the predictions into "
        f"{out}: a part of the path is a file, not a folder [ENOTDIR]. Choose a path whose "
        "folders are folders, then run the prediction again."
    ), r.stderr[-3000:]


def test_a_picture_on_a_full_disk_stops_with_its_name(model_files, tmp_path):
    config, checkpoint, dataset = model_files
    out = tmp_path / "pred"
    out.mkdir()
    (out / "000002.jpg").symlink_to("/dev/full")  # the kernel's own ENOSPC for that picture
    predictor = Predictor(LazyConfig.load(str(config)), str(checkpoint))
    with pytest.raises(OutputWriteError) as info:
        run_prediction(predictor, [dataset["val"]["image_root"]], str(out))
    assert str(info.value) == (
        f"Cannot write picture {out / '000002.jpg'}: disk full (no space left on the device) "
        "[ENOSPC]. The outputs of 1 of the 3 images were written before it. Free space on the "
        f"disk of {out} (or write to another disk), then run the prediction again."
    )
    assert sorted(os.listdir(out)) == ["000001.jpg", "000002.jpg"]  # stopped there
