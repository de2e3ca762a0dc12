"""ONNX export (tools/export_model.py, pvt_fpn_d2.deploy) against the eager detectron2 models:
the same detections, masks and scores through ONNX Runtime, for inputs of several sizes through
one exported file, and clear errors for what cannot be exported or run."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from detectron2.config import LazyConfig, instantiate

from pvt_fpn_d2.config import apply_overrides
from pvt_fpn_d2.deploy import OnnxPredictor, export_onnx, load_checkpoint_strict
from pvt_fpn_d2.engine.predictor import Predictor

from .conftest import (
    REPO,
    built_once,
    datasets_registered_here_removed,
    run_tool,
    subprocess_env,
    tiny_config,
)

# (H, W) of the test images; after the configs' test resize (short edge 96, long <= 128) they
# are 96x128, 89x128 and 115x96: two heights that are not multiples of 32
SIZES = ((96, 128), (90, 130), (120, 100))


def _images(seed=1):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3)).astype(np.uint8) for h, w in SIZES]


def _export(tmp, cfg_path, name):
    """Random weights saved as a checkpoint, exported with them; (config, checkpoint, folder)."""
    cfg = LazyConfig.load(str(cfg_path))
    torch.manual_seed(0)
    checkpoint = tmp / f"{name}.pth"
    torch.save({"model": instantiate(cfg.model).state_dict()}, checkpoint)
    folder = tmp / name
    # the export registers the config's test dataset; module fixtures outlive the test that
    # set them up, so the names are freed here for the other test files of this worker
    with datasets_registered_here_removed():
        export_onnx(cfg, str(folder), checkpoint=str(checkpoint))
    return cfg, checkpoint, folder


def _exported(folder):
    """(config, checkpoint, export folder) of an :func:`_export` into ``folder``."""
    name = folder.name
    return (
        LazyConfig.load(str(folder / name / "config.yaml")),
        folder / f"{name}.pth",
        folder / name,
    )


def _export_once(tmp_path_factory, name, make_config):
    """``_export`` of the config ``make_config(folder)`` writes, once per test run."""

    def build(folder):
        _export(folder, make_config(folder), folder.name)

    return _exported(built_once(tmp_path_factory, name, build))


@pytest.fixture(scope="session")
def detectors(tmp_path_factory, tiny_dataset):
    """Each detector family with PVT-v2-b0 (``mask_rcnn`` ...) and b2 (``mask_rcnn_b2`` ...),
    score threshold 0 so random weights detect 100 boxes: the Mask R-CNN, Faster R-CNN and
    RetinaNet fine-tuning configs on the tiny dataset, and the COCO Cascade Mask R-CNN config
    (80 classes) with the test resize of the others. Exported once per test run, whichever
    worker asks first."""

    def finetune(config, thresh, variant="pvt_v2_b0"):
        def make(folder):
            overrides = [f"{thresh}.test_score_thresh=0.0"]
            overrides.append(f"model.backbone.bottom_up.name={variant}")
            return tiny_config(folder, tiny_dataset, config, overrides=overrides)

        return make

    def cascade(variant):
        def make(folder):
            cfg = LazyConfig.load(str(REPO / "configs/COCO/cascade_mask_rcnn_pvt_v2_b2_fpn_3x.py"))
            cfg.model.backbone.bottom_up.name = variant
            for predictor in cfg.model.roi_heads.box_predictors:
                predictor.test_score_thresh = 0.0
            resize = cfg.dataloader.test.mapper.augmentations[0]
            resize.short_edge_length, resize.max_size = 96, 128
            path = folder / "cascade.yaml"
            LazyConfig.save(cfg, str(path))
            return path

        return make

    box = "model.roi_heads.box_predictor"
    makers = {}
    # b0 and the larger b2 (16 blocks against b0's 8) of each family through the same export
    for variant, suffix in (("pvt_v2_b0", ""), ("pvt_v2_b2", "_b2")):
        makers.update(
            {
                f"mask_rcnn{suffix}": finetune(
                    "mask_rcnn_pvt_v2_b0_fpn_coco_json.py", box, variant
                ),
                f"faster_rcnn{suffix}": finetune(
                    "faster_rcnn_pvt_v2_b0_fpn_coco_json.py", box, variant
                ),
                f"retinanet{suffix}": finetune(
                    "retinanet_pvt_v2_b0_fpn_coco_json.py", "model", variant
                ),
                f"cascade{suffix}": cascade(variant),
            }
        )

    class Exports(dict):  # exported when a test first asks for one
        def __missing__(self, name):
            self[name] = _export_once(tmp_path_factory, name, makers[name])
            return self[name]

    return Exports()


def assert_same_instances(a, b):
    """Same count; each eager detection has an exported one of its class with the box within
    0.5 px, the score within 1e-3 and (masks) IoU >= 0.99. Matched, not compared by rank:
    with random weights many scores tie to float precision and the order of ties is free."""
    assert len(a) == len(b) > 0
    ba, bb = a.pred_boxes.tensor, b.pred_boxes.tensor
    cost = (ba[:, None] - bb[None]).abs().amax(-1)
    cost[a.pred_classes[:, None] != b.pred_classes[None]] = float("inf")
    cost[(a.scores[:, None] - b.scores[None]).abs() > 1e-3] = float("inf")
    best, match = cost.min(dim=1)
    assert float(best.max()) <= 0.5, f"worst box difference {float(best.max())}"
    assert len(set(match.tolist())) == len(a)  # one to one
    if a.has("pred_masks"):
        ma, mb = a.pred_masks, b.pred_masks[match]
        inter = (ma & mb).flatten(1).sum(1).float()
        union = (ma | mb).flatten(1).sum(1).float()
        iou = torch.where(union > 0, inter / union.clamp(min=1), 1.0)  # both empty: the same
        assert float(iou.min()) >= 0.99
        print(f"masks: min IoU {float(iou.min()):.4f}")
    score = float((a.scores - b.scores[match]).abs().max())
    print(f"{len(a)} detections: boxes within {float(best.max()):.2e} px, scores {score:.2e}")
    return float(best.max())


@pytest.mark.parametrize(
    "name",
    [f"{family}{suffix}" for family in ("mask_rcnn", "faster_rcnn", "retinanet", "cascade")
     for suffix in ("", "_b2")],
)  # fmt: skip
def test_detector_onnx_matches_eager_at_three_sizes(detectors, name):
    cfg, checkpoint, folder = detectors[name]
    spec = json.loads((folder / "export.json").read_text())
    assert spec["outputs"][:3] == ["boxes", "scores", "classes"]
    family = name.replace("_b2", "")
    assert ("masks" in spec["outputs"]) is (family in ("mask_rcnn", "cascade"))
    variant = "pvt_v2_b2" if name.endswith("_b2") else "pvt_v2_b0"
    assert cfg.model.backbone.bottom_up.name == variant
    if family == "cascade":  # COCO's
        assert len(spec["classes"]) == 80 and spec["classes"][0] == "person"
    else:
        assert spec["classes"] == ["circle", "triangle", "square"]
    assert spec["input"]["shape"] == [3, "height", "width"] and spec["outside_the_graph"]
    eager = Predictor(cfg, str(checkpoint))
    onnx = OnnxPredictor(str(folder))  # the config and classes saved beside the model
    assert onnx.class_names() == eager.class_names()
    for image in _images():
        a, b = eager.predict(image)["instances"], onnx.predict(image)["instances"]
        assert a.image_size == b.image_size == image.shape[:2]
        assert_same_instances(a, b)


def test_detector_onnx_matches_eager_on_real_photos(detectors, fruits_nuts):
    """The Mask R-CNN file (exported at 96x128) on fruits_nuts' photos, resized to a short edge
    of 320 for both sides: real images, larger than the export's sample, through the same
    file."""
    from detectron2.data.detection_utils import read_image

    cfg, checkpoint, folder = detectors["mask_rcnn"]
    cfg = LazyConfig.load(str(folder / "config.yaml"))
    resize = cfg.dataloader.test.mapper.augmentations[0]
    resize.short_edge_length, resize.max_size = 320, 480
    eager, onnx = Predictor(cfg, str(checkpoint)), OnnxPredictor(str(folder), cfg)
    photos = sorted((fruits_nuts / "images").iterdir())[:2]
    assert len(photos) == 2
    for photo in photos:
        image = read_image(str(photo), format="RGB")
        a, b = eager.predict(image)["instances"], onnx.predict(image)["instances"]
        assert a.image_size == b.image_size == image.shape[:2]
        assert_same_instances(a, b)


def test_predict_py_with_the_onnx_model_writes_the_eager_predictions(detectors, tmp_path):
    cfg, checkpoint, folder = detectors["mask_rcnn"]
    cfg_file = tmp_path / "config.yaml"
    LazyConfig.save(cfg, str(cfg_file))
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    for i, image in enumerate(_images(seed=2)):
        Image.fromarray(image).save(images / f"{i}.png")
    results = {}
    for kind, weights in (("eager", ["--checkpoint", checkpoint]),
                          ("onnx", ["--model", folder / "model.onnx"])):  # fmt: skip
        out = tmp_path / kind
        run_tool("tools/predict.py", "--config-file", cfg_file, *weights, "--input", images,
                 "--output", out, "--confidence-threshold", "0.0")  # fmt: skip
        results[kind] = json.loads((out / "predictions.json").read_text())
        assert sorted(p.name for p in out.glob("*.jpg")) == ["0.jpg", "1.jpg", "2.jpg"]
    eager, onnx = results["eager"], results["onnx"]
    assert eager["images"] == onnx["images"] and eager["categories"] == onnx["categories"]
    assert len(eager["annotations"]) == len(onnx["annotations"]) >= 250  # <= 100 per image
    for image in eager["images"]:
        a = [x for x in eager["annotations"] if x["image_id"] == image["id"]]
        b = [x for x in onnx["annotations"] if x["image_id"] == image["id"]]
        for x in a:  # the one with the same class and (almost) the same box and score
            d = [
                max(abs(p - q) for p, q in zip(x["bbox"], y["bbox"]))
                for y in b
                if y["category_id"] == x["category_id"] and abs(y["score"] - x["score"]) < 1e-3
            ]
            assert d and min(d) <= 0.5


@pytest.fixture(scope="session")
def semantic(tmp_path_factory):
    from pvt_fpn_d2.data import generate_synthetic_coco

    def make(folder):
        data = generate_synthetic_coco(str(folder / "data"), num_train=2, num_val=2, image_size=96)
        cfg = LazyConfig.load(str(REPO / "configs/SemSeg/pvt_v2_b0_fpn_concat_synthetic.py"))
        cfg = apply_overrides(
            cfg,
            [
                f"dataset.{split}_{kind}={data[s][key]}"
                for split, s in (("train", "train"), ("val", "val"))
                for kind, key in (("images", "image_root"), ("labels", "sem_seg_root"))
            ],
        )
        path = folder / "config.yaml"
        LazyConfig.save(cfg, str(path))
        return path

    return _export_once(tmp_path_factory, "concat", make)


def test_semantic_onnx_logits_match_eager(semantic):
    cfg, checkpoint, folder = semantic
    eager, onnx = Predictor(cfg, str(checkpoint)), OnnxPredictor(str(folder), cfg)
    for image in _images():
        a, b = eager.predict(image)["sem_seg"], onnx.predict(image)["sem_seg"]
        assert a.shape == b.shape == (4, *image.shape[:2])
        assert float((a - b).abs().max()) <= 1e-3
        print(f"semantic scores within {float((a - b).abs().max()):.2e}")


def test_a_checkpoint_of_another_model_is_refused_before_export(detectors, tmp_path):
    cfg, _, _ = detectors["mask_rcnn"]
    _, retinanet_checkpoint, _ = detectors["retinanet"]
    with pytest.raises(ValueError, match="is not a checkpoint of this config's model.*missing"):
        export_onnx(cfg, str(tmp_path / "x"), checkpoint=str(retinanet_checkpoint))
    assert not (tmp_path / "x").exists()  # refused before anything is written
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(retinanet_checkpoint.read_bytes()[:1000])
    with pytest.raises(ValueError, match="Cannot read"):
        load_checkpoint_strict(instantiate(cfg.model), str(truncated))


def test_unsupported_models_are_named(detectors, tmp_path):
    cfg, _, _ = detectors["mask_rcnn"]
    from detectron2.modeling.roi_heads import ROIHeads

    from pvt_fpn_d2.deploy import export_graph

    class OtherROIHeads(ROIHeads):  # neither StandardROIHeads nor CascadeROIHeads
        pass

    model = instantiate(cfg.model).eval()
    heads = OtherROIHeads.__new__(OtherROIHeads)
    torch.nn.Module.__init__(heads)
    model.roi_heads = heads
    with pytest.raises(TypeError, match="this model's ROI heads are OtherROIHeads"):
        export_graph(model)
    with pytest.raises(TypeError, match="No export for Linear"):
        export_graph(torch.nn.Linear(2, 2))


def test_export_failure_names_the_module_and_the_exporters_message(semantic, tmp_path):
    cfg, _, _ = semantic
    from pvt_fpn_d2.modeling import semantic as semantic_module

    head = semantic_module.FPNConcatSemSegHead
    original = head.layers

    def layers(self, features):  # an op the exporter cannot trace: data out to numpy
        out = original(self, features)
        return out + float(out.detach().numpy().mean()) * 0

    head.layers = layers
    try:
        with pytest.raises(RuntimeError) as info:
            export_onnx(cfg, str(tmp_path / "x"))
    finally:
        head.layers = original
    message = str(info.value)
    assert message.startswith("ONNX export of SemanticSegmentor failed in ")
    assert "test_deploy.py" in message and "(layers)" in message


def test_the_graphs_nms_is_torchvisions_per_class_nms_in_onnx_runtime(tmp_path):
    """The graphs' NMS op, exported as one ONNX NonMaxSuppression over all classes and run by
    ONNX Runtime, keeps what torchvision's batched_nms keeps of the boxes above the score
    threshold, class by class; also when that is one box or none (the op declares at least two
    to the exporter, as torchvision's nms does)."""
    import onnxruntime as ort
    from torchvision.ops import batched_nms

    from pvt_fpn_d2.deploy.graphs import graph_translations

    iou, thresh = 0.5, 0.3

    class PerClass(torch.nn.Module):
        def forward(self, boxes, scores):  # (N, 4), (C, N)
            return torch.ops.pvt_fpn_d2.non_max_suppression(boxes[None], scores[None], iou, thresh)

    g = torch.Generator().manual_seed(0)

    def case(n, c, size):
        xy = torch.rand(n, 2, generator=g) * 100
        return torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g) * size], 1), torch.rand(
            c, n, generator=g
        )

    boxes, scores = case(300, 4, 60)
    any_size = torch.export.Dim.DYNAMIC
    dynamic = ({0: any_size}, {0: any_size, 1: any_size})
    exported = torch.export.export(
        PerClass(), (boxes, scores), dynamic_shapes=dynamic, strict=False
    )
    path = tmp_path / "nms.onnx"
    torch.onnx.export(
        exported, (boxes, scores), dynamo=True, opset_version=20,
        custom_translation_table=graph_translations(),
    ).save(str(path))  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    same = torch.tensor([[10.0, 10, 50, 50]]).repeat(5, 1)  # one box five times: one kept
    cases = [(boxes, scores), case(60, 3, 200), (same, torch.rand(1, 5) * 0.5 + 0.4)]
    cases.append((boxes, scores * thresh))  # nothing above the threshold
    kept_counts = []
    for b, s in cases:
        cls, idx = torch.nonzero(s > thresh, as_tuple=True)
        keep = batched_nms(b[idx], s[cls, idx], cls, iou)
        expected = sorted(zip(cls[keep].tolist(), idx[keep].tolist()))
        (rows,) = session.run(None, dict(zip(names, (b.numpy(), s.numpy()))))
        assert rows.shape[1] == 3 and (rows[:, 0] == 0).all()
        assert sorted(map(tuple, rows[:, 1:].tolist())) == expected
        eager = PerClass()(b, s)
        assert sorted(map(tuple, eager[:, 1:].tolist())) == expected
        kept_counts.append(len(expected))
    assert kept_counts[0] > 50 and kept_counts[2:] == [1, 0]


