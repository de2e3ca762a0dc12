"""Semantic segmentation on the PVT-v2 FPN (#7): the concat head, Semantic FPN, data, configs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.data import (
    DatasetCatalog,
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    get_detection_dataset_dicts,
)
from detectron2.evaluation import SemSegEvaluator, inference_on_dataset
from detectron2.layers import ShapeSpec
from detectron2.modeling import FPN, SemanticSegmentor, build_model
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead
from detectron2.utils.events import EventStorage

from pvt_fpn_d2 import PVTv2Backbone, add_pvt_v2_config, add_pvt_v2_sem_seg_config
from pvt_fpn_d2.data import (
    SYNTHETIC_CLASSES,
    BadImageError,
    generate_synthetic_coco,
    register_sem_seg_folder,
)
from pvt_fpn_d2.modeling.semantic import FPNConcatSemSegHead

from .conftest import REPO, subprocess_env

CLASSES = ["background"] + list(SYNTHETIC_CLASSES)
CONFIGS = REPO / "configs" / "SemSeg"
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """8 train / 3 val synthetic images of 96 px with label PNGs, registered for this module."""
    root = tmp_path_factory.mktemp("semseg")
    paths = generate_synthetic_coco(str(root), num_train=8, num_val=3, image_size=96)
    for split in ("train", "val"):
        register_sem_seg_folder(
            f"test_semseg_{split}",
            paths[split]["image_root"],
            paths[split]["sem_seg_root"],
            CLASSES,
        )
    return paths


def _segmentor(head: str = "concat", num_classes: int = 4, channels: int = 32, **kwargs):
    """PVT-v2-b0 + a narrow FPN (p2-p5) + a head, in detectron2's SemanticSegmentor."""
    torch.manual_seed(0)
    fpn = FPN(
        bottom_up=PVTv2Backbone("pvt_v2_b0", drop_path_rate=0.0),
        in_features=["res2", "res3", "res4", "res5"],
        out_channels=channels,
    )
    shapes = fpn.output_shape()
    if head == "concat":
        sem_seg_head = FPNConcatSemSegHead(shapes, num_classes=num_classes, **kwargs)
    else:
        sem_seg_head = SemSegFPNHead(
            shapes,
            num_classes=num_classes,
            conv_dims=channels,
            common_stride=4,
            norm="GN",
            ignore_value=255,
        )
    return SemanticSegmentor(
        backbone=fpn, sem_seg_head=sem_seg_head, pixel_mean=MEAN, pixel_std=STD
    )


def _mapped(dataset_name: str, num: int):
    """The first ``num`` images of a dataset as model inputs ("image" and "sem_seg"), no resize."""
    mapper = DatasetMapper(is_train=True, augmentations=[], image_format="RGB")
    return [mapper(d) for d in DatasetCatalog.get(dataset_name)[:num]]


def _evaluate(model, dataset_name: str):
    loader = build_detection_test_loader(
        dataset=get_detection_dataset_dicts(dataset_name, filter_empty=False),
        mapper=DatasetMapper(is_train=False, augmentations=[], image_format="RGB"),
        num_workers=0,
    )
    evaluator = SemSegEvaluator(dataset_name, distributed=False)
    return inference_on_dataset(model, loader, evaluator)["sem_seg"]


