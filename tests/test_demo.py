"""`make demo` (tools/demo.sh, configs/synthetic) and tools/plot_losses.py, on a tiny run."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from .conftest import REPO, load_script, subprocess_env


def _plot_losses():
    return load_script("tools/plot_losses.py", "plot_losses")


def test_make_demo_trains_evaluates_plots_and_moves_the_previous_output_aside(tmp_path):
    out, data = tmp_path / "demo", tmp_path / "synthetic"
    out.mkdir()
    (out / "earlier_run.txt").write_text("keep me")
    # the demo's own config and steps; 3 iterations on 8 + 3 images instead of 800 on 300 + 50
    tiny = "train.max_iter=3 train.eval_period=3 train.checkpointer.period=100 train.log_period=1"
    tiny += " dataloader.train.num_workers=0 dataloader.test.num_workers=0"
    env = subprocess_env(
        OUT=str(out), DATA=str(data), SYNTHETIC_ARGS="--num-train 8 --num-val 3", ARGS=tiny
    )
    r = subprocess.run(
        ["make", "-s", "demo", f"PY={sys.executable}"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]

    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("demo.")]
    assert (aside / "earlier_run.txt").read_text() == "keep me"
    assert f"moving the previous {out} to {aside}" in r.stdout
    assert {"model_final.pth", "eval_results.json", "metrics.json", "log.txt"} <= {
        p.name for p in out.iterdir()
    }
    results = json.loads((out / "eval_results.json").read_text())
    assert set(results) == {"bbox", "segm"}
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert [m["iteration"] for m in rows if "total_loss" in m] == [0, 1, 2]
    # the demo recipe, not the fine-tuning one it starts from: 64-channel FPN, 4 images a batch
    config = (out / "config.yaml").read_text()
    assert "out_channels: 64" in config and "total_batch_size: 4" in config
    with Image.open(out / "losses.png") as png:
        assert png.format == "PNG" and png.size == (800, 500)
    predictions = out / "predictions"
    assert len(list(predictions.glob("*.jpg"))) == 3
    assert len(json.loads((predictions / "predictions.json").read_text())["images"]) == 3
    ap = f"bbox AP {results['bbox']['AP']:.1f}, segm AP {results['segm']['AP']:.1f}"
    assert f"synthetic val: {ap}" in r.stdout
    # 3 iterations are not the recipe the documented range is for
    assert "ARGS or CONFIG changed the recipe: the documented range does not apply" in r.stdout


def _summary_tool():
    return load_script("tools/demo_summary.py", "demo_summary")


def test_demo_summary_says_where_the_run_landed(tmp_path):
    tool = _summary_tool()
    (b_lo, b_hi), (s_lo, s_hi) = tool.EXPECTED["bbox"], tool.EXPECTED["segm"]
    assert 0 < b_lo < b_hi < 100 and 0 < s_lo < s_hi < 100
    inside = {"bbox": {"AP": (b_lo + b_hi) / 2}, "segm": {"AP": (s_lo + s_hi) / 2}}
    text = tool.summary(inside, 280)
    assert text.startswith(
        f"make demo: 280 s wall time; synthetic val: bbox AP {(b_lo + b_hi) / 2:.1f}"
    )
    assert f"as expected: the recipe gives bbox {b_lo:g}-{b_hi:g}, segm {s_lo:g}-{s_hi:g}" in text
    low = {"bbox": {"AP": b_lo - 0.2}, "segm": {"AP": s_hi + 0.2}}
    text = tool.summary(low, 280)
    assert "NOT as expected" in text
    assert f"bbox AP {b_lo - 0.2:.1f} is below it, segm AP {s_hi + 0.2:.1f} is above it" in text
    # a seed, an output folder or the data's place keep the recipe; other overrides do not
    config = tool.DEFAULT_CONFIG
    assert tool.same_recipe(config, "train.seed=3 train.output_dir=x dataset.train_json=y")
    assert tool.same_recipe("./" + config, "")
    assert not tool.same_recipe(config, "train.seed=3 train.max_iter=100")
    assert not tool.same_recipe("configs/synthetic/other.py", "")
    # the command line, on a run's folder
    (tmp_path / "eval_results.json").write_text(json.dumps(low))
    r = subprocess.run(
        [sys.executable, str(REPO / "tools/demo_summary.py"), str(tmp_path), "--start", "0"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "NOT as expected" in r.stdout
    # ARGS may hold options of train_net.py too (demo.sh passes them as --overrides=...)
    r = subprocess.run(
        [sys.executable, str(REPO / "tools/demo_summary.py"), str(tmp_path)]
        + ["--overrides=--resume train.seed=1"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "the documented range does not apply" in r.stdout
    assert "wall time" not in r.stdout  # no --start
    r = subprocess.run(
        [sys.executable, str(REPO / "tools/demo_summary.py"), str(tmp_path / "none")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "no evaluation results in" in r.stderr


def test_plot_losses_reads_every_loss_and_the_last_run_of_an_iteration(tmp_path):
    metrics = tmp_path / "metrics.json"
    rows = [
        {"iteration": 0, "total_loss": 3.0, "loss_cls": 1.0, "lr": 0.1},
        {"iteration": 1, "total_loss": 2.0, "loss_cls": 0.5, "lr": 0.1},
        {"iteration": 1, "total_loss": 1.5, "loss_cls": 0.4, "lr": 0.1},  # after a --resume
        {"iteration": 1, "bbox/AP": 12.0},
    ]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tool = _plot_losses()
    series = tool.read_losses(str(metrics))
    assert series == {"loss_cls": [(0, 1.0), (1, 0.4)], "total_loss": [(0, 3.0), (1, 1.5)]}
    tool.main([str(metrics), str(tmp_path / "losses.png")])
    assert Image.open(tmp_path / "losses.png").format == "PNG"

    metrics.write_text(json.dumps({"iteration": 0, "bbox/AP": 1.0}) + "\n")
    with pytest.raises(SystemExit, match="no losses in .*metrics.json"):
        tool.read_losses(str(metrics))