def test_an_image_without_detections_gives_empty_outputs(tiny_dataset, tmp_path):
    """Mask R-CNN with a score threshold no score passes: ONNX Runtime runs the mask head on
    no boxes and the predictor returns empty Instances, as eager does."""
    config = tiny_config(
        tmp_path, tiny_dataset, overrides=["model.roi_heads.box_predictor.test_score_thresh=1.0"]
    )
    cfg, checkpoint, folder = _export(tmp_path, config, "none")
    image = _images()[0]
    a = Predictor(cfg, str(checkpoint)).predict(image)["instances"]
    b = OnnxPredictor(str(folder)).predict(image)["instances"]
    assert len(a) == len(b) == 0 and b.image_size == image.shape[:2]
    assert tuple(b.pred_masks.shape) == (0, *image.shape[:2])
    assert b.pred_boxes.tensor.shape == (0, 4) and b.scores.shape == b.pred_classes.shape == (0,)


def test_the_onnx_predictor_checks_its_input(detectors, tmp_path):
    _, _, folder = detectors["retinanet"]
    onnx = OnnxPredictor(str(folder))
    with pytest.raises(ValueError, match=r"takes \(H, W, 3\) images"):
        onnx.predict(np.zeros((96, 96), np.uint8))
    with pytest.raises(ValueError, match="must be uint8 or float"):
        onnx.predict(np.zeros((96, 96, 3), np.int16))
    with pytest.raises(FileNotFoundError, match="export the model first"):
        OnnxPredictor(str(tmp_path))