def _train(model, batches, steps: int, lr: float):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    with EventStorage():
        for i in range(steps):
            loss = model(batches[i % len(batches)])["loss_sem_seg"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


@pytest.mark.parametrize("head", ["concat", "semantic_fpn"])
def test_output_matches_input_size_for_odd_sizes(head):
    model = _segmentor(head, num_classes=5).eval()
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (3, 200, 249), dtype=torch.uint8, generator=g)
    b = torch.randint(0, 256, (3, 97, 131), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        plain = model([{"image": a}, {"image": b}])
        resized = model([{"image": a, "height": 400, "width": 498}])
        # the head itself predicts at the padded size: 200x249 -> 224x256 (multiples of 32)
        raw, losses = model.sem_seg_head(model.backbone(torch.zeros(1, 3, 224, 256)))
    assert plain[0]["sem_seg"].shape == (5, 200, 249)
    assert plain[1]["sem_seg"].shape == (5, 97, 131)
    assert resized[0]["sem_seg"].shape == (5, 400, 498)
    assert raw.shape == (1, 5, 224, 256) and losses == {}
    assert torch.isfinite(plain[0]["sem_seg"]).all()


def test_concat_head_levels_losses_and_gradients():
    torch.manual_seed(0)
    shapes = {f"p{k}": ShapeSpec(channels=8, stride=2**k) for k in (2, 3, 4, 5, 6)}
    # in_features in any order, P6 optional: sorted by stride, P2 sets the output resolution
    head = FPNConcatSemSegHead(shapes, num_classes=3, in_features=["p6", "p2", "p4", "p3", "p5"])
    assert head.in_features == ["p2", "p3", "p4", "p5", "p6"] and head.common_stride == 4
    assert head.predictor.in_channels == 5 * 8 and head.predictor.kernel_size == (3, 3)
    feats = {f: torch.randn(2, 8, 64 // s.stride, 96 // s.stride) for f, s in shapes.items()}
    head.eval()
    logits, _ = head(feats)
    assert logits.shape == (2, 3, 64, 96)

    head.train()
    targets = torch.randint(0, 3, (2, 64, 96))
    targets[0, :10] = 255
    _, losses = head(feats, targets)
    # cross-entropy over the non-ignored pixels of the upsampled logits
    up = F.interpolate(head.layers(feats), size=(64, 96), mode="bilinear", align_corners=False)
    expected = F.cross_entropy(up, targets, ignore_index=255)
    torch.testing.assert_close(losses["loss_sem_seg"], expected)
    losses["loss_sem_seg"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())

    # every pixel ignored: a zero loss, not NaN
    _, losses = head(feats, torch.full((2, 64, 96), 255))
    assert losses["loss_sem_seg"].item() == 0.0
    with pytest.raises(ValueError, match="needs targets"):
        head(feats)
    # a subset of the levels
    head = FPNConcatSemSegHead(shapes, num_classes=3, in_features=["p3", "p4"], loss_weight=0.5)
    assert head.common_stride == 8 and head.predictor.in_channels == 16


def test_concat_head_rejects_bad_arguments():
    shapes = {"p2": ShapeSpec(channels=8, stride=4)}
    with pytest.raises(ValueError, match=r"missing: \['p3'\]"):
        FPNConcatSemSegHead(shapes, num_classes=3, in_features=["p2", "p3"])
    with pytest.raises(ValueError, match="loss_type"):
        FPNConcatSemSegHead(shapes, num_classes=3, loss_type="dice")
    with pytest.raises(ValueError, match="num_classes must be 2"):
        FPNConcatSemSegHead(shapes, num_classes=1, loss_type="binary_cross_entropy")


def test_yacs_config_builds_the_concat_head():
    cfg = add_pvt_v2_sem_seg_config(add_pvt_v2_config(get_cfg()))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "SemanticSegmentor"
    cfg.MODEL.BACKBONE.NAME = "build_pvt_v2_fpn_backbone"  # p2-p6
    cfg.MODEL.PVT.NAME = "pvt_v2_b0"
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = MEAN, STD
    cfg.merge_from_list(
        [
            "MODEL.SEM_SEG_HEAD.NAME",
            "FPNConcatSemSegHead",
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
            2,
            "MODEL.SEM_SEG_HEAD.IN_FEATURES",
            ["p2", "p3", "p4", "p5", "p6"],
            "MODEL.SEM_SEG_HEAD.LOSS_TYPE",
            "binary_cross_entropy",
        ]
    )
    model = build_model(cfg).eval()
    head = model.sem_seg_head
    assert isinstance(head, FPNConcatSemSegHead) and head.loss_type == "binary_cross_entropy"
    assert head.predictor.in_channels == 5 * 16 and head.predictor.out_channels == 1
    with torch.no_grad():
        out = model([{"image": torch.zeros(3, 64, 80, dtype=torch.uint8)}])
    assert out[0]["sem_seg"].shape == (2, 64, 80)


def test_training_lowers_the_loss_and_sem_seg_evaluator_scores(tiny):
    model = _segmentor("concat")
    data = _mapped("test_semseg_train", 4)
    losses = _train(model, [data[:2], data[2:]], steps=30, lr=1e-3)
    assert all(np.isfinite(losses))
    start, end = np.mean(losses[:2]), np.mean(losses[-4:])
    assert end < 0.6 * start, losses

    results = _evaluate(model.eval(), "test_semseg_val")
    assert {"mIoU", "fwIoU", "mACC", "pACC"} <= set(results)
    assert {f"IoU-{c}" for c in CLASSES} <= set(results)
    assert 0 <= results["mIoU"] <= 100 and 0 < results["pACC"] <= 100


def test_ground_truth_logits_score_100_and_wrong_ones_do_not(tiny):
    class TargetsAsLogits(nn.Module):
        """Returns the (padded) ground truth as one-hot logits, shifted by ``shift`` classes."""

        ignore_value = 255

        def __init__(self, shift: int = 0):
            super().__init__()
            self.shift = shift

        def forward(self, features, targets):
            labels = torch.where(targets == self.ignore_value, 0, targets)
            labels = (labels + self.shift) % len(CLASSES)
            return F.one_hot(labels, len(CLASSES)).permute(0, 3, 1, 2).float() * 10, {}

    model = _segmentor("concat").eval()
    model.sem_seg_head = TargetsAsLogits()
    perfect = _evaluate(model, "test_semseg_val")
    for key in ("mIoU", "fwIoU", "mACC", "pACC", "IoU-background"):
        assert perfect[key] == pytest.approx(100.0), (key, perfect)
    model.sem_seg_head = TargetsAsLogits(shift=1)
    wrong = _evaluate(model, "test_semseg_val")
    assert wrong["mIoU"] < 1 and wrong["pACC"] < 1


def test_binary_option_trains_and_its_output_is_evaluated(tiny, tmp_path):
    # one-class masks: "shape" (any of the three) against the background
    for split in ("train", "val"):
        out = tmp_path / split
        out.mkdir()
        src = tiny[split]["sem_seg_root"]
        for f in os.listdir(src):
            labels = np.asarray(Image.open(os.path.join(src, f)))
            Image.fromarray((labels > 0).astype(np.uint8)).save(out / f)
        register_sem_seg_folder(
            f"test_binary_{split}_{tmp_path.name}",
            tiny[split]["image_root"],
            str(out),
            ["background", "shape"],
        )
    model = _segmentor("concat", num_classes=2, loss_type="binary_cross_entropy")
    assert model.sem_seg_head.predictor.out_channels == 1
    data = _mapped(f"test_binary_train_{tmp_path.name}", 4)
    losses = _train(model, [data[:2], data[2:]], steps=20, lr=1e-3)
    assert all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:2]), losses

    model.eval()
    with torch.no_grad():
        out = model([{"image": data[0]["image"], "height": 50, "width": 70}])[0]["sem_seg"]
    assert out.shape == (2, 50, 70)
    assert (out[0] == 0).all()  # logits [0, x]: softmax = [1 - sigmoid(x), sigmoid(x)]
    torch.testing.assert_close(out.softmax(0)[1], out[1].sigmoid())
    results = _evaluate(model, f"test_binary_val_{tmp_path.name}")
    assert {"mIoU", "pACC", "IoU-background", "IoU-shape"} <= set(results)

    bad = [dict(data[0], sem_seg=torch.full_like(data[0]["sem_seg"], 2))]
    model.train()
    with EventStorage(), pytest.raises(ValueError, match=r"found \[2\]"):
        model(bad)


def test_register_sem_seg_folder(tiny, tmp_path):
    images, labels = tiny["val"]["image_root"], tiny["val"]["sem_seg_root"]
    name = register_sem_seg_folder(f"reg_{tmp_path.name}", images, labels, CLASSES)
    assert register_sem_seg_folder(name, images, labels, tuple(CLASSES)) == name  # idempotent
    meta = MetadataCatalog.get(name)
    assert meta.stuff_classes == CLASSES and meta.ignore_label == 255
    assert (meta.evaluator_type, meta.image_root, meta.sem_seg_root) == ("sem_seg", images, labels)
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == 3
    assert dicts[0]["sem_seg_file_name"] == os.path.join(labels, "000001.png")
    assert dicts[0]["file_name"] == os.path.join(images, "000001.jpg")
    with pytest.raises(ValueError, match="already registered"):
        register_sem_seg_folder(name, images, labels, CLASSES, ignore_label=0)

    def error(exc, match, *args, **kwargs):
        with pytest.raises(exc, match=match):
            register_sem_seg_folder(f"bad_{tmp_path.name}", *args, **kwargs)

    missing = str(tmp_path / "nope")
    error(FileNotFoundError, f"image folder '{missing}' does not exist", missing, labels, CLASSES)
    error(FileNotFoundError, f"label folder '{missing}' does not exist", images, missing, CLASSES)
    empty = tmp_path / "empty"
    empty.mkdir()
    error(FileNotFoundError, f"no \\*.jpg images in '{empty}'", str(empty), labels, CLASSES)
    error(FileNotFoundError, f"no \\*.png label files in '{empty}'", images, str(empty), CLASSES)
    partial = tmp_path / "partial"
    partial.mkdir()
    Image.open(os.path.join(labels, "000001.png")).save(partial / "000001.png")
    error(ValueError, "2 of 3 images .* no label file .*000002.jpg", images, str(partial), CLASSES)
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    for f in os.listdir(labels):
        Image.open(os.path.join(labels, f)).convert("RGB").save(rgb / f)
    error(ValueError, "mode 'RGB'", images, str(rgb), CLASSES)
    error(
        ValueError, "000001.png' has values .* outside the 2 classes", images, labels, ["bg", "fg"]
    )
    error(ValueError, "classes is empty", images, labels, [])
    assert f"bad_{tmp_path.name}" not in DatasetCatalog.list()


def _random_batch(num_classes: int, size=(64, 96), n: int = 2):
    g = torch.Generator().manual_seed(0)
    batch = []
    for _ in range(n):
        sem_seg = torch.randint(0, num_classes, size, generator=g)
        sem_seg[:4] = 255
        image = torch.randint(0, 256, (3, *size), dtype=torch.uint8, generator=g)
        batch.append({"image": image, "sem_seg": sem_seg})
    return batch


def _one_step(cfg, batch):
    """One optimizer step of cfg.model with cfg.optimizer and cfg.lr_multiplier."""
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    scheduler = instantiate(cfg.lr_multiplier)
    assert 0 < scheduler(0.0) <= 1.0
    before = model.sem_seg_head.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    with EventStorage():
        losses = model(batch)
    assert set(losses) == {"loss_sem_seg"} and torch.isfinite(losses["loss_sem_seg"])
    optimizer.zero_grad()
    losses["loss_sem_seg"].backward()
    optimizer.step()
    after = model.sem_seg_head.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    return model


@pytest.mark.parametrize(
    "config, head",
    [
        ("pvt_v2_b2_fpn_concat_ade20k_40k.py", FPNConcatSemSegHead),
        ("semantic_fpn_pvt_v2_b2_ade20k_40k.py", SemSegFPNHead),
    ],
)
def test_ade20k_configs_instantiate_and_train_one_step(config, head):
    cfg = LazyConfig.load(str(CONFIGS / config))
    assert cfg.dataloader.train.dataset.names == "ade20k_sem_seg_train"
    assert cfg.dataloader.test.dataset.names == "ade20k_sem_seg_val"
    registered = DatasetCatalog.list()
    assert "ade20k_sem_seg_train" in registered and "ade20k_sem_seg_val" in registered
    assert cfg.dataloader.evaluator._target_ is SemSegEvaluator
    assert cfg.dataloader.evaluator.dataset_name == "ade20k_sem_seg_val"
    assert cfg.train.best_checkpoint.metric == "sem_seg/mIoU"
    assert cfg.train.init_checkpoint == "timm://pvt_v2_b2"
    assert (cfg.train.max_iter, cfg.dataloader.train.total_batch_size) == (40000, 32)
    assert cfg.model.backbone.bottom_up.drop_path_rate == 0.1
    assert cfg.model.sem_seg_head._target_ is head
    # the ADE20K data is not touched: a random batch with labels in 0..149 and 255
    model = _one_step(cfg, _random_batch(150))
    assert model.sem_seg_head.ignore_value == 255
    assert sum(p.numel() for p in model.parameters()) > 25e6  # b2, 256-channel FPN


@pytest.mark.parametrize(
    "config", ["pvt_v2_b0_fpn_concat_synthetic.py", "semantic_fpn_pvt_v2_b0_synthetic.py"]
)
def test_synthetic_configs_train_one_step_on_their_loader(config, tiny):
    cfg = LazyConfig.load(str(CONFIGS / config))
    cfg.dataset.update(
        train_images=tiny["train"]["image_root"],
        train_labels=tiny["train"]["sem_seg_root"],
        val_images=tiny["val"]["image_root"],
        val_labels=tiny["val"]["sem_seg_root"],
    )
    cfg.dataloader.train.total_batch_size = 2
    cfg.dataloader.train.num_workers = 0
    assert cfg.train.init_checkpoint == ""
    batch = next(iter(instantiate(cfg.dataloader.train)))
    assert len(batch) == 2 and all(x["sem_seg"].shape == x["image"].shape[1:] for x in batch)
    model = _one_step(cfg, batch)
    assert model.sem_seg_head.predictor.out_channels == 4
    assert MetadataCatalog.get("synthetic_sem_seg_train").stuff_classes == CLASSES
    evaluator = instantiate(cfg.dataloader.evaluator)
    assert isinstance(evaluator, SemSegEvaluator) and evaluator._num_classes == 4


def test_train_net_trains_and_evaluates_a_synthetic_config(tiny, tmp_path):
    out = tmp_path / "out"
    args = [
        "--config-file",
        CONFIGS / "pvt_v2_b0_fpn_concat_synthetic.py",
        f"dataset.train_images={tiny['train']['image_root']}",
        f"dataset.train_labels={tiny['train']['sem_seg_root']}",
        f"dataset.val_images={tiny['val']['image_root']}",
        f"dataset.val_labels={tiny['val']['sem_seg_root']}",
        "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
        "train.max_iter=3",
        "train.eval_period=3",
        "train.log_period=1",
        "train.checkpointer.period=100",
        "train.device=cpu",
        f"train.output_dir={out}",
    ]
    # one thread: pytest runs two workers on two cores
    env = subprocess_env(OMP_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, str(REPO / "train_net.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    results = json.loads((out / "eval_results.json").read_text())
    assert {"mIoU", "fwIoU", "mACC", "pACC", "IoU-circle"} <= set(results["sem_seg"])
    assert 0 <= results["sem_seg"]["mIoU"] <= 100
    assert (out / "model_best.pth").is_file()  # kept by train.best_checkpoint.metric=sem_seg/mIoU
    with open(out / "metrics.json") as f:
        logged = [json.loads(line) for line in f]
    # one loss: detectron2 logs it as total_loss only
    assert [m["iteration"] for m in logged if "total_loss" in m] == [0, 1, 2]
    assert "sem_seg/mIoU" in logged[-1]
    # prediction pictures and label maps from the trained checkpoint
    pred = tmp_path / "pred"
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools/predict.py"),
            "--config-file",
            str(CONFIGS / "pvt_v2_b0_fpn_concat_synthetic.py"),
            "--checkpoint",
            str(out / "model_final.pth"),
            "--input",
            tiny["val"]["image_root"],
            "--output",
            str(pred),
            f"dataset.val_images={tiny['val']['image_root']}",
            f"dataset.val_labels={tiny['val']['sem_seg_root']}",
            "train.device=cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    images = sorted(os.listdir(tiny["val"]["image_root"]))
    written = json.loads((pred / "sem_seg_predictions.json").read_text())
    assert len(written) == len(images)
    for entry in written:
        label = np.asarray(Image.open(entry["label_file"]))
        source = Image.open(entry["file_name"])
        assert label.shape == (source.height, source.width) and label.max() < len(CLASSES)
        assert abs(sum(entry["classes"].values()) - 1) < 1e-3
        assert set(entry["classes"]) <= set(CLASSES)
    assert len(list(pred.glob("*.jpg"))) == len(images)


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.py")))
def test_semantic_configs_read_labels_as_the_evaluator_does(config, tmp_path):
    """Every semantic config maps with the project's DatasetMapper, whose label maps equal what
    detectron2's SemSegEvaluator reads (np.array(Image.open(f), dtype=int)): palette indices,
    not the luminance of the palette's colours; 16-bit values, not scaled to 8 bits."""
    from detectron2.data import DatasetMapper as D2DatasetMapper

    from pvt_fpn_d2.data import DatasetMapper

    cfg = LazyConfig.load(str(CONFIGS / config))
    assert cfg.dataloader.train.mapper._target_ is DatasetMapper
    assert cfg.dataloader.test.mapper._target_ is DatasetMapper
    # 512 px high: the ADE20K test mapper's resize (shorter side 512) keeps the size
    cfg.dataloader.test.mapper.augmentations = []
    mapper = instantiate(cfg.dataloader.test.mapper)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (512, 640, 3), dtype=np.uint8)).save(tmp_path / "i.jpg")
    indices = rng.integers(0, 150, (512, 640)).astype(np.uint8)
    indices[:40] = 255
    palette = Image.fromarray(indices, mode="P")
    palette.putpalette(rng.integers(0, 255, 768, dtype=np.uint8).tolist())
    palette.save(tmp_path / "palette.png")
    Image.fromarray(indices).save(tmp_path / "grey.png")
    Image.fromarray(indices.astype(np.uint16) * 2).save(tmp_path / "wide.png")  # I;16
    for name in ("palette.png", "grey.png", "wide.png"):
        expected = np.array(Image.open(tmp_path / name), dtype=int)  # SemSegEvaluator's reading
        item = {"file_name": str(tmp_path / "i.jpg"), "sem_seg_file_name": str(tmp_path / name)}
        mapped = mapper(dict(item))["sem_seg"].numpy()
        np.testing.assert_array_equal(mapped, expected, err_msg=name)
    assert expected.max() == 510  # 16-bit values above 255 kept (2 x the ignored 255)
    # detectron2's own mapper reads the palette file as luminance: what this guards against
    d2 = D2DatasetMapper(is_train=False, augmentations=[], image_format="RGB")
    item = {
        "file_name": str(tmp_path / "i.jpg"),
        "sem_seg_file_name": str(tmp_path / "palette.png"),
    }
    assert not np.array_equal(d2(item)["sem_seg"].numpy(), indices)
    with pytest.raises(BadImageError, match="not RGB colours"):
        Image.fromarray(np.stack([indices] * 3, -1)).save(tmp_path / "rgb.png")
        mapper(
            {"file_name": str(tmp_path / "i.jpg"), "sem_seg_file_name": str(tmp_path / "rgb.png")}
        )
