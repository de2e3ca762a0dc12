"""PVT-v2 ImageNet weights in every format: backbone loader, converter, checkpointer (#3)."""

import logging
import runpy
import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import save_file

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.model_zoo import get_config

from pvt_fpn_d2 import PVTCheckpointer, PVTv2Backbone
from pvt_fpn_d2.modeling.weights import (
    UnsafeCheckpointError,
    detect_format,
    fetch_timm_hub_weights,
    load_pvt_v2_weights,
    read_checkpoint,
)

from .conftest import REPO, subprocess_env
from .weight_formats import official_to_hf, timm_to_features_only, timm_to_official

FORMATS = ["official", "timm_pth", "timm_safetensors", "timm_features_only", "hf", "hf_wrapped"]


def _source(name="pvt_v2_b0", seed=1):
    """A timm ImageNet classifier with random (seeded) weights: the 'published' model."""
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False).eval()


def _write(fmt: str, sd, path):
    if fmt == "official":
        torch.save(timm_to_official(sd), path)
    elif fmt == "timm_pth":
        torch.save(sd, path)
    elif fmt == "timm_safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    elif fmt == "timm_features_only":
        torch.save(timm_to_features_only(sd), path)
    elif fmt == "hf":
        save_file(official_to_hf(timm_to_official(sd)), str(path))
    elif fmt == "hf_wrapped":  # a PvtV2Model (no classifier, no "pvt_v2." prefix) in a dict
        hf = official_to_hf(timm_to_official(sd))
        hf = {k[len("pvt_v2.") :]: v for k, v in hf.items() if k.startswith("pvt_v2.")}
        torch.save({"state_dict": hf}, path)
    return path


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["pvt_v2_b0", "pvt_v2_b2_li"])
def test_backbone_loads_every_format_exactly(tmp_path, fmt, name, caplog):
    src = _source(name)
    path = _write(fmt, src.state_dict(), tmp_path / f"w.{fmt}")
    backbone = PVTv2Backbone(name, drop_path_rate=0.0)
    with caplog.at_level(logging.INFO, logger="pvt_fpn_d2.modeling.weights"):
        summary = load_pvt_v2_weights(backbone, str(path))
    assert summary.missing == [] and summary.shape_mismatches == []
    assert len(summary.matched) == len(backbone.model.state_dict())
    # only the classifier may be left over
    assert all(k.startswith("head.") for k in summary.unexpected)
    assert "matched" in caplog.text and "0 missing" in caplog.text
    for k, v in backbone.model.state_dict().items():
        torch.testing.assert_close(v, src.state_dict()[k], rtol=0, atol=0, msg=k)
    # and the features are the source model's features
    backbone.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = list(backbone(x).values())
        theirs = src.forward_intermediates(x, intermediates_only=True)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_weights_argument_loads_at_construction(tmp_path):
    src = _source()
    path = _write("official", src.state_dict(), tmp_path / "pvt_v2_b0.pth")
    backbone = PVTv2Backbone("pvt_v2_b0", weights=str(path))
    torch.testing.assert_close(
        backbone.model.stages[3].norm.weight, src.stages[3].norm.weight, rtol=0, atol=0
    )


def test_wrong_variant_is_an_error_that_names_both(tmp_path):
    path = _write("official", _source("pvt_v2_b0").state_dict(), tmp_path / "b0.pth")
    with pytest.raises(ValueError, match=r"checkpoint is pvt_v2_b0, the model is pvt_v2_b1"):
        PVTv2Backbone("pvt_v2_b1", weights=str(path))


def test_missing_backbone_parameter_is_an_error(tmp_path):
    sd = _source().state_dict()
    del sd["stages.2.blocks.1.attn.q.weight"]
    path = _write("timm_pth", sd, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"1 missing \(stages.2.blocks.1.attn.q.weight\)"):
        PVTv2Backbone("pvt_v2_b0", weights=str(path))


def test_unknown_format_is_an_error(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1), "fc.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="Not a PVT-v2 checkpoint in a known format"):
        PVTv2Backbone("pvt_v2_b0", weights=str(path))


def test_missing_file_is_an_error():
    with pytest.raises(FileNotFoundError, match="does-not-exist.pth"):
        PVTv2Backbone("pvt_v2_b0", weights="does-not-exist.pth")


def test_files_are_read_without_unpickling_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("code from the checkpoint ran",))

    path = tmp_path / "evil.pth"
    torch.save({"model": Payload()}, path)
    with pytest.raises(UnsafeCheckpointError, match="could run code"):
        read_checkpoint(str(path))


def _converter():
    return runpy.run_path(str(REPO / "tools/convert_pvt_v2_weights.py"), run_name="converter")