@pytest.fixture(scope="session")
def nms_detectors(tmp_path_factory, tiny_dataset):
    """Faster R-CNN and RetinaNet (PVT-v2-b0, random weights) with the NMS IoU threshold 0.3,
    not detectron2's 0.5, exported once per test run. Faster R-CNN's score threshold is not
    0.05 either: it lies in the widest gap between the scores of eager's detections on the
    first test image (score threshold 0, no limit on their number), at least 10 on each side,
    so that eager and ONNX Runtime keep the same ones. RetinaNet keeps threshold 0 (its random
    scores are all ~0.01, too close together for a threshold between them)."""

    def faster_rcnn(folder):
        box = "model.roi_heads.box_predictor"
        overrides = [f"{box}.test_nms_thresh=0.3", f"{box}.test_score_thresh=0.0"]
        path = tiny_config(folder, tiny_dataset, "faster_rcnn_pvt_v2_b0_fpn_coco_json.py",
                           overrides=overrides)  # fmt: skip
        cfg = LazyConfig.load(str(path))
        torch.manual_seed(0)  # the weights _export then saves again, under the same name
        checkpoint = folder / f"{folder.name}.pth"
        torch.save({"model": instantiate(cfg.model).state_dict()}, checkpoint)
        with datasets_registered_here_removed():
            eager = Predictor(cfg, str(checkpoint))
        eager.model.roi_heads.box_predictor.test_topk_per_image = -1
        scores = eager.predict(_images()[0])["instances"].scores.sort(descending=True).values
        gaps = scores[9:-11] - scores[10:-10]  # scores[i] - scores[i + 1], i in [9, N - 11)
        i = 9 + int(gaps.argmax())
        assert float(gaps.max()) > 2e-3, scores
        cfg.model.roi_heads.box_predictor.test_score_thresh = float(scores[i] + scores[i + 1]) / 2
        LazyConfig.save(cfg, str(path))
        return path

    def retinanet(folder):
        overrides = ["model.test_nms_thresh=0.3", "model.test_score_thresh=0.0"]
        return tiny_config(folder, tiny_dataset, "retinanet_pvt_v2_b0_fpn_coco_json.py",
                           overrides=overrides)  # fmt: skip

    makers = {"faster_rcnn_nms": faster_rcnn, "retinanet_nms": retinanet}

    class Exports(dict):  # exported when a test first asks for one
        def __missing__(self, name):
            self[name] = _export_once(tmp_path_factory, name, makers[name])
            return self[name]

    return Exports()


