"""Exports of the annotation tools people use: checked, trained, evaluated and predicted (#14)."""

import json
import math
import re

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from pvt_fpn_d2.check_dataset import main as check_dataset
from pvt_fpn_d2.data.exports import detect_tool
from pvt_fpn_d2.engine.predictor import Predictor, run_prediction

from . import exports
from .conftest import metrics, run_train_net, tiny_config

BOX_CONFIG = "faster_rcnn_pvt_v2_b0_fpn_coco_json.py"


def _config(tmp_path, flavour, ds, config="mask_rcnn_pvt_v2_b0_fpn_coco_json.py", **train):
    split = {"json_file": ds["json"], "image_root": ds["images"]}
    names = [
        f"dataloader.train.dataset.names.name=train_{flavour}_{config[:6]}",
        f"dataloader.test.dataset.names.name=val_{flavour}_{config[:6]}",
    ]
    train = dict(dict(max_iter=2, eval_period=2), **train)
    return tiny_config(
        tmp_path, {"train": split, "val": split}, config, overrides=ds["opts"] + names, **train
    )


def _ground_truth_as_predictions(name, with_masks):
    """Each image's (non-crowd) objects, as the training data loader reads them, as detections."""
    pairs = []
    for d in DatasetCatalog.get(name):
        h, w = d["height"], d["width"]
        annos = [a for a in d["annotations"] if not a.get("iscrowd", 0)]
        inst = Instances((h, w))
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.linspace(1.0, 0.5, len(annos))
        inst.pred_classes = torch.tensor([a["category_id"] for a in annos], dtype=torch.long)
        if with_masks:
            masks = []
            for a in annos:
                segm = a.get("segmentation")
                if not segm:  # a box without a mask: the box is all we know
                    m = np.zeros((h, w), np.uint8)
                    x0, y0, x1, y1 = map(int, BoxMode.convert(a["bbox"], a["bbox_mode"], 0))
                    m[y0:y1, x0:x1] = 1
                elif isinstance(segm, dict):
                    m = mask_util.decode(segm)
                else:
                    m = mask_util.decode(mask_util.merge(mask_util.frPyObjects(segm, h, w)))
                masks.append(torch.from_numpy(m.astype(bool)))
            inst.pred_masks = torch.stack(masks) if masks else torch.zeros((0, h, w), dtype=bool)
        pairs.append(({"image_id": d["image_id"]}, {"instances": inst}))
    return pairs


@pytest.mark.parametrize("flavour", sorted(exports.FLAVOURS))
def test_export_checks_trains_evaluates_and_predicts(tmp_path, flavour, capsys):
    ds = exports.FLAVOURS[flavour](tmp_path / "data")
    original = open(ds["json"]).read()
    config_name = "mask_rcnn_pvt_v2_b0_fpn_coco_json.py" if ds["masks"] else BOX_CONFIG

    # 1. the checker's verdict: usable, and what it does with the export's quirks
    drop = ["--drop-empty-categories"] if "dataset.drop_empty_categories=True" in ds["opts"] else []
    assert check_dataset(["--json", ds["json"], "--images", ds["images"], *drop]) == 0
    report = capsys.readouterr().out
    assert "OK for training" in report

    # 2. the ground truth fed back as predictions scores 100 AP through the config's own
    # evaluator (no output folder): training's and evaluation's views of the data agree
    config = _config(tmp_path, flavour, ds, config_name)
    cfg = LazyConfig.load(str(config))
    name = instantiate(cfg.dataloader.test.dataset.names)
    meta = MetadataCatalog.get(name)
    assert set(meta.thing_dataset_id_to_contiguous_id) == ds["category_ids"]
    # every object of the export reaches training (CVAT's brush masks and rectangles too)
    annos = [a for d in DatasetCatalog.get(name) for a in d["annotations"]]
    assert sum(not a.get("iscrowd", 0) for a in annos) == ds["objects"]
    assert sum(bool(a.get("iscrowd", 0)) for a in annos) == ds["crowd"]
    evaluator = instantiate(cfg.dataloader.evaluator)
    evaluator.reset()
    for inputs, outputs in _ground_truth_as_predictions(name, ds["masks"]):
        evaluator.process([inputs], [outputs])
    results = evaluator.evaluate()
    assert results["bbox"]["AP"] == pytest.approx(100.0), results
    if ds["masks"]:
        assert results["segm"]["AP"] == pytest.approx(100.0), results

    # 3. two training iterations learn from the boxes, then evaluation computes AP
    run_train_net("--config-file", config)
    out = tmp_path / "out"
    rows = [r for r in metrics(out) if "loss_box_reg" in r]
    assert rows and max(r["loss_box_reg"] for r in rows) > 0
    if ds["masks"]:
        assert max(r["loss_mask"] for r in rows) > 0
    eval_results = json.loads((out / "eval_results.json").read_text())
    assert math.isfinite(eval_results["bbox"]["AP"])

    # 4. predictions.json names the json's own category ids
    cfg.model.roi_heads.box_predictor.test_score_thresh = 0.0
    predictor = Predictor(cfg, str(out / "model_final.pth"))
    result = run_prediction(predictor, [ds["images"]], str(tmp_path / "pred"), score_threshold=0)
    assert len(result["images"]) == 4
    assert {c["id"] for c in result["categories"]} == ds["category_ids"]
    predicted = {a["category_id"] for a in result["annotations"]}
    assert predicted and predicted <= ds["category_ids"]
    assert open(ds["json"]).read() == original  # the export is never modified


