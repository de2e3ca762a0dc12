"""int8 quantization of exported files (tools/export_model.py --quantize int8,
pvt_fpn_d2.deploy.quantize) and the evaluation of exported files like checkpoints
(tools/evaluate_exported.py, pvt_fpn_d2.deploy.evaluate)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from detectron2.config import LazyConfig
from detectron2.data import DatasetCatalog

from pvt_fpn_d2.deploy import OnnxPredictor
from pvt_fpn_d2.deploy import quantize as Q
from pvt_fpn_d2.deploy.evaluate import evaluate_exported

from .conftest import (
    REPO,
    datasets_registered_here_removed,
    run_tool,
    run_train_net,
    subprocess_env,
    tiny_config,
)
from .test_deploy import _images, detectors  # noqa: F401 - the exported detectors fixture


def _copy(detectors, name, tmp_path):  # noqa: F811
    """A copy of an exported detector's folder (quantizing writes into it) and of its config
    (the fixture's is shared by the tests)."""
    _, checkpoint, folder = detectors[name]
    shutil.copytree(folder, tmp_path / name)
    return LazyConfig.load(str(tmp_path / name / "config.yaml")), checkpoint, tmp_path / name


def _constant_weights(path):
    """The constant weights of the Conv / Gemm / MatMul nodes of an fp32 file: what int8 turns
    (nodes and their weights: the RPN head's convolutions run once per level on one weight)."""
    model = onnx.load(str(path))
    constants = {i.name for i in model.graph.initializer}
    weights = [
        n.input[1]
        for n in model.graph.node
        if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1 and n.input[1] in constants
    ]
    return len(weights), len(set(weights))


def _int8_weights(path):
    """int8 constants of 2 or more dimensions: weights (zero points are vectors)."""
    model = onnx.load(str(path))
    return sum(
        1
        for i in model.graph.initializer
        if i.data_type == onnx.TensorProto.INT8 and len(i.dims) >= 2
    )


@pytest.mark.parametrize("name", ["mask_rcnn", "retinanet"])
def test_int8_file_has_int8_weights_and_runs_like_the_fp32_one(
    detectors, tmp_path, name  # noqa: F811
):
    cfg, _, folder = _copy(detectors, name, tmp_path)
    with datasets_registered_here_removed():
        entry = Q.quantize_int8(str(folder), cfg, num_images=3)
    int8 = folder / "model_int8.onnx"
    # every constant-weight layer of the fp32 file, counted there, has an int8 weight here
    layers, weights = _constant_weights(folder / "model.onnx")
    assert weights >= 40 and _int8_weights(int8) == weights
    assert sum(Q.quantized_layers(str(int8)).values()) == layers == sum(entry["quantized"].values())
    assert int8.stat().st_size < 0.5 * (folder / "model.onnx").stat().st_size
    spec = json.loads((folder / "export.json").read_text())
    assert spec["int8"]["file"] == "model_int8.onnx" and spec["int8"]["calibration"]["images"] == 3
    assert spec["int8"]["calibration"]["dataset"] == "coco_json_train"

    fp32, q = OnnxPredictor(str(folder / "model.onnx")), OnnxPredictor(str(int8))
    for image in _images():
        a, b = fp32.predict(image)["instances"], q.predict(image)["instances"]
        assert 90 <= len(a) <= 100 and 90 <= len(b) <= 100  # score threshold 0, after NMS
        boxes = b.pred_boxes.tensor
        assert torch.isfinite(boxes).all() and torch.isfinite(b.scores).all()
        # not the fp32 file run again, and not another model: the same boxes up to int8 noise
        assert not torch.equal(a.scores, b.scores)
        h, w = image.shape[:2]
        assert (boxes[:, 0::2] <= w).all() and (boxes[:, 1::2] <= h).all()


def test_the_exported_files_ap_is_eval_onlys_and_a_perturbed_file_scores_otherwise(
    detectors, tmp_path  # noqa: F811
):
    """Random weights at score threshold 0 (100 detections per image): a small AP, not 0."""
    _, checkpoint, folder = detectors["mask_rcnn"]
    cfg = LazyConfig.load(str(folder / "config.yaml"))  # a copy: the fixture's is shared
    # evaluated at 128 px: the 96 px images are resized, so outputs must go back to 96 px
    resize = cfg.dataloader.test.mapper.augmentations[0]
    resize.short_edge_length, resize.max_size = 128, 160
    cfg_file = tmp_path / "config.yaml"
    LazyConfig.save(cfg, str(cfg_file))
    # the eager AP from train_net.py --eval-only: the path users evaluate checkpoints with
    run_train_net("--config-file", cfg_file, "--eval-only", f"train.init_checkpoint={checkpoint}",
                  f"train.output_dir={tmp_path / 'eval'}")  # fmt: skip
    eager = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    assert eager["bbox"]["AP"] > 0.1

    # one conv weight of the box head's input scaled: a file that should score otherwise
    model = onnx.load(str(folder / "model.onnx"))
    weight = next(i for i in model.graph.initializer if i.name.endswith("box_head.fc1.weight"))
    values = onnx.numpy_helper.to_array(weight) * 0.5
    weight.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), weight.name))
    perturbed = tmp_path / "perturbed"
    perturbed.mkdir()
    for f in ("export.json", "config.yaml"):
        shutil.copy(folder / f, perturbed / f)
    onnx.save(model, str(perturbed / "model.onnx"))

    out = tmp_path / "exported_eval"
    run_tool("tools/evaluate_exported.py", "--model", folder / "model.onnx",
             perturbed / "model.onnx", "--checkpoint", checkpoint, "--output", out,
             "--config-file", cfg_file)  # fmt: skip
    results = json.loads((out / "eval_exported.json").read_text())
    exported, other = results[str(folder / "model.onnx")], results[str(perturbed / "model.onnx")]
    same = results[f"eager {checkpoint}"]["bbox"]["AP"]
    assert same == pytest.approx(eager["bbox"]["AP"], abs=1e-3)
    for task in ("bbox", "segm"):
        assert exported[task]["AP"] == pytest.approx(eager[task]["AP"], abs=1e-3)
    assert abs(other["bbox"]["AP"] - eager["bbox"]["AP"]) > 1e-2