@pytest.mark.parametrize("name", ["faster_rcnn_nms", "retinanet_nms"])
def test_the_exported_nms_uses_the_configs_thresholds(nms_detectors, name):
    """Every other export test keeps detectron2's NMS IoU threshold (0.5): here it is 0.3, and
    Faster R-CNN's score threshold is between its scores, so that a graph with 0.5 (or 0.05)
    written into it keeps other detections than eager."""
    cfg, checkpoint, folder = nms_detectors[name]
    eager = Predictor(cfg, str(checkpoint))
    onnx = OnnxPredictor(str(folder))
    if name == "faster_rcnn_nms":
        head, limit, images = eager.model.roi_heads.box_predictor, "test_topk_per_image", 1
        assert 0.05 < head.test_score_thresh < 1
        defaults = {"test_nms_thresh": 0.5, "test_score_thresh": 0.05}
    else:
        head, limit, images = eager.model, "max_detections_per_image", 3
        defaults = {"test_nms_thresh": 0.5}
    assert head.test_nms_thresh == 0.3 and getattr(head, limit) == 100
    for image in _images()[:images]:
        a, b = eager.predict(image)["instances"], onnx.predict(image)["instances"]
        assert_same_instances(a, b)
        assert 10 <= len(a) < 100  # not cut by the limit: every kept detection counts
        # each threshold matters on this image: eager keeps more with detectron2's default
        for key, default in defaults.items():
            ours = getattr(head, key)
            setattr(head, key, default)
            kept = len(eager.predict(image)["instances"])
            setattr(head, key, ours)
            assert kept > len(a), (key, kept, len(a))


