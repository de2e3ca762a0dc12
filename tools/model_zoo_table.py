#!/usr/bin/env python
"""
Print the model-zoo table of docs/MODEL_ZOO.md: every config in configs/COCO, its parameter
count measured by instantiating it here, and the published size and COCO AP it targets.

  python tools/model_zoo_table.py
"""

import argparse
import glob
import os
from typing import List, Optional, Sequence

import torch

# known third-party notices are hidden by exact message before anything emits them
from pvt_fpn_d2.cli import silence_known_warnings  # isort: skip

silence_known_warnings()

from detectron2.config import LazyConfig, instantiate  # noqa: E402

from pvt_fpn_d2.model_zoo import PUBLISHED  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def table() -> List[str]:
    """The table's lines (markdown)."""

    def fmt(x, unit=""):
        return "-" if x is None else f"{x}{unit}"

    lines = [
        "| config | params (measured) | params (published) | box AP | mask AP |",
        "|---|---|---|---|---|",
    ]
    for path in sorted(glob.glob(os.path.join(REPO, "configs/COCO/*.py"))):
        name = os.path.basename(path)[:-3]
        cfg = LazyConfig.load(path)
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            n = sum(p.numel() for p in instantiate(cfg.model).parameters()) / 1e6
        pub = PUBLISHED.get(name)
        lines.append(
            f"| [{name}](../configs/COCO/{name}.py) | {n:.2f}M | "
            f"{fmt(pub and pub.params_m, 'M')} | {fmt(pub and pub.box_ap)} | "
            f"{fmt(pub and pub.mask_ap)} |"
        )
    return lines


def get_parser() -> argparse.ArgumentParser:
    """The command line of this tool (no arguments: it prints the table)."""
    return argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    get_parser().parse_args(argv)
    print("\n".join(table()))


if __name__ == "__main__":
    main()
