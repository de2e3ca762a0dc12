"""The configs ship in the package: pvt_fpn_d2.model_zoo in a checkout and from a non-editable
``pip install .``, and model-zoo names on train_net.py's command line."""

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from detectron2.config import CfgNode, LazyConfig

from pvt_fpn_d2 import model_zoo

from .conftest import REPO, load_script, subprocess_env

ON_DISK = sorted(
    p.relative_to(REPO / "configs").as_posix()
    for p in (REPO / "configs").rglob("*")
    if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts
)


def test_every_config_of_the_checkout_is_in_the_model_zoo():
    assert len(ON_DISK) > 30 and model_zoo.list_configs() == ON_DISK
    for name in ON_DISK:
        assert Path(model_zoo.get_config_file(name)) == REPO / "configs" / name
    # the docs' spelling, with the folder
    path = model_zoo.get_config_file("configs/COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py")
    assert path == str(REPO / "configs/COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py")


def test_get_config_reads_lazy_and_yacs_configs():
    cfg = model_zoo.get_config("COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py")
    on_disk = LazyConfig.load(str(REPO / "configs/COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py"))
    assert LazyConfig.to_py(cfg) == LazyConfig.to_py(on_disk)
    assert cfg.model.backbone.bottom_up.name == "pvt_v2_b2"
    yacs = model_zoo.get_config("COCO-yaml/mask_rcnn_pvt_v2_b0_fpn_1x.yaml")
    assert isinstance(yacs, CfgNode)
    assert yacs.MODEL.PVT.NAME == "pvt_v2_b0"  # the file's value, over the default pvt_v2_b2
    assert yacs.MODEL.BACKBONE.NAME == "build_pvt_v2_fpn_backbone"  # from its _BASE_


def test_unknown_names_are_clear_errors():
    with pytest.raises(FileNotFoundError, match="Did you mean COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py"):
        model_zoo.get_config_file("COCO/mask_rcnn_pvt_v2_b2_fpn.py")
    with pytest.raises(FileNotFoundError, match=r"no such file.*not a config of the pvt_fpn_d2"):
        model_zoo.resolve_config_file("nothing/here.py")
    with pytest.raises(FileNotFoundError, match="list_configs"):
        model_zoo.get_config_file("common")  # a folder is not a config


def _train_net():
    return load_script("train_net.py", "train_net_zoo")


def test_train_net_takes_a_model_zoo_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the checkout: the name is not a path from here
    args = argparse.Namespace(
        config_file="COCO/retinanet_pvt_v2_b0_fpn_1x.py", opts=["train.max_iter=7"]
    )
    cfg = _train_net().load_config(args)
    assert args.config_file == str(REPO / "configs/COCO/retinanet_pvt_v2_b0_fpn_1x.py")
    assert cfg.train.max_iter == 7 and cfg.model.backbone.bottom_up.name == "pvt_v2_b0"
    # a file that exists wins over the model zoo
    (tmp_path / "COCO").mkdir()
    mine = tmp_path / "COCO/retinanet_pvt_v2_b0_fpn_1x.py"
    mine.write_text("train = dict(max_iter=3)\n")
    args = argparse.Namespace(config_file="COCO/retinanet_pvt_v2_b0_fpn_1x.py", opts=[])
    assert _train_net().load_config(args).train.max_iter == 3
    assert args.config_file == "COCO/retinanet_pvt_v2_b0_fpn_1x.py"


def test_a_non_editable_install_ships_the_configs(tmp_path):
    """``pip install .`` (a wheel, not the checkout) into a folder of its own; read from
    elsewhere, its model zoo has every config and builds a model from one."""
    target = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--disable-pip-version-check", "-q", "--target", str(target), str(REPO)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (target / "pvt_fpn_d2/configs/COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py").is_file()
    # the license travels with the wheel and is in its metadata
    (dist_info,) = target.glob("pvt_fpn_d2-*.dist-info")
    (license_file,) = dist_info.rglob("LICENSE")  # licenses/LICENSE from setuptools 77 on
    assert license_file.read_text() == (REPO / "LICENSE").read_text()
    metadata = (dist_info / "METADATA").read_text().splitlines()
    assert "License: Apache-2.0" in metadata or "License-Expression: Apache-2.0" in metadata
    code = textwrap.dedent(f"""
        import torch
        import pvt_fpn_d2
        from detectron2.config import instantiate
        from pvt_fpn_d2 import model_zoo
        assert pvt_fpn_d2.__file__.startswith({str(target)!r}), pvt_fpn_d2.__file__
        assert model_zoo.list_configs() == {ON_DISK!r}
        path = model_zoo.get_config_file("COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py")
        assert path.startswith({str(target)!r}), path
        cfg = model_zoo.get_config("COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py")
        with torch.device("meta"):
            model = instantiate(cfg.model)
        print(type(model.backbone.bottom_up).__name__, model.roi_heads.num_classes)
        yacs = model_zoo.get_config("COCO-yaml/retinanet_pvt_v2_b0_fpn_1x.yaml")
        print(yacs.MODEL.PVT.NAME)
        """)
    env = subprocess_env()
    env["PYTHONPATH"] = str(target)
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["PVTv2Backbone", "80", "pvt_v2_b0"]
    assert not any(p.name == "configs" for p in (target / "pvt_fpn_d2").parent.iterdir())
    assert os.path.isdir(target / "pvt_fpn_d2" / "modeling")