def test_tools_are_recognised(tmp_path):
    found = {
        f: detect_tool(json.load(open(exports.FLAVOURS[f](tmp_path / f)["json"])))
        for f in ("roboflow", "cvat", "label_studio", "labelme", "crowd_rle")
    }
    assert found == {
        "roboflow": "Roboflow",
        "cvat": "CVAT",
        "label_studio": "Label Studio",
        "labelme": "labelme",
        "crowd_rle": "",
    }


# ------------------------------------------------------------ boxes without masks (item 3)


def test_mask_config_on_a_boxes_only_export_stops_naming_the_box_configs(tmp_path):
    ds = exports.boxes_only(tmp_path / "data")
    config = _config(tmp_path, "boxes_stop", ds)
    r = run_train_net("--config-file", config, check=False)
    assert r.returncode != 0
    assert "has boxes but no masks" in r.stderr and BOX_CONFIG in r.stderr
    assert not (tmp_path / "out" / "model_final.pth").exists()


def test_boxes_without_masks_train_box_heads_and_skip_the_mask_loss():
    from detectron2.modeling.roi_heads.mask_head import mask_rcnn_loss
    from detectron2.structures import PolygonMasks
    from detectron2.utils.events import EventStorage

    from pvt_fpn_d2.modeling.mask_head import PartialMaskRCNNConvUpsampleHead

    torch.manual_seed(0)
    head = PartialMaskRCNNConvUpsampleHead(
        input_shape=__import__("detectron2.layers", fromlist=["ShapeSpec"]).ShapeSpec(
            channels=8, height=14, width=14
        ),
        num_classes=2,
        conv_dims=[8, 8],
    ).train()
    torch.nn.init.normal_(head.predictor.weight, std=0.5)  # logits far from 0 (loss != log 2)
    x = torch.randn(5, 8, 14, 14)

    def proposals(placeholder):
        p = Instances((64, 64))
        p.proposal_boxes = Boxes(torch.tensor([[4.0, 4.0, 30.0, 30.0]] * 5))
        p.gt_classes = torch.tensor([0, 1, 0, 1, 0])
        polys = [
            [[4, 4, 30, 4, 30, 30]],
            [[4, 4, 30, 30, 4, 30]],
            placeholder,
            placeholder,
            [[10, 10, 20, 10, 20, 20, 10, 20]],
        ]
        p.gt_masks = PolygonMasks(polys)
        p.gt_has_mask = torch.tensor([True, True, False, False, True])
        return p

    with EventStorage():
        box = [[4, 4, 30, 4, 30, 30, 4, 30]]
        loss = head(x, [proposals(box)])["loss_mask"]
        # the placeholder mask of a box-only object never reaches the loss
        other = head(x, [proposals([[5, 5, 6, 5, 6, 6]])])["loss_mask"]
        # independent path: detectron2's own loss on the objects that have a mask
        p = proposals(box)
        keep = p.gt_has_mask
        expected = mask_rcnn_loss(head.layers(x[keep]), [p[keep]], 0)
        everything = mask_rcnn_loss(head.layers(x), [proposals(box)], 0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert other.item() == pytest.approx(loss.item(), rel=1e-6)
    assert abs(everything.item() - loss.item()) > 1e-2  # the filter matters
    loss.backward()
    assert head.predictor.weight.grad is not None


def test_mixed_masks_and_boxes_keep_every_box_in_training(tmp_path):
    """CVAT's rectangles beside its polygons and brush masks: the mapper keeps all of them."""
    from pvt_fpn_d2.data import DatasetMapper
    from detectron2.data import transforms as T

    ds = exports.cvat(tmp_path / "data")
    cfg = LazyConfig.load(str(_config(tmp_path, "cvat_mixed", ds)))
    name = instantiate(cfg.dataloader.train.dataset.names)
    mapper = DatasetMapper(
        is_train=True,
        augmentations=[T.NoOpTransform()],
        image_format="RGB",
        use_instance_mask=True,
    )
    for d in DatasetCatalog.get(name):
        inst = mapper(d)["instances"]
        assert len(inst) == 3  # brush mask, polygon, rectangle
        assert inst.gt_has_mask.tolist() == [True, True, False]


# ------------------------------------------------------- placeholder categories (item 4)


def test_roboflow_placeholder_category_is_named_and_dropped_on_request(tmp_path, caplog):
    from pvt_fpn_d2.data import coco_json_num_classes, register_coco_json

    ds = exports.roboflow(tmp_path / "data")
    with caplog.at_level("WARNING", logger="pvt_fpn_d2"):
        kept = register_coco_json("rf_kept", ds["json"], ds["images"])
    assert "no annotation in category 0 'mushrooms'" in caplog.text
    assert "placeholder" in caplog.text and "dataset.drop_empty_categories=True" in caplog.text
    assert MetadataCatalog.get(kept).thing_classes == ["mushrooms", "cep", "chanterelle"]
    assert coco_json_num_classes(ds["json"]) == 3

    dropped = register_coco_json("rf_dropped", ds["json"], ds["images"], drop_empty_categories=True)
    assert MetadataCatalog.get(dropped).thing_classes == ["cep", "chanterelle"]
    assert MetadataCatalog.get(dropped).thing_dataset_id_to_contiguous_id == {1: 0, 2: 1}
    assert coco_json_num_classes(ds["json"], drop_empty_categories=True) == 2
    # the AP table has no empty row: evaluation's ground truth has the two real classes
    gt = json.load(open(MetadataCatalog.get(dropped).json_file))
    assert [c["id"] for c in gt["categories"]] == [1, 2]


# ---------------------------------------------------------------- dense scenes (item 5)


def test_dense_scene_is_named_and_the_override_counts_every_object(tmp_path, caplog):
    from pvt_fpn_d2.engine import check_data_fits_model

    ds = exports.dense(tmp_path / "data")
    assert check_dataset(["--json", ds["json"], "--images", ds["images"]]) == 0
    config = _config(tmp_path, "dense", ds)
    cfg = LazyConfig.load(str(config))
    model = instantiate(cfg.model)
    with caplog.at_level("WARNING", logger="pvt_fpn_d2"):
        check_data_fits_model(cfg, model, splits=("test",))
    assert "image 0.jpg has 320 objects but the model keeps 100 detections per image" in caplog.text
    assert "model.roi_heads.box_predictor.test_topk_per_image=400" in caplog.text

    name = instantiate(cfg.dataloader.test.dataset.names)
    pairs = _ground_truth_as_predictions(name, with_masks=False)
    ap = {}
    for limit in (100, 400):
        cfg.model.roi_heads.box_predictor.test_topk_per_image = limit  # the evaluator follows
        evaluator = instantiate(cfg.dataloader.evaluator)
        assert evaluator._max_dets_per_image[-1] == limit
        evaluator.reset()
        for inputs, outputs in pairs:
            # the model keeps its `limit` best detections per image
            evaluator.process([inputs], [{"instances": outputs["instances"][:limit]}])
        ap[limit] = evaluator.evaluate()["bbox"]["AP"]
    assert ap[400] == pytest.approx(100.0)
    assert ap[100] < 80.0
    caplog.clear()
    model.roi_heads.box_predictor.test_topk_per_image = 400
    with caplog.at_level("WARNING", logger="pvt_fpn_d2"):
        check_data_fits_model(cfg, model, splits=("test",))
    assert "detections per image" not in caplog.text


# ------------------------------------------- evaluation without an output folder (item 1)


def _perfect_ap(evaluator, name, with_masks=False):
    evaluator.reset()
    for inputs, outputs in _ground_truth_as_predictions(name, with_masks):
        evaluator.process([inputs], [outputs])
    return evaluator.evaluate()


def test_retinanet_config_evaluates_an_id_0_export_without_an_output_folder(tmp_path):
    ds = exports.roboflow(tmp_path / "data")  # annotation id 0: needs the prepared copy
    cfg = LazyConfig.load(
        str(_config(tmp_path, "rf_retina", ds, "retinanet_pvt_v2_b0_fpn_coco_json.py"))
    )
    assert "output_dir" not in cfg.dataloader.evaluator
    name = instantiate(cfg.dataloader.test.dataset.names)
    res = _perfect_ap(instantiate(cfg.dataloader.evaluator), name)
    assert res["bbox"]["AP"] == pytest.approx(100.0)


def test_yacs_path_detectron2_evaluator_without_an_output_folder(tmp_path):
    """A DefaultTrainer user registers the export and builds detectron2's own evaluator."""
    from detectron2.evaluation import COCOEvaluator as D2COCOEvaluator

    from pvt_fpn_d2.data import register_coco_json

    ds = exports.roboflow(tmp_path / "data")
    name = register_coco_json("rf_yacs", ds["json"], ds["images"], drop_empty_categories=True)
    evaluator = D2COCOEvaluator(
        name, tasks=("bbox", "segm"), distributed=False, use_fast_impl=False
    )
    res = _perfect_ap(evaluator, name, with_masks=True)
    assert res["bbox"]["AP"] == pytest.approx(100.0)
    assert res["segm"]["AP"] == pytest.approx(100.0)


def test_dataset_without_a_json_evaluates_without_an_output_folder(tmp_path):
    """A dataset registered from Python (no json_file): converted into a temporary folder."""
    from pvt_fpn_d2.evaluation import COCOEvaluator

    ds = exports.odd_ids(tmp_path / "data")
    from pvt_fpn_d2.data import register_coco_json

    source = register_coco_json("odd_src", ds["json"], ds["images"])
    DatasetCatalog.register("odd_dicts", lambda: DatasetCatalog.get(source))
    MetadataCatalog.get("odd_dicts").set(
        thing_classes=MetadataCatalog.get(source).thing_classes,
        thing_dataset_id_to_contiguous_id=MetadataCatalog.get(
            source
        ).thing_dataset_id_to_contiguous_id,
    )
    evaluator = COCOEvaluator("odd_dicts", tasks=("bbox",), distributed=False)
    converted = evaluator._tmp_dir.name
    res = _perfect_ap(evaluator, "odd_dicts")
    assert res["bbox"]["AP"] == pytest.approx(100.0)
    assert not hasattr(MetadataCatalog.get("odd_dicts"), "json_file")  # nothing left behind
    del evaluator
    import gc, os

    gc.collect()
    assert not os.path.exists(converted)


def test_file_names_found_by_ending_case_and_subfolder(tmp_path):
    """A file_name from another machine's layout is found under the image folder the user gave."""
    from pvt_fpn_d2.data.exports import prepare_coco

    ds = exports.cvat(tmp_path / "data")  # images in images/val/, file_name "val/000000.jpg"
    data = json.load(open(ds["json"]))
    for k, im in enumerate(data["images"]):
        im["file_name"] = [
            im["file_name"].split("/")[-1],  # without the subset folder
            "C:\\export\\" + im["file_name"].replace("/", "\\"),  # a Windows path
            "/data/upload/3/" + im["file_name"].upper(),  # an upload URL, another case
            "https://host/" + im["file_name"],
        ][k]
    prepared = prepare_coco(data, ds["images"])
    assert [im["file_name"] for im in prepared.data["images"]] == [
        f"val/{i:06d}.jpg" for i in range(4)
    ]
    (tmp_path / "data/images/other").mkdir()
    (tmp_path / "data/images/other/000000.jpg").write_bytes(b"")  # now ambiguous: not guessed
    assert prepare_coco(data, ds["images"]).data["images"][0]["file_name"] == "000000.jpg"


# ---------------------------------------- one file listed twice, keypoints (#35 items 2-3)


def test_label_studio_file_listed_twice_is_one_image_in_training_and_evaluation(
    tmp_path, capsys, caplog
):
    """Label Studio writes one image entry per annotator: the entries of one file become one
    image (the annotations of both), which training and the evaluator's ground truth share."""
    from pvt_fpn_d2.data import register_coco_json
    from pvt_fpn_d2.evaluation import COCOEvaluator

    ds = exports.label_studio_annotators(tmp_path / "data")
    original = open(ds["json"]).read()
    merged = "1a2b3c4d-cat.jpg: listed by 2 image entries (ids 0, 2; Label Studio writes"
    assert check_dataset(["--json", ds["json"], "--images", ds["images"]]) == 0
    out = capsys.readouterr().out
    assert merged in out and "merged into one image, id 0" in out, out

    with caplog.at_level("WARNING", logger="pvt_fpn_d2"):
        name = register_coco_json("ls_twice", ds["json"], ds["images"])
    assert caplog.text.count("listed by 2 image entries") == 1, caplog.text  # one line
    records = DatasetCatalog.get(name)
    cat = [r for r in records if r["file_name"].endswith("cat.jpg")]
    assert len(records) == 2 and len(cat) == 1
    assert len(cat[0]["annotations"]) == 5  # 2 of one annotator, 3 of the other

    evaluator = COCOEvaluator(name, tasks=("bbox",), output_dir=None, use_fast_impl=False)
    gt = evaluator._coco_api
    cat_ids = [i for i, im in gt.imgs.items() if im["file_name"].endswith("cat.jpg")]
    assert cat_ids == [cat[0]["image_id"]]
    assert len(gt.getAnnIds(imgIds=cat_ids)) == 5
    assert len(gt.imgs) == 2
    assert _perfect_ap(evaluator, name)["bbox"]["AP"] == pytest.approx(100.0)
    assert open(ds["json"]).read() == original  # the export is never modified


def test_label_studio_file_listed_with_two_sizes_is_refused(tmp_path, capsys):
    from pvt_fpn_d2.data import DatasetError, register_coco_json

    ds = exports.label_studio_annotators(tmp_path / "data", same_size=False)
    message = (
        "1a2b3c4d-cat.jpg: listed by 2 image entries of different sizes "
        "(HxW: image 0: 64x96, image 2: 96x64): one file has one size"
    )
    assert check_dataset(["--json", ds["json"], "--images", ds["images"]]) == 1
    assert f"ERROR: {message}" in capsys.readouterr().out
    with pytest.raises(DatasetError, match=re.escape(message)):
        register_coco_json("ls_two_sizes", ds["json"], ds["images"])


def test_keypoint_annotations_are_named_and_trained_as_boxes(tmp_path, capsys, caplog):
    from detectron2.data import transforms as T

    from pvt_fpn_d2.data import DatasetMapper, register_coco_json

    ds = exports.keypoints(tmp_path / "data")
    named = (
        "4 keypoint annotations: trained as boxes of class 'default'; the keypoints themselves "
        "are not trained"
    )
    assert check_dataset(["--json", ds["json"], "--images", ds["images"]]) == 0
    assert named in capsys.readouterr().out
    with caplog.at_level("WARNING", logger="pvt_fpn_d2"):
        name = register_coco_json("keypoints", ds["json"], ds["images"])
    assert named in caplog.text  # the training log
    # what training gets: every object as a box of its class, no keypoints (a flip needs none)
    mapper = DatasetMapper(
        is_train=True, augmentations=[T.RandomFlip(prob=1.0)], image_format="RGB"
    )
    for d in DatasetCatalog.get(name):
        inst = mapper(d)["instances"]
        assert len(inst) == 2 and inst.gt_classes.tolist() == [0, 0]
        assert not inst.has("gt_keypoints")
        boxes = inst.gt_boxes.tensor
        assert bool((boxes[:, 2:] > boxes[:, :2]).all())
