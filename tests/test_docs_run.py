"""
The docs' runnable commands, run as written in a plain clone (issue #34's executed tier).

`make test` runs the quick start's predict and check steps on a tiny synthetic dataset and a
checkpoint of random weights; the whole quick start (with `make demo`, shrunk by overrides the
test appends) is a ``benchmark`` test, and so is the custom-data walk-through, whose figures
tests/test_doc_figures.py checks:

  python -m pytest -m benchmark -s tests/test_docs_run.py
  python -m pytest -m benchmark -s tests/test_doc_figures.py -k walkthrough

Each block is run by bash as the page has it; the only changes are the ones a reader makes:
`python` is this interpreter, the placeholder files under ``path/to/`` exist (made by the test
from the synthetic data), and for the benchmark, the tiny overrides of ``make demo``.
"""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO, subprocess_env

#: a fenced shell block, with the line before it (a "<!-- docs: needs ... -->" tag or not)
BLOCK = re.compile(r"(?:^(<!-- docs: needs[^\n]*-->)\n)?^```bash\n(.*?)^```", re.M | re.S)


def runnable_block(page: Path, heading: str) -> str:
    """The first untagged bash block of the section ``heading`` of ``page``."""
    text = page.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end > 0 else len(text)]
    for tag, body in BLOCK.findall(section):
        if not tag:
            return body
    raise AssertionError(f"{page.name}: no runnable bash block under '## {heading}'")


def plain_clone(dest: Path) -> Path:
    """The checkout's files as a clone has them (tracked and not ignored), in ``dest``."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = REPO / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())
    return dest


def run_block(block: str, clone: Path, tmp_path: Path, timeout: int, **env) -> str:
    """``block`` run by bash in ``clone`` with ``python`` being this interpreter; its output."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    shim = bindir / "python"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    environment = subprocess_env(PYTHONPATH=str(clone), PY=sys.executable, **env)
    environment["PATH"] = f"{bindir}:{environment['PATH']}"
    r = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )
    assert r.returncode == 0, f"{block}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r.stdout + r.stderr


def placeholders(clone: Path, data: Path) -> None:
    """The ``path/to/...`` files of the quick start, made from a synthetic dataset."""
    to = clone / "path" / "to"
    to.mkdir(parents=True)
    shutil.copy(sorted((data / "val" / "images").iterdir())[0], to / "photo.jpg")
    shutil.copy(data / "train" / "annotations.json", to / "train.json")
    shutil.copytree(data / "train" / "images", to / "train_images")


def synthetic(clone: Path, folder: str, *args: str) -> Path:
    subprocess.run(
        [sys.executable, "datasets/prepare_synthetic.py", "--out", folder, "--no-semantic", *args],
        cwd=clone,
        check=True,
        capture_output=True,
        env=subprocess_env(PYTHONPATH=str(clone)),
    )
    return clone / folder


def test_quick_start_predict_and_check_run_as_written(tmp_path):
    """README's quick start, all but `make demo`: its checkpoint is one of random weights here,
    saved where `make demo` writes it."""
    import torch
    from detectron2.config import LazyConfig, instantiate

    block = runnable_block(REPO / "README.md", "Quick start")
    assert "make demo" in block and "tools/predict.py" in block and "check_dataset" in block
    clone = plain_clone(tmp_path / "clone")
    data = synthetic(clone, "datasets/synthetic", "--num-train", "4", "--num-val", "2")
    placeholders(clone, data)
    config = clone / "configs/synthetic/mask_rcnn_pvt_v2_b0_fpn_synthetic.py"
    cfg = LazyConfig.load(str(config))
    cfg.dataset.train_json = str(data / "train/annotations.json")
    (clone / "output/demo").mkdir(parents=True)
    torch.save(
        {"model": instantiate(cfg.model).state_dict()}, clone / "output/demo/model_final.pth"
    )

    without_demo = "\n".join(line for line in block.splitlines() if not line.startswith("make "))
    out = run_block(without_demo, clone, tmp_path, timeout=600)

    predictions = json.loads((clone / "output/photo/predictions.json").read_text())
    assert [image["file_name"] for image in predictions["images"]] == ["path/to/photo.jpg"]
    assert len(list((clone / "output/photo").glob("*.jpg"))) == 1
    assert "classes: 3: ['circle', 'triangle', 'square']" in out, out[-3000:]


@pytest.mark.benchmark
def test_quick_start_runs_as_written(tmp_path):
    """The whole quick start with `make demo` shrunk (60 images, 40 iterations): a few min."""
    block = runnable_block(REPO / "README.md", "Quick start")
    clone = plain_clone(tmp_path / "clone")
    data = synthetic(clone, "datasets/placeholders", "--num-train", "4", "--num-val", "2")
    placeholders(clone, data)
    start = time.perf_counter()
    out = run_block(
        block,
        clone,
        tmp_path,
        timeout=1800,
        ARGS="train.max_iter=40 train.checkpointer.period=40 train.eval_period=40",
        SYNTHETIC_ARGS="--num-train 50 --num-val 10",
    )
    print(out[-2000:], f"\nquick start: {time.perf_counter() - start:.0f} s")
    assert (clone / "output/demo/eval_results.json").is_file()
    assert (clone / "output/photo/predictions.json").is_file()
