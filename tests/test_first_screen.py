"""A clean first screen: train_net.py prints no third-party warnings, the data loaders use no
more workers than the machine has, and options typed after the key=value overrides count."""

import argparse
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from detectron2.config import LazyConfig
from detectron2.engine import default_argument_parser

from pvt_fpn_d2.cli import parse_args

from .conftest import REPO, built_once, metrics, tiny_config

# a Python warning ("path:line: UserWarning: ...", "ResourceWarning: unclosed ...") or a
# glog-style warning/error line of torch's loggers ("W1202 02:46:07.799000 3713 path:183] ...")
WARNING_LINE = re.compile(r"\b[A-Z]\w*Warning\b|^[WE]\d{4} \d\d:\d\d:\d\d")
PATH = re.compile(r"(/[^\s:'\"]+\.py)\b")


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def third_party_warnings(log: str):
    """The warning lines of ``log`` that do not point into this project's own files."""
    project = [str(REPO / p) for p in ("pvt_fpn_d2", "train_net.py", "tools", "configs")]
    return [
        line
        for line in log.splitlines()
        if WARNING_LINE.search(line)
        and not any(p.startswith(tuple(project)) for p in PATH.findall(line))
    ]


def run_train_net(*args, timeout=900):
    """train_net.py as a user runs it: Python's default warning filters (no PYTHONWARNINGS),
    plus ResourceWarnings as errors."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.run(
        [
            sys.executable,
            "-W",
            "error::ResourceWarning",
            str(REPO / "train_net.py"),
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def assert_clean(r):
    log = r.stdout + r.stderr
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert third_party_warnings(log) == []
    assert "ResourceWarning" not in log
    assert "worker processes" not in log  # PyTorch's "This DataLoader will create N worker ..."


def test_help_prints_no_warnings():
    r = run_train_net("--help")
    assert_clean(r)
    assert "--resume" in r.stdout and "--eval-only" in r.stdout


@pytest.mark.parametrize(
    "config",
    [
        "configs/finetune/mask_rcnn_pvt_v2_b0_fpn_coco_json.py",
        "configs/COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py",
        "configs/SemSeg/pvt_v2_b2_fpn_concat_ade20k_40k.py",
    ],
)
def test_default_workers_fit_the_machine(config):
    cfg = LazyConfig.load(str(REPO / config))
    for split in ("train", "test"):
        workers = cfg.dataloader[split].num_workers
        assert type(workers) is int and workers == min(4, available_cpus()), (split, workers)


@pytest.fixture(scope="session")
def first_run(tmp_path_factory, tiny_dataset):
    """2 CPU iterations and an evaluation of the tiny config, with the config's default
    number of data-loader workers (the tiny config has 0); run once for all workers."""

    def build(folder):
        config = tiny_config(folder, tiny_dataset, max_iter=2, eval_period=2)
        default = LazyConfig.load(
            str(REPO / "configs/finetune/mask_rcnn_pvt_v2_b0_fpn_coco_json.py")
        )
        r = run_train_net(
            "--config-file",
            config,
            f"dataloader.train.num_workers={default.dataloader.train.num_workers}",
            f"dataloader.test.num_workers={default.dataloader.test.num_workers}",
        )
        run = {"returncode": r.returncode, "stdout": r.stdout, "stderr": r.stderr}
        (folder / "run.json").write_text(json.dumps(run))

    folder = built_once(tmp_path_factory, "first_screen", build)
    r = argparse.Namespace(**json.loads((folder / "run.json").read_text()))
    return folder / "config.yaml", folder / "out", r


def test_training_prints_no_third_party_warnings(first_run):
    config, out, r = first_run
    assert_clean(r)
    assert "Rank of current process: 0" in r.stdout + r.stderr  # default_setup's first lines
    assert (out / "eval_results.json").is_file()


def test_resume_typed_after_the_overrides(first_run):
    config, out, r = first_run
    assert r.returncode == 0, r.stderr[-3000:]
    r = run_train_net("--config-file", config, "train.max_iter=3", "--resume")
    assert_clean(r)
    # resumed from model_final.pth (iteration 1): one more iteration, not three from scratch
    assert [m["iteration"] for m in metrics(out) if "total_loss" in m] == [0, 1, 2]
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 2


def test_unknown_option_after_the_overrides_is_one_line(tmp_path):
    r = run_train_net("--config-file", "C.py", "train.max_iter=3", "--resum")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "train_net.py: error: unknown option '--resum' after the key=value overrides; "
        "put options before the overrides (see --help)"
    ]


def test_parse_args_moves_options_out_of_the_overrides():
    parser = default_argument_parser()
    args = parse_args(
        parser,
        ["--config-file", "C", "a=1", "--num-gpus", "2", "b=[1, 2]", "--eval-only", "c=-1"],
    )
    assert (args.config_file, args.num_gpus, args.eval_only, args.resume) == ("C", 2, True, False)
    assert args.opts == ["a=1", "b=[1, 2]", "c=-1"]
    args = parse_args(parser, ["a=1", "--config-file=C", "--dist-url", "auto", "--resume"])
    assert (args.config_file, args.dist_url, args.resume, args.opts) == ("C", "auto", True, ["a=1"])
    # nothing after the overrides: the plain parse
    assert parse_args(parser, ["--resume", "--config-file", "C", "a=1"]).opts == ["a=1"]

    # a parser with a list option, as tools/predict.py
    p = argparse.ArgumentParser()
    p.add_argument("--input", nargs="+")
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = parse_args(p, ["a=1", "--input", "x.jpg", "y.jpg", "b=2"])
    assert args.input == ["x.jpg", "y.jpg"] and args.opts == ["a=1", "b=2"]
    with pytest.raises(SystemExit):  # the value is missing
        parse_args(parser, ["--config-file", "C", "a=1", "--num-gpus"])


def test_required_options_may_follow_the_overrides():
    """tools/predict.py's required --output and its required groups typed after the overrides
    (docs/CUSTOM_DATASETS.md's predict command); still required when absent."""
    p = argparse.ArgumentParser()
    p.add_argument("--output", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint")
    group.add_argument("--model")
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = parse_args(p, ["a=1", "b=2", "--checkpoint", "m.pth", "--output", "out"])
    assert (args.checkpoint, args.output, args.opts) == ("m.pth", "out", ["a=1", "b=2"])
    for missing in (["a=1", "--checkpoint", "m.pth"], ["a=1", "--output", "out"]):
        with pytest.raises(SystemExit):
            parse_args(p, missing)
    assert all(a.required for a in p._actions if a.dest == "output")  # the parser is left as is


# upstream detectron2's ROIPooler.forward: detectron2.utils.tracing.is_fx_tracing() calls torch's
# deprecated helper, imported under this name, on every forward; torch logs it once per process
_UPSTREAM_FX_CALL = """
from torch.fx._symbolic_trace import is_fx_tracing as is_fx_tracing_current
for _ in range(3):  # three ROIPooler forwards
    assert is_fx_tracing_current() is False
"""


@pytest.mark.parametrize("silenced", [True, False])
def test_upstream_detectron2_fx_tracing_notice(silenced):
    """torch's logged 'is_fx_tracing will return true ...' (every training run on upstream
    detectron2) is hidden after the entry points' silencing, and printed without it: importing
    the library alone changes no filter."""
    first = "from pvt_fpn_d2.cli import silence_known_warnings; silence_known_warnings()"
    code = "\n".join(
        [
            first if silenced else "import pvt_fpn_d2, pvt_fpn_d2.cli, pvt_fpn_d2.engine",
            _UPSTREAM_FX_CALL,
        ]
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    if silenced:
        assert "is_fx_tracing" not in log and third_party_warnings(log) == [], log
    else:  # torch's glog-style warning line, once
        lines = [line for line in log.splitlines() if "is_fx_tracing will return true" in line]
        assert len(lines) == 1 and lines[0] in third_party_warnings(log), log
