#!/usr/bin/env python
"""
The last lines of `make demo` (tools/demo.sh): the wall time, the box and mask AP of the run and
where they landed against the range the demo's recipe gives (docs/GETTING_STARTED.md, measured
over seeds on 2-core CPUs).

  python tools/demo_summary.py output/demo --start 1796650000
"""

import argparse
import json
import os
import sys
import time

#: The documented range of the default recipe (DEFAULT_CONFIG), box and mask AP on the 50
#: validation images: the lowest and highest run of docs/GETTING_STARTED.md's table over seeds,
#: widened by 1.5 AP each side.
EXPECTED = {"bbox": (34.4, 47.5), "segm": (39.4, 51.3)}
DEFAULT_CONFIG = "configs/synthetic/mask_rcnn_pvt_v2_b0_fpn_synthetic.py"
DOCS = "docs/GETTING_STARTED.md#the-cpu-demo-make-demo"


def verdict(task: str, ap: float) -> str:
    """``ap`` of ``task`` against :data:`EXPECTED`: "within", "below" or "above"."""
    low, high = EXPECTED[task]
    return "below" if ap < low else "above" if ap > high else "within"


def summary(results: dict, seconds: float, default_recipe: bool = True) -> str:
    """The summary lines of a demo run's ``eval_results.json`` contents."""
    aps = {task: results[task]["AP"] for task in ("bbox", "segm")}
    wall = f"{seconds:.0f} s wall time; " if seconds == seconds else ""  # not NaN
    aps_text = f"bbox AP {aps['bbox']:.1f}, segm AP {aps['segm']:.1f}"
    lines = [f"make demo: {wall}synthetic val: {aps_text}"]
    if not default_recipe:
        lines.append("(ARGS or CONFIG changed the recipe: the documented range does not apply)")
        return "\n".join(lines)
    where = {task: verdict(task, ap) for task, ap in aps.items()}
    ranges = ", ".join(f"{t} {EXPECTED[t][0]:g}-{EXPECTED[t][1]:g}" for t in ("bbox", "segm"))
    if set(where.values()) == {"within"}:
        lines.append(f"as expected: the recipe gives {ranges} on 2-core CPUs ({DOCS})")
    else:
        off = ", ".join(f"{t} AP {aps[t]:.1f} is {w} it" for t, w in where.items() if w != "within")
        lines.append(
            f"NOT as expected: the recipe gives {ranges} on 2-core CPUs, but {off}. Check the "
            f"log for warnings and the losses in losses.png; see {DOCS}"
        )
    return "\n".join(lines)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("output", help="the demo's output folder (eval_results.json)")
    parser.add_argument("--start", type=float, default=None, help="start time (epoch seconds)")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="the config the demo trained")
    parser.add_argument(
        "--overrides", default="", help="the demo's ARGS (train.seed=N keeps the recipe)"
    )
    return parser


def same_recipe(config: str, overrides: str) -> bool:
    """Whether the run used the recipe the range was measured with: the default config, any
    seed, output folder or dataset location."""
    keep = ("train.seed=", "train.output_dir=", "dataset.")
    return os.path.normpath(config) == os.path.normpath(DEFAULT_CONFIG) and all(
        o.startswith(keep) for o in overrides.split()
    )


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    path = os.path.join(args.output, "eval_results.json")
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        print(f"make demo: no evaluation results in {path} ({e})", file=sys.stderr)
        return 1
    seconds = time.time() - args.start if args.start is not None else float("nan")
    print("\n" + summary(results, seconds, default_recipe=same_recipe(args.config, args.overrides)))
    print(
        f"outputs in {args.output}/: model_final.pth, eval_results.json, metrics.json, "
        "losses.png, predictions/*.jpg, predictions/predictions.json, log.txt"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