def test_export_model_py_quantize_evaluate_records_both_aps(tmp_path, tiny_dataset):
    cfg_file = tiny_config(tmp_path, tiny_dataset)
    out = tmp_path / "onnx"
    result = run_tool("tools/export_model.py", "--config-file", cfg_file, "--output", out,
                      "--quantize", "int8", "--calibration-images", "2", "--evaluate")  # fmt: skip
    assert "Please consider" not in result.stdout + result.stderr  # onnxruntime's notice
    spec = json.loads((out / "export.json").read_text())
    assert spec["int8"]["calibration"]["images"] == 2
    ap = spec["int8"]["ap"]
    assert ap["dataset"] == "coco_json_val"
    for name in ("model.onnx", "model_int8.onnx"):
        assert set(ap[name]) == {"bbox", "segm"}
        assert all(np.isfinite(v) for v in ap[name].values())
    assert "model_int8.onnx" in result.stdout and "AP on coco_json_val" in result.stdout

    # and predict.py runs the int8 file
    pred = tmp_path / "pred"
    run_tool("tools/predict.py", "--config-file", cfg_file, "--model", out / "model_int8.onnx",
             "--input", tiny_dataset["val"]["image_root"], "--output", pred,
             "--confidence-threshold", "0.0")  # fmt: skip
    predictions = json.loads((pred / "predictions.json").read_text())
    assert len(predictions["images"]) == 3 and predictions["annotations"]


def test_calibration_mistakes_are_named(detectors, tmp_path, tiny_dataset):  # noqa: F811
    cfg, _, folder = _copy(detectors, "mask_rcnn", tmp_path)
    with datasets_registered_here_removed():
        with pytest.raises(ValueError, match="needs a few hundred images"):
            empty = tmp_path / "empty.json"
            data = json.loads(open(tiny_dataset["train"]["json_file"]).read())
            empty.write_text(json.dumps({**data, "images": [], "annotations": []}))
            cfg.dataset.train_json = str(empty)
            Q.quantize_int8(str(folder), cfg)
        with pytest.raises(KeyError, match="'nope' is not registered"):
            Q.quantize_int8(str(folder), cfg, dataset="nope")
        with pytest.raises(ValueError, match="1 or more"):
            Q.quantize_int8(str(folder), cfg, dataset="synthetic_val", num_images=0)
    # an image that cannot be read: named, and no int8 file left behind; the config's own
    # dataset is checked when it is registered, any other registered one here
    images = tmp_path / "images"
    shutil.copytree(tiny_dataset["train"]["image_root"], images)
    first = sorted(images.iterdir())[0]
    first.write_bytes(b"not an image")
    cfg = LazyConfig.load(str(folder / "config.yaml"))
    cfg.dataset.train_json = tiny_dataset["train"]["json_file"]
    cfg.dataset.train_images = str(images)
    with datasets_registered_here_removed():
        with pytest.raises(ValueError, match=rf"{first.name}: cannot read the image"):
            Q.quantize_int8(str(folder), cfg, num_images=100)
        DatasetCatalog.register("broken_images", lambda: [{"file_name": str(first)}])
        with pytest.raises(ValueError, match=rf"Calibration image .*{first.name} cannot be read"):
            Q.quantize_int8(str(folder), cfg, dataset="broken_images")
    assert not (folder / "model_int8.onnx").exists()


