"""Monocular depth on the PVT-v2 FPN (#17): shapes, the loss and its invalid pixels, the
metrics, the folder dataset's bad input, train_net.py and predict.py."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog
from detectron2.utils.events import EventStorage

from pvt_fpn_d2 import PVT_V2_VARIANTS, pvt_v2_out_channels
from pvt_fpn_d2.data import (
    BadImageError,
    DepthDatasetMapper,
    generate_synthetic_depth,
    read_depth,
    register_depth_folder,
)
from pvt_fpn_d2.evaluation import DepthEvaluator, depth_metrics
from pvt_fpn_d2.modeling.depth import silog_loss

from .conftest import REPO, run_tool, run_train_net, train_steps

CONFIG = REPO / "configs/Depth/depth_pvt_v2_b0_synthetic.py"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth")
    return generate_synthetic_depth(str(root), num_train=8, num_val=3, image_size=64)


def _model(name="pvt_v2_b0"):
    cfg = LazyConfig.load(str(CONFIG))
    cfg.model.backbone.bottom_up.name = name
    return instantiate(cfg.model)


@pytest.mark.parametrize("variant", PVT_V2_VARIANTS)
def test_every_variant_feeds_the_fpn_and_the_head(variant):
    with torch.device("meta"):  # shapes only
        model = _model(variant)
    lateral = [model.backbone.lateral_convs[i].in_channels for i in range(4)]
    # detectron2 keeps the laterals coarsest first
    assert lateral == [pvt_v2_out_channels(variant, f"res{k}") for k in (5, 4, 3, 2)]
    assert model.head.fuse.in_channels == 4 * 64  # four FPN levels of the demo's 64 channels


def test_odd_input_size():
    torch.manual_seed(0)
    with torch.no_grad():
        (out,) = _model().eval()([{"image": torch.zeros(3, 200, 249, dtype=torch.uint8)}])
    assert out["depth"].shape == (200, 249)


def test_depth_is_bounded_by_max_depth_and_resized_to_the_original():
    torch.manual_seed(0)
    model = _model().eval()
    image = torch.randint(0, 255, (3, 64, 80), dtype=torch.uint8)
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 128, "width": 160}])
    d = out["depth"]
    assert d.shape == (128, 160) and 0 < float(d.min()) and float(d.max()) < model.max_depth


def test_invalid_pixels_change_nothing_and_valid_ones_do():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 16, 16, generator=g) * 9 + 1
    gt[:, :4] = 0  # no depth
    pred = torch.rand(2, 16, 16, generator=g) * 9 + 1
    base = silog_loss(pred, gt)
    other = pred.clone()
    other[:, :4] = 5.0  # predictions where there is no ground truth
    assert silog_loss(other, gt) == base
    other[0, 10, 10] += 1.0  # a valid pixel
    assert silog_loss(other, gt) != base
    # the scale invariance the loss is named for, with variance_focus 1: pred x 2 costs nothing
    torch.testing.assert_close(silog_loss(pred * 2, gt, 1.0), silog_loss(pred, gt, 1.0))


def test_training_lowers_the_loss_and_ignores_missing_depth(folders):
    name = register_depth_folder(
        "depth_test_train", folders["train"]["image_root"], folders["train"]["depth_root"]
    )
    mapper = DepthDatasetMapper(is_train=True, augmentations=[], image_format="RGB")
    data = [mapper(d) for d in DatasetCatalog.get(name)]
    assert data[0]["depth"].shape == (64, 64)
    assert 1.0 <= float(data[0]["depth"].min()) and float(data[0]["depth"].max()) <= 9.0
    torch.manual_seed(0)
    model = _model()
    losses = train_steps(model, [data[:4], data[4:]], steps=30, lr=1e-3, loss_key="loss_depth")
    assert all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:2]), losses
    # an image whose depth is all missing gives a zero loss, not NaN
    with EventStorage():
        empty = model([dict(data[0], depth=torch.zeros(64, 64))])["loss_depth"]
    assert float(empty.detach()) == 0.0


def test_metrics_against_hand_computed_values():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])  # 0: not evaluated
    pred = np.array([[1.0, 3.0], [2.0, 7.0]])
    m = depth_metrics(pred, gt, min_depth=1e-3, max_depth=10.0)
    # pixels (1,1), (3,2), (2,4): ratios 1, 1.5, 2
    assert m["abs_rel"] == pytest.approx((0 + 0.5 + 0.5) / 3)
    assert m["sq_rel"] == pytest.approx((0 + 1 / 2 + 4 / 4) / 3)
    assert m["rmse"] == pytest.approx(np.sqrt((0 + 1 + 4) / 3))
    assert m["rmse_log"] == pytest.approx(np.sqrt((np.log(1.5) ** 2 + np.log(2) ** 2) / 3))
    # 1.25, 1.5625, 1.953: the ratio 2 is within none
    assert (m["d1"], m["d2"], m["d3"]) == pytest.approx((100 / 3, 200 / 3, 200 / 3))


def test_evaluator_reads_the_ground_truth_files(folders, tmp_path):
    name = register_depth_folder(
        "depth_test_val", folders["val"]["image_root"], folders["val"]["depth_root"]
    )
    ev = DepthEvaluator(name, distributed=False)
    ev.reset()
    dicts = DatasetCatalog.get(name)
    gts = [read_depth(d["depth_file_name"], 1000.0) for d in dicts]
    ev.process(dicts, [{"depth": torch.from_numpy(g)} for g in gts])  # perfect
    perfect = ev.evaluate()["depth"]
    assert perfect["abs_rel"] == pytest.approx(0, abs=1e-6) and perfect["d1"] == 100.0
    ev.reset()
    mean = float(np.mean(np.concatenate([g.ravel() for g in gts])))
    ev.process(dicts, [{"depth": torch.full(g.shape, mean)} for g in gts])
    baseline = ev.evaluate()["depth"]
    expected = np.mean([depth_metrics(np.full(g.shape, mean), g)["abs_rel"] for g in gts])
    assert baseline["abs_rel"] == pytest.approx(expected) and baseline["abs_rel"] > 0.1


def test_bad_input(tmp_path, folders):
    img_root = folders["val"]["image_root"]
    eight_bit = tmp_path / "d8"
    eight_bit.mkdir()
    names = sorted(p.stem for p in Path(img_root).glob("*.jpg"))
    for n in names:
        Image.fromarray(np.full((64, 64), 50, np.uint8)).save(eight_bit / f"{n}.png")
    with pytest.raises(BadImageError, match="must be a single-channel 16-bit PNG"):
        register_depth_folder("depth_bad1", img_root, str(eight_bit))
    small = tmp_path / "small"
    small.mkdir()
    for n in names:
        Image.fromarray(np.full((32, 48), 5000, np.uint16)).save(small / f"{n}.png")
    with pytest.raises(BadImageError, match="is 32x48 but its image is 64x64"):
        register_depth_folder("depth_bad2", img_root, str(small))
    with pytest.raises(ValueError, match="max_depth must be > 0"):
        register_depth_folder("depth_bad3", img_root, folders["val"]["depth_root"], max_depth=0)
    cfg = LazyConfig.load(str(CONFIG))
    cfg.model.max_depth = -1.0
    with pytest.raises(ValueError, match=r"max_depth must be > 0 \(metres\), got -1.0"):
        instantiate(cfg.model)
    (small / f"{names[0]}.png").unlink()
    with pytest.raises(ValueError, match="1 of 3 images have no depth PNG"):
        register_depth_folder("depth_bad4", img_root, str(small))


def test_train_net_and_predict(folders, tmp_path):
    out = tmp_path / "out"
    data = [
        f"dataset.train_images={folders['train']['image_root']}",
        f"dataset.train_depth={folders['train']['depth_root']}",
        f"dataset.val_images={folders['val']['image_root']}",
        f"dataset.val_depth={folders['val']['depth_root']}",
    ]
    run_train_net(
        "--config-file", CONFIG, *data, "dataloader.train.total_batch_size=4",
        "dataloader.train.num_workers=0", "dataloader.test.num_workers=0", "train.max_iter=2",
        "train.eval_period=2", "train.log_period=1", "train.device=cpu", f"train.output_dir={out}",
    )  # fmt: skip
    results = json.loads((out / "eval_results.json").read_text())["depth"]
    assert {"abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3"} == set(results)
    run_tool(
        "tools/predict.py", "--config-file", CONFIG, "--checkpoint", out / "model_final.pth",
        "--input", folders["val"]["image_root"], "--output", tmp_path / "pred", "train.device=cpu",
        *data,
    )  # fmt: skip
    preds = json.loads((tmp_path / "pred/depth_predictions.json").read_text())
    assert len(preds) == 3
    for p in preds:
        png = Image.open(p["depth_file"])
        assert png.mode.startswith("I") and png.size == (64, 64)
        metres = np.asarray(png, dtype=np.float64) / p["depth_scale"]
        assert abs(np.median(metres) - p["median_m"]) < 0.01
        assert 0 < p["min_m"] <= p["max_m"] < 10.0
    assert len(list((tmp_path / "pred").glob("*.jpg"))) == 3
