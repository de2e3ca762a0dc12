#!/usr/bin/env python
"""
Print the README's model-zoo table: every config in configs/COCO, its parameter count measured
by instantiating it here, and the published size and COCO AP it targets.

  python tools/model_zoo_table.py
"""

import glob
import os

# known third-party notices are hidden by exact message before anything emits them
from pvt_fpn_d2.cli import silence_known_warnings  # isort: skip

silence_known_warnings()

from detectron2.config import LazyConfig, instantiate  # noqa: E402

from pvt_fpn_d2.model_zoo import PUBLISHED  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    def fmt(x, unit=""):
        return "-" if x is None else f"{x}{unit}"

    print("| config | params (measured) | params (published) | box AP | mask AP |")
    print("|---|---|---|---|---|")
    for path in sorted(glob.glob(os.path.join(REPO, "configs/COCO/*.py"))):
        name = os.path.basename(path)[:-3]
        cfg = LazyConfig.load(path)
        cfg.model.backbone.bottom_up.drop_path_rate = 0.0
        n = sum(p.numel() for p in instantiate(cfg.model).parameters()) / 1e6
        pub = PUBLISHED.get(name)
        print(
            f"| [{name}](configs/COCO/{name}.py) | {n:.2f}M | "
            f"{fmt(pub and pub.params_m, 'M')} | {fmt(pub and pub.box_ap)} | "
            f"{fmt(pub and pub.mask_ap)} |"
        )


if __name__ == "__main__":
    main()