def test_the_onnx_predictor_names_an_image_too_small_after_the_test_resize(nms_detectors):
    """A long thin image that the test resize (short edge 96, long edge at most 128) leaves
    under the exported graph's minimum, and a config whose resize does: the sizes found and
    the way out."""
    cfg, checkpoint, folder = nms_detectors["faster_rcnn_nms"]
    onnx = OnnxPredictor(str(folder))
    low = json.loads((folder / "export.json").read_text())["input"]["min_size"]
    assert low >= 32
    # 20x400 -> short edge 96 (96x1920) -> long edge 128: 6.4x128, rounded to 6x128
    thin = np.full((20, 400, 3), 128, np.uint8)
    with pytest.raises(ValueError) as info:
        onnx.predict(thin)
    message = str(info.value)
    assert "20x400" in message and "6x128" in message and f"{low}x{low}" in message, message
    assert "Pad the image" in message and "dataloader.test.mapper.augmentations" in message
    # 40x100 -> 51x128: runs
    assert onnx.predict(np.full((40, 100, 3), 128, np.uint8))["instances"].image_size == (40, 100)

    small = LazyConfig.load(str(folder / "config.yaml"))
    resize = small.dataloader.test.mapper.augmentations[0]
    resize.short_edge_length, resize.max_size = 16, 1333
    with pytest.raises(ValueError, match="96x128 image is 16x21 after the test resize"):
        OnnxPredictor(str(folder), small).predict(_images()[0])