@pytest.mark.parametrize("fmt", ["official", "hf", "timm_safetensors"])
def test_converter_output_loads_with_plain_detectron2_checkpointer(tmp_path, fmt, capsys):
    src = _source()
    raw = _write(fmt, src.state_dict(), tmp_path / f"in.{fmt}")
    out = tmp_path / "pvt_v2_b0_d2.pth"
    if fmt == "official":  # the command line, once
        r = subprocess.run(
            [sys.executable, str(REPO / "tools/convert_pvt_v2_weights.py"), str(raw), str(out)],
            capture_output=True,
            text=True,
            env=subprocess_env(),
        )
        assert r.returncode == 0, r.stderr
        assert "pvt_v2_b0, official format" in r.stdout
    else:
        _converter()["main"]([str(raw), str(out)])
        assert f"pvt_v2_b0, {detect_format(_converter_sd(raw))} format" in capsys.readouterr().out
    cfg = LazyConfig.load(str(REPO / "configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py"))
    model = instantiate(cfg.model)
    DetectionCheckpointer(model).load(str(out))  # detectron2's own, as MODEL.WEIGHTS does
    loaded = model.backbone.bottom_up.model.state_dict()
    for k, v in src.state_dict().items():
        if not k.startswith("head."):
            torch.testing.assert_close(loaded[k], v, rtol=0, atol=0, msg=k)


def test_converter_rejects_a_truncated_checkpoint(tmp_path):
    sd = _source().state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith("stages.3.")}
    raw = _write("timm_pth", sd, tmp_path / "cut.pth")
    with pytest.raises(SystemExit, match="does not match any PVT-v2 variant"):
        _converter()["main"]([str(raw), str(tmp_path / "o.pth")])
    assert not (tmp_path / "o.pth").exists()


def _converter_sd(path):
    from pvt_fpn_d2.modeling.weights import extract_state_dict

    return extract_state_dict(read_checkpoint(str(path)))


def _mask_rcnn(name="pvt_v2_b0", num_classes=80):
    cfg = LazyConfig.load(str(REPO / f"configs/COCO/mask_rcnn_{name}_fpn_1x.py"))
    cfg.model.roi_heads.num_classes = num_classes
    return instantiate(cfg.model)


@pytest.mark.parametrize("fmt", ["official", "hf", "timm_safetensors"])
def test_checkpointer_takes_original_files_as_init_checkpoint(tmp_path, fmt, caplog):
    src = _source()
    raw = _write(fmt, src.state_dict(), tmp_path / f"in.{fmt}")
    model = _mask_rcnn()
    with caplog.at_level(logging.INFO, logger="pvt_fpn_d2.engine.checkpoint"):
        PVTCheckpointer(model).resume_or_load(str(raw), resume=False)
    n = len(model.backbone.bottom_up.model.state_dict())
    assert f"{n} matched, 0 missing, 0 unexpected, 0 shape mismatches" in caplog.text
    torch.testing.assert_close(
        model.backbone.bottom_up.model.stages[2].blocks[1].attn.kv.weight,
        src.stages[2].blocks[1].attn.kv.weight,
        rtol=0,
        atol=0,
    )


def test_checkpointer_refuses_a_checkpoint_of_another_architecture(tmp_path):
    r50 = instantiate(get_config("common/models/mask_rcnn_fpn.py").model)
    path = tmp_path / "r50.pth"
    torch.save({"model": r50.state_dict()}, path)
    with pytest.raises(
        ValueError, match=r"another architecture or variant than this model \(pvt_v2_b0\)"
    ):
        PVTCheckpointer(_mask_rcnn()).load(str(path))


def test_checkpointer_refuses_another_pvt_variant(tmp_path):
    path = tmp_path / "b1.pth"
    torch.save({"model": _mask_rcnn("pvt_v2_b1").state_dict()}, path)
    with pytest.raises(ValueError, match="shape mismatches"):
        PVTCheckpointer(_mask_rcnn("pvt_v2_b0")).load(str(path))


def test_timm_hub_offline_error_names_the_file_and_config_key():
    # HF_HUB_OFFLINE=1 is set by conftest: no download is attempted
    with pytest.raises(RuntimeError) as e:
        fetch_timm_hub_weights("pvt_v2_b2")
    msg = str(e.value)
    assert "https://huggingface.co/timm/pvt_v2_b2.in1k/resolve/main/model.safetensors" in msg
    assert "train.init_checkpoint" in msg and "MODEL.WEIGHTS" in msg


def test_timm_url_in_init_checkpoint_gives_the_same_error(tmp_path, monkeypatch):
    monkeypatch.setattr("iopath.common.file_io.get_cache_dir", lambda *a: str(tmp_path))
    monkeypatch.setattr("pvt_fpn_d2.engine.checkpoint.get_cache_dir", lambda *a: str(tmp_path))
    with pytest.raises(RuntimeError, match="pvt_v2_b0.in1k/resolve/main/model.safetensors"):
        PVTCheckpointer(_mask_rcnn()).resume_or_load("timm://pvt_v2_b0", resume=False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_detect_format(tmp_path, fmt):
    path = _write(fmt, _source().state_dict(), tmp_path / "w")
    expected = {
        "timm_pth": "timm",
        "timm_safetensors": "timm",
        "timm_features_only": "timm",
        "hf_wrapped": "hf",
    }.get(fmt, fmt)
    assert detect_format(_converter_sd(path)) == expected
