"""One parse per json (#16): the registration, the dataset dicts and the evaluator's ground truth
come from one read of the file, and give what detectron2's own readers give from the file."""

import json
import os

import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from pvt_fpn_d2.data import coco_json_num_classes, register_coco_json
from pvt_fpn_d2.evaluation import COCOEvaluator

from . import exports


@pytest.fixture
def parses(monkeypatch):
    """The json files parsed, by path, counted wherever json.load is called (the project's
    reader and pycocotools' COCO alike)."""
    counts = {}
    real = json.load

    def counting(f, *args, **kwargs):
        name = os.path.abspath(getattr(f, "name", "?"))
        counts[name] = counts.get(name, 0) + 1
        return real(f, *args, **kwargs)

    monkeypatch.setattr(json, "load", counting)
    return counts


def _evaluate_ground_truth(evaluator, name):
    """An evaluation whose detections are the ground-truth boxes (pycocotools' COCOeval writes
    into the ground truth it is given)."""
    evaluator.reset()
    for d in DatasetCatalog.get(name):
        dets = [
            {"image_id": d["image_id"], "category_id": a["category_id"], "bbox": a["bbox"]}
            for a in d["annotations"]
        ]
        for det in dets:
            det["score"] = 1.0
        evaluator._predictions.append({"image_id": d["image_id"], "instances": dets})
    return evaluator.evaluate()


@pytest.mark.parametrize("flavour", ["clean", "roboflow", "cvat"])
def test_a_json_is_parsed_once_and_read_as_detectron2_reads_the_file(
    flavour, tmp_path, tiny_dataset, parses
):
    if flavour == "clean":  # nothing to normalise: the user's file is the one read
        json_file = str(tmp_path / "val.json")  # a file no other test has read in this process
        with open(tiny_dataset["val"]["json_file"]) as f, open(json_file, "w") as out:
            out.write(f.read())
        images = tiny_dataset["val"]["image_root"]
        opts = {}
    else:
        ds = exports.FLAVOURS[flavour](tmp_path)
        json_file, images = ds["json"], ds["images"]
        opts = {"drop_empty_categories": True} if flavour == "roboflow" else {}
    name = f"once_{flavour}_{tmp_path.name}"
    coco_json_num_classes(json_file, **opts)  # what a config does first
    register_coco_json(name, json_file, images, **opts)
    register_coco_json(name, json_file, images, **opts)  # the test loader's and evaluator's node
    dicts = DatasetCatalog.get(name)
    evaluator = COCOEvaluator(name, tasks=("bbox",), output_dir=None, use_fast_impl=False)
    read = MetadataCatalog.get(name).json_file  # the user's file or the prepared copy
    assert (read == json_file) == (flavour == "clean")
    assert parses == {os.path.abspath(json_file): 1}, parses

    # the same dicts and ground truth as detectron2 reading the file (an independent path)
    assert dicts == load_coco_json(read, images, f"{name}_file")
    assert evaluator._coco_api.dataset == json.load(open(read))
    # an evaluation (pycocotools writes "ignore" and RLE masks into its ground truth) leaves
    # the training data as it was
    _evaluate_ground_truth(evaluator, name)
    assert "ignore" in evaluator._coco_api.dataset["annotations"][0]
    assert DatasetCatalog.get(name) == dicts
    assert COCOEvaluator(name, output_dir=None)._coco_api.dataset == json.load(open(read))


def test_a_changed_file_is_read_again(tmp_path, tiny_dataset, parses):
    with open(tiny_dataset["val"]["json_file"]) as f:
        data = json.load(f)
    path = tmp_path / "val.json"
    path.write_text(json.dumps(data))
    images = tiny_dataset["val"]["image_root"]
    register_coco_json(f"changed_{tmp_path.name}", str(path), images)
    del data["annotations"][0]
    path.write_text(json.dumps(data))
    os.utime(path, (1, 1))  # a new modification time, whatever the file system's resolution
    evaluator = COCOEvaluator(f"changed_{tmp_path.name}", output_dir=None)
    assert len(evaluator._coco_api.dataset["annotations"]) == len(data["annotations"])