def test_the_onnx_predictor_uses_as_many_threads_as_torch(detectors, monkeypatch):
    """ONNX Runtime's own default (a spinning thread per core) ignores OMP_NUM_THREADS and the
    eager side's torch threads; the predictor follows torch unless told otherwise."""
    _, _, folder = detectors["retinanet"]
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    threads = lambda p: p.session.get_session_options().intra_op_num_threads  # noqa: E731
    assert threads(OnnxPredictor(str(folder))) == 3
    assert threads(OnnxPredictor(str(folder), threads=2)) == 2


@pytest.mark.parametrize("task", ["classification", "depth"])
def test_classifier_and_depth_onnx_match_eager(tmp_path, task):
    from pvt_fpn_d2.data import generate_synthetic_classification, generate_synthetic_depth

    if task == "classification":
        data = generate_synthetic_classification(str(tmp_path / "d"), 3, 3, image_size=64)
        config = "configs/Classification/classifier_pvt_v2_b0_synthetic.py"
        overrides = [f"dataset.{s}_root={data[s]}" for s in ("train", "val")]
        key, tolerance = "scores", 1e-5
    else:
        data = generate_synthetic_depth(str(tmp_path / "d"), 3, 3, image_size=64)
        config = "configs/Depth/depth_pvt_v2_b0_synthetic.py"
        overrides = [f"dataset.{s}_{k}={data['train' if s == 'train' else 'val'][r]}"
                     for s in ("train", "val")
                     for k, r in (("images", "image_root"), ("depth", "depth_root"))]  # fmt: skip
        key, tolerance = "depth", 1e-3  # metres
    cfg = apply_overrides(LazyConfig.load(str(REPO / config)), overrides)
    path = tmp_path / "config.yaml"
    LazyConfig.save(cfg, str(path))
    cfg, checkpoint, folder = _export(tmp_path, path, task)
    eager, onnx = Predictor(cfg, str(checkpoint)), OnnxPredictor(str(folder))
    for image in _images():
        a, b = eager.predict(image)[key], onnx.predict(image)[key]
        assert a.shape == b.shape
        assert float((a - b).abs().max()) <= tolerance


