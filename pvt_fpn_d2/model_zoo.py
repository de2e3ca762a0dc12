"""
The configs that come with the package, and the published figures they target, in the manner of
``detectron2.model_zoo``:

    from pvt_fpn_d2 import model_zoo
    cfg = model_zoo.get_config("COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py")         # a LazyConfig
    cfg = model_zoo.get_config("COCO-yaml/mask_rcnn_pvt_v2_b0_fpn_1x.yaml")  # a yacs CfgNode
    path = model_zoo.get_config_file("COCO/retinanet_pvt_v2_b0_fpn_1x.py")

Names are paths under the repository's ``configs/`` folder. In a checkout (or an editable
install) that folder is read where it is; ``pip install .`` puts the same files into the package
(``pvt_fpn_d2/configs``, see setup.py), so there is one copy of the configs.
"""

import difflib
import os
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

__all__ = [
    "Published",
    "PUBLISHED",
    "configs_root",
    "list_configs",
    "get_config_file",
    "get_config",
    "resolve_config_file",
]

_CONFIG_SUFFIXES = (".py", ".yaml")


def configs_root() -> Path:
    """The folder of the configs: inside the installed package, else the checkout's configs/."""
    here = Path(__file__).resolve().parent
    for root in (here / "configs", here.parent / "configs"):
        if (root / "common").is_dir():
            return root
    raise FileNotFoundError(
        f"No configs found next to {here}: reinstall pvt_fpn_d2 (pip install .) or run from a "
        "checkout of the repository."
    )


def list_configs() -> List[str]:
    """Every config name (``COCO/...py``, ``COCO-yaml/...yaml``, ...), bases under common/ too."""
    root = configs_root()
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix in _CONFIG_SUFFIXES and p.name != "__init__.py" and "__pycache__" not in p.parts
    )


def get_config_file(config_path: str) -> str:
    """
    The absolute path of a config by its name under ``configs/``, e.g.
    ``"COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py"`` (a leading ``configs/`` is accepted).
    """
    name = str(config_path).replace("\\", "/")
    if name.startswith("configs/"):
        name = name[len("configs/") :]
    path = configs_root() / name
    if not (path.is_file() and path.suffix in _CONFIG_SUFFIXES):
        names = list_configs()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        families = sorted({n.split("/")[0] for n in names if "/" in n} - {"common"})
        raise FileNotFoundError(
            f"{config_path!r} is not a config of the pvt_fpn_d2 model zoo.{hint} Names are paths "
            f"under configs/ ({', '.join(families)}); pvt_fpn_d2.model_zoo.list_configs() lists "
            "them."
        )
    return str(path)


def get_config(config_path: str):
    """
    A config of the model zoo by name: a LazyConfig (``.py``, for ``train_net.py``) or a yacs
    ``CfgNode`` with the PVT-v2 keys (``.yaml``, for detectron2's ``DefaultTrainer``).
    """
    path = get_config_file(config_path)
    if path.endswith(".py"):
        from detectron2.config import LazyConfig

        return LazyConfig.load(path)
    from detectron2.config import get_cfg

    from .config import add_pvt_v2_config

    cfg = add_pvt_v2_config(get_cfg())
    cfg.merge_from_file(path)
    return cfg


def resolve_config_file(config_file: str) -> str:
    """What ``--config-file`` means: a file that exists, else a model-zoo name."""
    if os.path.isfile(config_file):
        return config_file
    try:
        return get_config_file(config_file)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--config-file {config_file!r}: no such file. {e}") from None


class Published(NamedTuple):
    params_m: Optional[float]  # millions
    box_ap: float
    mask_ap: Optional[float] = None


# Published reference figures for the configs in ``configs/COCO`` (official PVT-v2 README,
# mmdetection 2.13, COCO val2017; detector sizes with 80 classes from the PVT-v2 paper).
# They are what the configs target, not results of this project.
PUBLISHED: Dict[str, Published] = {
    "mask_rcnn_pvt_v2_b0_fpn_1x": Published(23.4, 38.2, 36.2),
    "mask_rcnn_pvt_v2_b1_fpn_1x": Published(33.7, 41.8, 38.8),
    "mask_rcnn_pvt_v2_b2_li_fpn_1x": Published(42.2, 44.1, 40.5),
    "mask_rcnn_pvt_v2_b2_fpn_1x": Published(45.0, 45.3, 41.2),
    "mask_rcnn_pvt_v2_b3_fpn_1x": Published(64.9, 47.0, 42.5),
    "mask_rcnn_pvt_v2_b4_fpn_1x": Published(82.2, 47.5, 42.7),
    "mask_rcnn_pvt_v2_b5_fpn_1x": Published(101.6, 47.4, 42.5),
    "retinanet_pvt_v2_b0_fpn_1x": Published(12.9, 37.2),
    "retinanet_pvt_v2_b1_fpn_1x": Published(23.7, 41.2),
    "retinanet_pvt_v2_b2_li_fpn_1x": Published(32.3, 43.6),
    "retinanet_pvt_v2_b2_fpn_1x": Published(35.1, 44.6),
    "retinanet_pvt_v2_b3_fpn_1x": Published(55.0, 45.9),
    "retinanet_pvt_v2_b4_fpn_1x": Published(72.3, 46.1),
    "retinanet_pvt_v2_b5_fpn_1x": Published(91.7, 46.2),
    # no published 1x Faster R-CNN or size for the 3x Cascade (mmdetection, 3 mask heads)
    "cascade_mask_rcnn_pvt_v2_b2_fpn_3x": Published(None, 51.1, 44.4),
    "cascade_mask_rcnn_pvt_v2_b2_li_fpn_3x": Published(None, 50.9, 44.0),
}