def test_a_runtime_that_cannot_run_int8_is_named_and_leaves_no_file(
    detectors, tmp_path, monkeypatch  # noqa: F811
):
    import onnxruntime as ort

    cfg, _, folder = _copy(detectors, "retinanet", tmp_path)

    class NoInt8(ort.InferenceSession):
        def run(self, *args, **kwargs):
            raise ort.capi.onnxruntime_pybind11_state.NotImplemented(
                "Could not find an implementation for QLinearConv"
            )

    monkeypatch.setattr(ort, "InferenceSession", NoInt8)
    with datasets_registered_here_removed(), pytest.raises(RuntimeError) as e:
        Q.quantize_int8(str(folder), cfg, num_images=2)
    assert "could not quantize or run" in str(e.value) and "QLinearConv" in str(e.value)
    assert "Serve the fp32 model.onnx" in str(e.value)
    assert not list(folder.glob("model_int8.onnx*"))


def test_evaluate_exported_refuses_a_config_of_another_channel_order(detectors):  # noqa: F811
    _, _, folder = detectors["retinanet"]
    cfg = LazyConfig.load(str(folder / "config.yaml"))
    cfg.dataloader.test.mapper.image_format = "BGR"
    with datasets_registered_here_removed(), pytest.raises(ValueError, match="takes RGB"):
        evaluate_exported(cfg, str(folder / "model.onnx"))


def test_evaluate_exported_py_needs_a_config(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    r = subprocess.run(
        [sys.executable, str(REPO / "tools/evaluate_exported.py"), "--model",
         str(tmp_path / "model.onnx")],
        capture_output=True, text=True, env=subprocess_env(), cwd=REPO,
    )  # fmt: skip
    assert r.returncode != 0 and "give --config-file" in r.stderr


def test_the_synthetic_retinanet_config_trains_evaluates_and_quantizes(tmp_path, tiny_dataset):
    """configs/synthetic/retinanet_pvt_v2_b0_fpn_synthetic.py (the int8 AP table's RetinaNet)
    on the tiny set: 2 iterations, evaluation, and its int8 file."""
    config = "configs/synthetic/retinanet_pvt_v2_b0_fpn_synthetic.py"
    data = [
        f"dataset.train_json={tiny_dataset['train']['json_file']}",
        f"dataset.train_images={tiny_dataset['train']['image_root']}",
        f"dataset.val_json={tiny_dataset['val']['json_file']}",
        f"dataset.val_images={tiny_dataset['val']['image_root']}",
    ]
    out = tmp_path / "out"
    run_train_net("--config-file", config, *data, "train.max_iter=2", "train.eval_period=2",
                  f"train.output_dir={out}", "dataloader.train.num_workers=0")  # fmt: skip
    ap = json.loads((out / "eval_results.json").read_text())
    assert set(ap) == {"bbox"} and "AP" in ap["bbox"]  # NaN: nothing above 0.05 after 2 steps
    run_tool("tools/export_model.py", "--config-file", config, "--checkpoint",
             out / "model_final.pth", "--output", out / "onnx", "--quantize", "int8",
             "--calibration-images", "2", *data)  # fmt: skip
    spec = json.loads((out / "onnx" / "export.json").read_text())
    assert spec["meta_architecture"] == "ClippedRetinaNet"
    assert spec["int8"]["quantized"]["Conv"] >= 30


def test_export_model_py_evaluate_needs_quantize(tmp_path):
    r = subprocess.run(
        [sys.executable, str(REPO / "tools/export_model.py"), "--config-file",
         "configs/synthetic/mask_rcnn_pvt_v2_b0_fpn_synthetic.py", "--output", str(tmp_path),
         "--evaluate"],
        capture_output=True, text=True, env=subprocess_env(), cwd=REPO,
    )  # fmt: skip
    assert r.returncode == 2 and "add --quantize int8" in r.stderr
    assert not (tmp_path / "model.onnx").exists()