def test_benchmark_export_task_measures_the_exported_file(detectors, tmp_path):
    """tools/benchmark.py --task export --onnx DIR: the file against its eager model (the
    checkpoint named in export.json), each side's outputs matched to eager's."""
    from .test_benchmark import _run

    _, _, folder = detectors["retinanet"]
    r = _run(tmp_path, "--task", "export", "--onnx", folder, "--image-size", "96", "128",
             "--iters", "1", "--warmup", "0", "--threads", "1", "--profile", "3")  # fmt: skip
    (m,) = r["export"]
    assert m["threads"] == 1 and m["image_size"] == [96, 128]
    assert {"eager", "eager_graph", "onnxruntime"} <= set(m["sides"])
    for name, side in m["sides"].items():
        assert side["median_ms"] > 0
        if name == "openvino_bf16":  # where OpenVINO is installed: bf16, not within fp32 bounds
            continue
        match = side["vs_eager"]
        assert match["detections"][0] == match["detections"][1] == 100
        assert match["unmatched"] == 0 and match["max_box_diff_px"] <= 0.5
        assert match["max_score_diff"] <= 1e-3
    assert m["sides"]["eager"]["ratio_to_eager"] == 1.0
    assert len(m["ort_profile"]) == 3 and 0 < sum(op["share"] for op in m["ort_profile"]) <= 1


@pytest.mark.parametrize("variant", ["pvt_v2_b0", "pvt_v2_b2_li"])  # spatial reduction, pooling
def test_export_forms_compute_timms_layers(variant):
    """The export-time attention and MLP (pvt_fpn_d2.deploy.pvt_layers) against timm's own
    forward passes, with both attention forms; timm's come back after the block."""
    from timm.models import pvt_v2

    from pvt_fpn_d2.deploy.pvt_layers import export_forms
    from pvt_fpn_d2.modeling.backbone import PVTv2Backbone

    torch.manual_seed(0)
    backbone = PVTv2Backbone(variant, drop_path_rate=0.0).eval()
    layers = [m for m in backbone.modules()
              if isinstance(m, (pvt_v2.Attention, pvt_v2.MlpWithDepthwiseConv))]  # fmt: skip
    x = torch.randn(1, 3, 96, 160)
    with torch.no_grad():
        ref = backbone(x)
        for ops in ("onnxruntime", "standard"):
            with export_forms(backbone, ops) as changed:
                assert changed == len(layers) == 2 * sum(backbone.model.depths)
                assert all("forward" in vars(m) for m in layers)
                out = backbone(x)
            for k, t in ref.items():
                torch.testing.assert_close(out[k], t, rtol=0, atol=2e-5)
    assert not any("forward" in vars(m) for m in layers)
    with pytest.raises(ValueError, match="ops must be one of"):
        with export_forms(backbone, "tensorrt"):
            pass


def _onnx_ops(folder):
    import onnx

    return [(n.domain, n.op_type) for n in onnx.load(str(folder / "model.onnx")).graph.node]


def _stage_nodes(folder):
    """The nodes the PVT-v2 stages exported (by the exporter's module namespace)."""
    import onnx

    def scope(n):
        return next((p.value for p in n.metadata_props if p.key == "namespace"), "")

    graph = onnx.load(str(folder / "model.onnx")).graph
    return [n for n in graph.node if "bottom_up.model.stages" in scope(n)]


