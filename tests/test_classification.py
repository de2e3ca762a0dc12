"""Image classification on the PVT-v2 pyramid (#17): GAP of the coarsest level + linear, the
folder dataset, the evaluator's metrics, train_net.py and predict.py."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import FPN

from pvt_fpn_d2 import PVT_V2_VARIANTS, PVTv2Backbone, pvt_v2_out_channels
from pvt_fpn_d2.data import (
    SYNTHETIC_CLASSES,
    DatasetMapper,
    generate_synthetic_classification,
    register_image_folder,
)
from pvt_fpn_d2.evaluation import ClassificationEvaluator, classification_metrics
from pvt_fpn_d2.modeling import ImageClassifier

from .conftest import REPO, run_tool, run_train_net, train_steps

CONFIG = REPO / "configs/Classification/classifier_pvt_v2_b0_synthetic.py"
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    return generate_synthetic_classification(str(root), num_train=12, num_val=6, image_size=64)


def _classifier(name="pvt_v2_b0", fpn=True, num_classes=3, fpn_channels=32, **kwargs):
    torch.manual_seed(0)
    bottom_up = PVTv2Backbone(name, drop_path_rate=0.0)
    if fpn:
        backbone = FPN(
            bottom_up=bottom_up, in_features=bottom_up._out_features, out_channels=fpn_channels
        )
    else:
        backbone = bottom_up
    return ImageClassifier(
        backbone=backbone,
        num_classes=num_classes,
        in_feature="p5" if fpn else "res5",
        pixel_mean=MEAN,
        pixel_std=STD,
        **kwargs,
    )


@pytest.mark.parametrize("variant", PVT_V2_VARIANTS)
def test_every_variant_feeds_its_channels_to_the_classifier(variant):
    with torch.device("meta"):
        res5 = _classifier(variant, fpn=False)
        p5 = _classifier(variant, fpn=True)
    assert res5.classifier.in_features == pvt_v2_out_channels(variant, "res5")
    assert p5.classifier.in_features == 32  # the FPN's width
    assert (res5.stride, p5.stride) == (32, 32)


def test_odd_size_and_padding_left_out_of_the_average():
    model = _classifier().eval()
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 255, (3, 200, 249), generator=g, dtype=torch.uint8)
    b = torch.randint(0, 255, (3, 96, 64), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        both = model([{"image": a}, {"image": b}])
    for o in both:
        assert o["scores"].shape == (3,) and abs(float(o["scores"].sum()) - 1) < 1e-5
        assert o["pred_class"] == int(o["scores"].argmax())
    # the pooled features: each image's own cells of P5 (b: 3x2 of the batch's 7x8), averaged
    from detectron2.structures import ImageList

    images = ImageList.from_tensors([a.float(), b.float()], 32)
    with torch.no_grad():
        p5 = model.backbone(images.tensor)["p5"]
        pooled = model.pooled(images)
    assert p5.shape[-2:] == (7, 8)
    torch.testing.assert_close(pooled[0], p5[0].mean(dim=(1, 2)))
    torch.testing.assert_close(pooled[1], p5[1, :, :3, :2].mean(dim=(1, 2)))


def test_training_lowers_the_loss(folders):
    name = register_image_folder("cls_test_train", folders["train"], list(SYNTHETIC_CLASSES))
    mapper = DatasetMapper(is_train=True, augmentations=[], image_format="RGB")
    data = [mapper(d) for d in DatasetCatalog.get(name)[:8]]
    assert all("label" in d and d["image"].shape == (3, 64, 64) for d in data)
    model = _classifier(label_smoothing=0.1)
    losses = train_steps(model, [data[:4], data[4:]], steps=30, lr=1e-3, loss_key="loss_cls")
    assert all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:2]), losses
    with pytest.raises(ValueError, match=r"labels \[7\] are outside the 3 classes"):
        model([dict(data[0], label=7)])


def test_metrics_against_hand_computed_values(tmp_path):
    scores = np.array(
        [
            [0.7, 0.2, 0.1],  # true 0: top1 right
            [0.5, 0.3, 0.2],  # true 1: top1 wrong, top2 right
            [0.1, 0.2, 0.7],  # true 2: right
            [0.2, 0.5, 0.3],  # true 2: wrong, top2 right
            [0.3, 0.3, 0.4],  # true 0: wrong (0 is 2nd in a tie broken by index)
        ]
    )
    labels = np.array([0, 1, 2, 2, 0])
    m = classification_metrics(scores, labels, ["a", "b", "c"], topk=(1, 2, 5))
    assert m["top1"] == pytest.approx(40.0)  # 2 of 5
    assert m["top2"] == pytest.approx(100.0)
    assert "top5" not in m  # more than the classes
    assert (m["acc-a"], m["acc-b"], m["acc-c"]) == (50.0, 0.0, 50.0)
    assert m["mean_class_acc"] == pytest.approx(100 / 3)

    MetadataCatalog.get("cls_metrics_test").set(classes=["a", "b", "c"])
    ev = ClassificationEvaluator("cls_metrics_test", output_dir=str(tmp_path), distributed=False)
    ev.reset()
    ev.process([{"label": int(x)} for x in labels], [{"scores": torch.tensor(s)} for s in scores])
    out = ev.evaluate()["classification"]
    assert out["top1"] == pytest.approx(40.0)
    matrix = json.loads((tmp_path / "confusion_matrix.json").read_text())["matrix"]
    assert matrix == [[1, 0, 1], [1, 0, 0], [0, 1, 1]]  # rows: true, columns: predicted
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000


def test_folder_dataset_bad_input(tmp_path, folders):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        register_image_folder("cls_bad1", str(tmp_path / "nope"))
    root = tmp_path / "data"
    shutil.copytree(folders["val"], root)
    (root / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"class folder\(s\) with no image.*empty"):
        register_image_folder("cls_bad2", str(root))
    with pytest.raises(ValueError, match=r"folder\(s\) \['empty'\] .* not among the classes"):
        register_image_folder("cls_bad3", str(root), list(SYNTHETIC_CLASSES))
    os.rmdir(root / "empty")
    name = register_image_folder("cls_ok", str(root))
    assert MetadataCatalog.get(name).classes == sorted(SYNTHETIC_CLASSES)
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == 6 and {d["label"] for d in dicts} <= {0, 1, 2}
    for d in dicts:  # the label is the folder's index
        assert (
            os.path.basename(os.path.dirname(d["file_name"]))
            == sorted(SYNTHETIC_CLASSES)[d["label"]]
        )


def test_configs_pin_the_two_heads():
    cfg = LazyConfig.load(str(CONFIG))
    assert cfg.model._target_ is ImageClassifier and cfg.model.in_feature == "p5"
    assert cfg.model.backbone._target_ is FPN
    res5 = LazyConfig.load(str(CONFIG).replace("b0_synthetic", "b0_res5_synthetic"))
    assert res5.model.in_feature == "res5" and res5.model.backbone._target_ is PVTv2Backbone
    assert LazyConfig.to_py(res5.optimizer) == LazyConfig.to_py(cfg.optimizer)
    assert res5.train.max_iter == cfg.train.max_iter
    with torch.device("meta"):
        model = instantiate(res5.model)
    assert model.classifier.in_features == 256  # b0's res5


def test_train_net_and_predict(folders, tmp_path):
    out = tmp_path / "out"
    data = [f"dataset.train_root={folders['train']}", f"dataset.val_root={folders['val']}"]
    run_train_net(
        "--config-file", CONFIG, *data, "dataloader.train.total_batch_size=4",
        "dataloader.train.num_workers=0", "dataloader.test.num_workers=0", "train.max_iter=2",
        "train.eval_period=2", "train.log_period=1", "train.device=cpu", f"train.output_dir={out}",
    )  # fmt: skip
    results = json.loads((out / "eval_results.json").read_text())["classification"]
    assert {"top1", "mean_class_acc", "acc-circle"} <= set(results)
    assert (out / "confusion_matrix.png").is_file()

    run_tool(
        "tools/predict.py", "--config-file", CONFIG, "--checkpoint", out / "model_final.pth",
        "--input", folders["val"], "--output", tmp_path / "pred", "train.device=cpu", *data,
    )  # fmt: skip
    preds = json.loads((tmp_path / "pred/classification_predictions.json").read_text())
    assert len(preds) == 6
    for p in preds:
        assert len(p["top5"]) == 3  # 3 classes
        assert sorted(t["class"] for t in p["top5"]) == sorted(SYNTHETIC_CLASSES)
        assert p["top5"][0]["score"] >= p["top5"][-1]["score"]
    assert len(list((tmp_path / "pred").glob("*.jpg"))) == 6


def test_a_detectors_checkpoint_starts_both_heads(tmp_path):
    """The detector's PVT-v2 (``backbone.bottom_up.model.*``) loads into the P5 classifier as
    it is and into the res5 one (``backbone.model.*``) moved to its prefix; the FPN too where
    the classifier has one of the same width."""
    from pvt_fpn_d2.engine.checkpoint import PVTCheckpointer

    cfg = LazyConfig.load(str(REPO / "configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py"))
    cfg.model.backbone.out_channels = 128
    torch.manual_seed(1)
    detector = instantiate(cfg.model)
    path = tmp_path / "detector.pth"
    torch.save({"model": detector.state_dict()}, path)
    want = detector.backbone.bottom_up.model.state_dict()
    for fpn in (True, False):
        classifier = _classifier(fpn=fpn, fpn_channels=128)
        PVTCheckpointer(classifier).load(str(path))
        pvt = classifier.backbone.bottom_up if fpn else classifier.backbone
        got = pvt.model.state_dict()
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)
        if fpn:
            torch.testing.assert_close(
                classifier.backbone.fpn_output5.weight, detector.backbone.fpn_output5.weight
            )
