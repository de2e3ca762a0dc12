#!/usr/bin/env python
"""
Plot the training losses that detectron2's JSONWriter logged in metrics.json.

  python tools/plot_losses.py output/demo/metrics.json output/demo/losses.png
"""

import argparse
import json
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_losses(metrics_json: str):
    """iteration and value of every ``*loss*`` scalar, per name (the last run of an iteration wins)."""
    series = defaultdict(dict)
    with open(metrics_json) as f:
        for line in f:
            row = json.loads(line)
            for k, v in row.items():
                if "loss" in k and isinstance(v, (int, float)):
                    series[k][row["iteration"]] = v
    if not series:
        raise SystemExit(f"error: no losses in {metrics_json}; is it detectron2's metrics.json?")
    return {k: sorted(v.items()) for k, v in sorted(series.items())}


def get_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("metrics_json")
    parser.add_argument("output_png")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    series = read_losses(args.metrics_json)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for name, points in series.items():
        its, values = zip(*points)
        ax.plot(its, values, label=name, linewidth=2.5 if name == "total_loss" else 1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title("training losses")
    fig.tight_layout()
    fig.savefig(args.output_png)
    print(f"{', '.join(series)} -> {args.output_png}")


if __name__ == "__main__":
    main()
