"""The installed stack: detectron2 imports and trains on this machine (issue #2)."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detectron2 import model_zoo
from detectron2.config import instantiate
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

REPO = Path(__file__).resolve().parents[1]
import install_detectron2 as installer  # tools/ (setup.cfg's pytest pythonpath)  # noqa: E402


@pytest.mark.parametrize("module", installer.REQUIRED_MODULES)
def test_detectron2_subpackage_imports(module):
    importlib.import_module(module)


def test_model_zoo_lazy_config_is_packaged():
    cfg = model_zoo.get_config("common/models/mask_rcnn_fpn.py")
    assert cfg.model.roi_heads.num_classes == 80
    assert cfg.model.backbone.out_channels == 256


def _r50_mask_rcnn(num_classes=3):
    cfg = model_zoo.get_config("common/models/mask_rcnn_fpn.py")
    cfg.model.roi_heads.num_classes = num_classes
    torch.manual_seed(0)
    return instantiate(cfg.model)


def test_r50_fpn_mask_rcnn_trains_one_step_and_infers_on_cpu():
    model = _r50_mask_rcnn()
    image = torch.randint(0, 256, (3, 120, 150), dtype=torch.uint8)
    gt = Instances((120, 150))
    gt.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 70.0, 90.0], [60.0, 20.0, 140.0, 100.0]]))
    gt.gt_classes = torch.tensor([0, 2])
    gt.gt_masks = PolygonMasks([[[10, 12, 70, 12, 70, 90, 10, 90]], [[60, 20, 140, 20, 100, 100]]])
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    with EventStorage():
        losses = model([{"image": image, "instances": gt}])
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    grads = [p.grad for p in model.roi_heads.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    optimizer.step()

    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 240, "width": 300}])
    inst = out["instances"]
    assert inst.image_size == (240, 300)  # rescaled to the requested output size
    assert inst.pred_masks.shape[1:] == (240, 300)
    assert len(inst) == len(inst.scores) == len(inst.pred_classes)


def _has_compiled_ops() -> bool:
    try:
        importlib.import_module("detectron2._C")
    except ImportError:
        return False
    return True


@pytest.mark.skipif(_has_compiled_ops(), reason="this detectron2 has its C++ ops compiled")
def test_missing_cpp_op_raises_documented_error():
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[10.0, 10.0, 4.0, 4.0, 0.0]])
    with pytest.raises(
        RuntimeError, match=r"C\+\+ op 'box_iou_rotated' is not available.*" r"rotated boxes"
    ):
        pairwise_iou_rotated(boxes, boxes)


@pytest.mark.skipif(_has_compiled_ops(), reason="this detectron2 has its C++ ops compiled")
def test_fast_cocoeval_without_ops_names_the_op():
    from detectron2.evaluation.fast_eval_api import COCOeval_opt  # import itself must work

    assert COCOeval_opt is not None
    from detectron2._missing_ops import _C

    with pytest.raises(RuntimeError, match="fast COCOeval"):
        _C.COCOevalAccumulate


def test_flop_count_analysis_of_a_whole_detectron2_model():
    """compat.flop_count_analysis_class: detectron2's FLOP counter, also where v0.6's
    detectron2.export cannot import (caffe2); it traces the list-of-dict inputs."""
    from pvt_fpn_d2.compat import flop_count_analysis_class

    cls = flop_count_analysis_class()
    assert (cls.__module__, cls.__name__) == ("detectron2.utils.analysis", "FlopCountAnalysis")
    model = _r50_mask_rcnn().eval()
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        counter = cls(model, [{"image": image}]).unsupported_ops_warnings(False)
        backbone = counter.by_module()["model.backbone.bottom_up"]  # inside the tracing adapter
    assert 0 < backbone < counter.total()


def test_pkg_resources_available_for_model_zoo():
    # problem 7: detectron2.model_zoo imports pkg_resources (setuptools<81)
    import pkg_resources  # noqa: F401


# ---- the installer's own checks (no sdist needed: fake trees with the targeted text) ----


def _fake_sdist(root: Path, drop=None):
    """Write every file the fixes target, containing the targeted text (minus ``drop``)."""
    for patch in installer.PATCHES:
        if isinstance(patch, installer.Patch):
            f = root / patch.path
            f.parent.mkdir(parents=True, exist_ok=True)
            old = f.read_text() if f.exists() else ""
            if patch is not drop:
                old += patch.old
            f.write_text(old + "\n")
        elif isinstance(patch, installer.RegexPatch):
            for rel in patch.paths:
                f = root / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text((f.read_text() if f.exists() else "") + "x = np.bool\n")


def test_installer_applies_every_fix_to_matching_text(tmp_path):
    _fake_sdist(tmp_path)
    installer.apply_patches(tmp_path)
    setup_py = (tmp_path / "setup.py").read_text()
    assert "ext_modules=[]" in setup_py and "black==21.4b2" not in setup_py
    assert "Image.LINEAR" not in (tmp_path / "detectron2/data/transforms/transform.py").read_text()
    assert "np.bool" not in (tmp_path / "detectron2/structures/masks.py").read_text()
    assert (tmp_path / "detectron2/_missing_ops.py").is_file()


@pytest.mark.parametrize(
    "index", [i for i, p in enumerate(installer.PATCHES) if isinstance(p, installer.Patch)]
)
def test_installer_reports_a_fix_whose_target_is_missing(tmp_path, index):
    patch = installer.PATCHES[index]
    _fake_sdist(tmp_path, drop=patch)
    with pytest.raises(installer.PatchError, match=f"problem {patch.problem}.*{patch.path}"):
        installer.apply_patches(tmp_path)


def test_installer_reports_missing_numpy_alias_target(tmp_path):
    _fake_sdist(tmp_path)
    (tmp_path / "detectron2/utils/visualizer.py").write_text("x = np.bool_\n")
    with pytest.raises(installer.PatchError, match="problem 6.*visualizer.py"):
        installer.apply_patches(tmp_path)


def test_installer_reports_numpy_alias_left_elsewhere(tmp_path):
    _fake_sdist(tmp_path)
    (tmp_path / "detectron2/other.py").write_text("y = np.float(1)\n")
    with pytest.raises(installer.PatchError, match=r"problem 6.*other\.py:1"):
        installer.apply_patches(tmp_path)


def test_installer_refuses_to_patch_twice(tmp_path):
    _fake_sdist(tmp_path)
    installer.apply_patches(tmp_path)
    with pytest.raises(installer.PatchError):
        installer.apply_patches(tmp_path)


def test_installer_check_detects_this_detectron2():
    r = subprocess.run(
        [sys.executable, str(REPO / "tools/install_detectron2.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "detectron2: " in r.stdout and "not installed" not in r.stdout


def test_installer_check_fails_without_detectron2(tmp_path):
    # an empty virtual environment cannot see detectron2
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path)], check=True)
    empty = tmp_path / "bin" / "python"
    r = subprocess.run(
        [sys.executable, str(REPO / "tools/install_detectron2.py"), "--check", "--python", empty],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "not installed or not working" in r.stdout


def test_a_passed_tests_tmp_path_is_removed_and_a_failed_ones_kept(tmp_path):
    """setup.cfg's retention: the training tests write ~800 MB of checkpoints each; a passed
    test's folder goes at its end (a run of the suite once left 17 GB and filled CI's disk)."""
    (tmp_path / "test_inner.py").write_text(
        "def test_passes(tmp_path):\n"
        "    (tmp_path / 'ckpt.pth').write_bytes(b'0' * 1000)\n"
        f"    open({str(tmp_path / 'passed.txt')!r}, 'w').write(str(tmp_path))\n"
        "def test_fails(tmp_path):\n"
        f"    open({str(tmp_path / 'failed.txt')!r}, 'w').write(str(tmp_path))\n"
        "    assert False\n"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(REPO / "setup.cfg"),
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            f"--basetemp={tmp_path / 'base'}",
            str(tmp_path / "test_inner.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "1 failed, 1 passed" in run.stdout, run.stdout[-2000:]
    assert not Path((tmp_path / "passed.txt").read_text()).exists()
    assert Path((tmp_path / "failed.txt").read_text()).is_dir()
