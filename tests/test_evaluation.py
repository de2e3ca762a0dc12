"""Model-zoo style COCO evaluation with faster-coco-eval equals pycocotools (#4)."""

import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator as D2COCOEvaluator
from detectron2.structures import Boxes, BoxMode, Instances

import pvt_fpn_d2.evaluation.coco as evaluation
from pvt_fpn_d2.data import register_coco_json
from pvt_fpn_d2.evaluation import COCOEvaluator


def _write_dataset(root, num_images=12, first_image_id=0, category_ids=(3, 7, 12), seed=0):
    """A COCO json with non-contiguous category ids, image id 0 and one empty image."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(num_images):
        h, w = 120, 160
        images.append({"id": first_image_id + i, "file_name": f"{i}.jpg", "height": h, "width": w})
        Image.new("RGB", (w, h), (90, 120, 150)).save(root / "images" / f"{i}.jpg")
        if i == num_images - 1:
            continue  # an image without annotations
        for _ in range(rng.integers(1, 6)):
            bw, bh = rng.integers(8, 60), rng.integers(8, 60)
            x, y = rng.integers(0, w - bw), rng.integers(0, h - bh)
            poly = [x, y, x + bw, y, x + bw * 0.8, y + bh, x, y + bh * 0.9]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": first_image_id + i,
                    "category_id": int(rng.choice(category_ids)),
                    "segmentation": [[float(v) for v in poly]],
                    "bbox": [float(x), float(y), float(bw), float(bh)],
                    "area": float(bw * bh * 0.85),
                    "iscrowd": 0,
                }
            )
    cats = [{"id": c, "name": f"class{c}"} for c in category_ids]
    (root / "images").mkdir(parents=True, exist_ok=True)
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return str(path), str(root / "images")


def _noisy_predictions(dataset_name, seed=0, extra=4):
    """Ground truth jittered, plus false positives: stored predictions to evaluate."""
    rng = np.random.default_rng(seed)
    pairs = []
    for d in DatasetCatalog.get(dataset_name):
        h, w = d["height"], d["width"]
        boxes, scores, classes, masks = [], [], [], []
        for a in d["annotations"]:
            b = BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
            boxes.append(np.array(b) + rng.normal(0, 2, 4))
            scores.append(rng.uniform(0.2, 1.0))
            classes.append(a["category_id"])
            m = mask_util.decode(mask_util.merge(mask_util.frPyObjects(a["segmentation"], h, w)))
            masks.append(np.roll(m.astype(bool), int(rng.integers(-2, 3)), axis=0))
        for _ in range(extra):
            x, y = rng.uniform(0, w - 30), rng.uniform(0, h - 30)
            boxes.append([x, y, x + 25, y + 25])
            scores.append(rng.uniform(0.0, 0.6))
            classes.append(int(rng.integers(0, 3)))
            m = np.zeros((h, w), bool)
            m[int(y) : int(y) + 25, int(x) : int(x) + 25] = True
            masks.append(m)
        inst = Instances((h, w))
        inst.pred_boxes = Boxes(torch.tensor(np.array(boxes), dtype=torch.float32))
        inst.scores = torch.tensor(scores, dtype=torch.float32)
        inst.pred_classes = torch.tensor(classes)
        inst.pred_masks = torch.from_numpy(np.array(masks))
        pairs.append(({"image_id": d["image_id"]}, {"instances": inst}))
    return pairs


def _recording(cls, ran, shift=0.0):
    """A subclass of the COCOeval class ``cls`` that notes each evaluation in ``ran`` and adds
    ``shift`` to the AP it summarises."""

    class Recording(cls):
        def evaluate(self):
            ran.append(cls.__name__)
            return super().evaluate()

        def summarize(self):
            super().summarize()
            self.stats[0] += shift

    return Recording


def test_the_evaluator_reports_what_faster_coco_eval_computed(tmp_path, monkeypatch):
    """The AP comes from faster-coco-eval, not from a silent fallback to pycocotools (which
    gives the same numbers): a faster-coco-eval whose AP is off by 0.5 moves ours by 50 points."""
    name = "eval_shifted"
    json_file, image_root = _write_dataset(tmp_path)
    register_coco_json(name, json_file, image_root)
    pairs = _noisy_predictions(name)
    kwargs = dict(distributed=False, tasks=("bbox",))
    reference = _evaluate(D2COCOEvaluator(name, use_fast_impl=False, **kwargs), pairs)
    ran = []
    shifted = _recording(evaluation.FasterCOCOeval, ran, shift=0.5)
    monkeypatch.setattr(evaluation, "FasterCOCOeval", shifted)
    ours = _evaluate(COCOEvaluator(name, **kwargs), pairs)
    assert ran == ["FasterCOCOeval"]
    assert ours["bbox"]["AP"] == pytest.approx(reference["bbox"]["AP"] + 50, abs=1e-9)


def _evaluate(evaluator, pairs):
    evaluator.reset()
    for inp, out in pairs:
        evaluator.process([inp], [out])
    return evaluator.evaluate()


@pytest.mark.parametrize("max_dets", [None, 20])
def test_fast_evaluation_equals_pycocotools(tmp_path, max_dets, monkeypatch):
    name = f"eval_equal_{max_dets}"
    json_file, image_root = _write_dataset(tmp_path)
    register_coco_json(name, json_file, image_root)
    pairs = _noisy_predictions(name)
    kwargs = dict(distributed=False, output_dir=str(tmp_path / "out"), max_dets_per_image=max_dets)
    # which COCOeval classes ran: faster-coco-eval's, and pycocotools' for the reference only
    ran = []
    monkeypatch.setattr(evaluation, "FasterCOCOeval", _recording(evaluation.FasterCOCOeval, ran))
    ours = _evaluate(COCOEvaluator(name, **kwargs), pairs)
    assert ran == ["FasterCOCOeval"] * 2, ran  # bbox and segm
    reference = _evaluate(D2COCOEvaluator(name, use_fast_impl=False, **kwargs), pairs)
    assert ran == ["FasterCOCOeval"] * 2
    assert set(ours) == {"bbox", "segm"}
    for task in ("bbox", "segm"):
        assert set(ours[task]) == set(reference[task])  # includes per-class "AP-class3" ...
        for k, v in reference[task].items():
            if np.isnan(v):
                assert np.isnan(ours[task][k]), (task, k)
            else:  # the docs' "identical"
                assert ours[task][k] == pytest.approx(v, rel=0, abs=1e-9), (task, k)
    # the jittered ground truth scores well but not perfectly: the numbers are real
    assert 30 < ours["bbox"]["AP"] < 100
    # predictions are saved as json, with the dataset's own (non-contiguous) category ids
    saved = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    assert {r["category_id"] for r in saved} <= {3, 7, 12}


def test_max_detections_per_image_is_honoured(tmp_path):
    name = "eval_maxdets"
    json_file, image_root = _write_dataset(tmp_path)
    register_coco_json(name, json_file, image_root)
    pairs = _noisy_predictions(name, extra=30)
    few = _evaluate(COCOEvaluator(name, distributed=False, max_dets_per_image=2), pairs)
    many = _evaluate(COCOEvaluator(name, distributed=False, max_dets_per_image=300), pairs)
    assert few["bbox"]["AP"] < many["bbox"]["AP"]


def test_registration_reads_classes_and_handles_ids(tmp_path):
    json_file, image_root = _write_dataset(tmp_path, first_image_id=0, category_ids=(5, 2, 40))
    name = register_coco_json("reg_ids", json_file, image_root)
    assert register_coco_json("reg_ids", json_file, image_root) == name  # idempotent
    meta = MetadataCatalog.get(name)
    assert meta.thing_classes == ["class2", "class5", "class40"]  # ordered by category id
    assert meta.thing_dataset_id_to_contiguous_id == {2: 0, 5: 1, 40: 2}
    dicts = DatasetCatalog.get(name)
    assert dicts[0]["image_id"] == 0
    assert {a["category_id"] for d in dicts for a in d["annotations"]} <= {0, 1, 2}
    assert any(not d["annotations"] for d in dicts)  # the image without annotations is kept
    assert meta.json_file == json_file


def test_registration_of_another_file_under_a_taken_name_is_an_error(tmp_path):
    a, images = _write_dataset(tmp_path / "a")
    b, _ = _write_dataset(tmp_path / "b")
    register_coco_json("reg_taken", a, images)
    with pytest.raises(ValueError, match="already registered"):
        register_coco_json("reg_taken", b, images)


def test_annotation_id_zero_is_evaluated_correctly(tmp_path):
    json_file, image_root = _write_dataset(tmp_path)
    data = json.loads(open(json_file).read())
    for a in data["annotations"]:
        a["id"] -= 1  # ids start at 0: pycocotools would treat annotation 0 as unmatched
    open(json_file, "w").write(json.dumps(data))
    name = register_coco_json("reg_ann0", json_file, image_root)
    # training and evaluation read one prepared copy with fresh annotation ids
    prepared = MetadataCatalog.get(name).json_file
    assert prepared != json_file
    assert 0 not in [a["id"] for a in json.loads(open(prepared).read())["annotations"]]
    pairs = _noisy_predictions(name)
    exact = []
    for d in DatasetCatalog.get(name):  # perfect predictions must give 100 AP
        inst = Instances((d["height"], d["width"]))
        boxes = [
            BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in d["annotations"]
        ]
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.ones(len(boxes))
        inst.pred_classes = torch.tensor(
            [a["category_id"] for a in d["annotations"]], dtype=torch.long
        )
        exact.append(({"image_id": d["image_id"]}, {"instances": inst}))
    res = _evaluate(
        COCOEvaluator(name, tasks=("bbox",), distributed=False),  # no output folder needed
        exact,
    )
    assert res["bbox"]["AP"] == pytest.approx(100.0)
    assert pairs  # the dataset loads


def _write_mixed_dataset(root, num_images=3, seed=0):
    """A COCO json as CVAT writes it: per image two polygon objects and two rectangles
    (``segmentation: []``), categories 1 and 2 on both kinds."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    (root / "images").mkdir(parents=True, exist_ok=True)
    h, w = 120, 160
    for i in range(num_images):
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "height": h, "width": w})
        Image.new("RGB", (w, h), (90, 120, 150)).save(root / "images" / f"{i}.jpg")
        for j in range(4):  # one per quadrant, so that no two overlap
            bw, bh = rng.integers(20, 50), rng.integers(20, 40)
            x = int(rng.integers(0, w // 2 - bw)) + (w // 2) * (j % 2)
            y = int(rng.integers(0, h // 2 - bh)) + (h // 2) * (j // 2)
            poly = [x, y, x + bw, y, x + bw * 0.7, y + bh, x, y + bh * 0.8]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": 1 + j % 2,
                    "segmentation": [[float(v) for v in poly]] if j < 2 else [],
                    "bbox": [float(x), float(y), float(bw), float(bh)],
                    "area": float(bw * bh),
                    "iscrowd": 0,
                }
            )
    cats = [{"id": 1, "name": "fire"}, {"id": 2, "name": "smoke"}]
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return {"json_file": str(path), "image_root": str(root / "images")}


@pytest.mark.parametrize("box_only", ["wrong_mask", "not_predicted"])
@pytest.mark.parametrize("impl", ["faster_coco_eval", "pycocotools"])
def test_mask_ap_ignores_objects_without_a_mask(tmp_path, box_only, impl):
    """Rectangles (no mask) beside polygons: mask AP ignores them, whatever is predicted there
    (a wrong mask: a 3x3 blob in the box's corner, ranked first; or nothing). Box AP counts
    them as any object. Evaluated with the config's evaluator."""
    from detectron2.config import LazyConfig, instantiate

    from .conftest import tiny_config

    split = _write_mixed_dataset(tmp_path / "data")
    cfg = LazyConfig.load(str(tiny_config(tmp_path, {"train": split, "val": split})))
    if impl == "pycocotools":
        cfg.dataloader.evaluator.use_fast_impl = False
    evaluator = instantiate(cfg.dataloader.evaluator)
    assert isinstance(evaluator, COCOEvaluator)
    name = instantiate(cfg.dataloader.test.dataset.names)
    truth = json.loads(open(split["json_file"]).read())
    contiguous = MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id
    h, w = 120, 160
    evaluator.reset()
    box_only_count = 0
    for image in truth["images"]:  # the json itself, not the loader's view of it
        boxes, scores, classes, masks = [], [], [], []
        for a in truth["annotations"]:
            if a["image_id"] != image["id"]:
                continue
            x, y, bw, bh = a["bbox"]
            m = np.zeros((h, w), bool)
            if a["segmentation"]:
                rle = mask_util.frPyObjects(a["segmentation"], h, w)
                m = mask_util.decode(mask_util.merge(rle)).astype(bool)
                score = 0.9
            else:
                box_only_count += 1
                if box_only == "not_predicted":
                    continue
                m[int(y) : int(y) + 3, int(x) : int(x) + 3] = True
                score = 1.0  # ahead of every true mask: a false positive would cost AP
            boxes.append([x, y, x + bw, y + bh])
            scores.append(score)
            classes.append(contiguous[a["category_id"]])
            masks.append(m)
        inst = Instances((h, w))
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.scores = torch.tensor(scores)
        inst.pred_classes = torch.tensor(classes)
        inst.pred_masks = torch.from_numpy(np.stack(masks))
        evaluator.process([{"image_id": image["id"]}], [{"instances": inst}])
    results = evaluator.evaluate()
    assert box_only_count == 6
    assert results["segm"]["AP"] == pytest.approx(100.0), results["segm"]
    if box_only == "wrong_mask":
        assert results["bbox"]["AP"] == pytest.approx(100.0), results["bbox"]
    else:  # box AP misses the rectangles nobody predicted
        assert results["bbox"]["AP"] < 80.0, results["bbox"]