def _backbone_transposes(folder):
    """The perms of the Transpose nodes the PVT-v2 stages exported."""
    return [tuple(next(a.ints for a in n.attribute if a.name == "perm"))
            for n in _stage_nodes(folder) if n.op_type == "Transpose"]  # fmt: skip


def test_default_export_runs_ort_attention_and_standard_ops_are_portable(detectors, tmp_path):
    """The default file has one MultiHeadAttention per PVT-v2 block, and the stages transpose
    only between (B, H, W, C) and NCHW, which ONNX Runtime folds into its convolutions' layout
    reorders (the speed of pvt_layers); --ops standard has only standard ONNX operators and the same
    detections as eager through ONNX Runtime."""
    cfg, checkpoint, folder = detectors["mask_rcnn"]
    spec = json.loads((folder / "export.json").read_text())
    assert spec["ops"] == "onnxruntime" and spec["opset"] >= 20
    ops = _onnx_ops(folder)
    blocks = sum(instantiate(cfg.model).backbone.bottom_up.model.depths)
    assert ops.count(("com.microsoft", "MultiHeadAttention")) == blocks
    assert not [n for n in _stage_nodes(folder) if n.op_type == "Softmax"]
    perms = _backbone_transposes(folder)  # timm's layers: also (0, 2, 1) and head splits
    assert perms and set(perms) <= {(0, 3, 1, 2), (0, 2, 3, 1)}

    with datasets_registered_here_removed():
        spec = export_onnx(cfg, str(tmp_path / "std"), checkpoint=str(checkpoint), ops="standard")
    assert spec["ops"] == "standard"
    std = _onnx_ops(tmp_path / "std")
    assert {d for d, _ in std} == {""}
    assert [n.op_type for n in _stage_nodes(tmp_path / "std")].count("Softmax") == blocks
    assert set(_backbone_transposes(tmp_path / "std")) - {(0, 3, 1, 2), (0, 2, 3, 1)}  # heads
    eager, onnx = Predictor(cfg, str(checkpoint)), OnnxPredictor(str(tmp_path / "std"), cfg)
    image = _images()[1]
    assert_same_instances(eager.predict(image)["instances"], onnx.predict(image)["instances"])
    with pytest.raises(ValueError, match="ops must be one of"):
        export_onnx(cfg, str(tmp_path / "bad"), checkpoint=str(checkpoint), ops="tensorrt")
    assert not (tmp_path / "bad").exists()


def test_export_model_py_writes_a_file_that_runs_and_prints_no_third_party_warnings(
    detectors, tmp_path
):
    """The docs' command: tools/export_model.py with a checkpoint and --ops standard; the
    folder's OnnxPredictor gives the eager detections, and the first screen has only the
    project's own lines (torch.export's trace of torchvision's nms warns once per NMS)."""
    from .test_first_screen import third_party_warnings

    cfg, checkpoint, _ = detectors["mask_rcnn"]
    cfg_file = tmp_path / "config.yaml"
    LazyConfig.save(cfg, str(cfg_file))
    out = tmp_path / "onnx"
    env = subprocess_env()
    del env["PYTHONWARNINGS"]  # Python's default filters, as a user runs it
    r = subprocess.run(
        [sys.executable, str(REPO / "tools/export_model.py"), "--config-file", str(cfg_file),
         "--checkpoint", str(checkpoint), "--output", str(out), "--ops", "standard"],
        capture_output=True, text=True, timeout=600, env=env, cwd=REPO,
    )  # fmt: skip
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-5000:]
    assert f"-> {out}/model.onnx" in log and "outside the graph:" in log
    assert third_party_warnings(log) == [], log[-3000:]
    spec = json.loads((out / "export.json").read_text())
    assert spec["ops"] == "standard" and {d for d, _ in _onnx_ops(out)} == {""}
    image = _images()[0]
    eager, onnx = Predictor(cfg, str(checkpoint)), OnnxPredictor(str(out))
    assert_same_instances(eager.predict(image)["instances"], onnx.predict(image)["instances"])
