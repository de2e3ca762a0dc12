"""The docs are true: every command, Python example and link of README.md, datasets/README.md and
docs/*.md passes tools/check_docs.py, and the checker finds each kind of mistake planted in a
page (and passes the same page corrected). Nothing runs: the entry points' parsers and the
configs are read in this process."""

import argparse
import re
import textwrap
from pathlib import Path
from typing import List

import pytest

import check_docs

from .conftest import REPO, load_script

FINETUNE = "configs/finetune/mask_rcnn_pvt_v2_b0_fpn_coco_json.py"
SYNTHETIC = "configs/synthetic/mask_rcnn_pvt_v2_b0_fpn_synthetic.py"


def problems_of(tmp_path: Path, text: str, name: str = "PAGE.md") -> List[str]:
    """The messages of the checker for a page of ``text`` (commands run in this checkout)."""
    page = tmp_path / name
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(textwrap.dedent(text))
    return [p.message for p in check_docs.check_pages([page], REPO)]


def bash(*commands: str) -> str:
    return "```bash\n" + "\n".join(commands) + "\n```\n"


def test_docs_are_clean():
    pages = check_docs.default_pages(REPO)
    assert REPO / "README.md" in pages and REPO / "datasets" / "README.md" in pages
    problems = check_docs.check_pages(pages, REPO)
    assert not problems, "\n" + "\n".join(map(str, problems))


# --- each planted mistake is found, by name; the corrected page passes -----------------------


PREDICT = (
    f"python tools/predict.py --config-file {SYNTHETIC} --checkpoint path/to/model_final.pth \\\n"
    "    --input path/to/photo.jpg --output output/photo {}"
)


def test_misspelled_option(tmp_path):
    assert problems_of(tmp_path, bash(PREDICT.format("--confidence-treshold 0.3"))) == [
        "tools/predict.py has no option --confidence-treshold "
        "(did you mean --confidence-threshold?)"
    ]
    assert problems_of(tmp_path, bash(PREDICT.format("--confidence-threshold 0.3"))) == []
    # argparse's own rules: a unique prefix and --flag=value are accepted
    assert problems_of(tmp_path, bash(PREDICT.format("--confidence=0.3"))) == []


def test_option_value_and_required_options(tmp_path):
    bad_choice = "python tools/benchmark.py --task backbone --layout fastest"
    assert problems_of(tmp_path, bash(bad_choice)) == [
        "tools/benchmark.py --layout: invalid choice 'fastest' (choose from best, default)"
    ]
    no_output = f"python tools/predict.py --config-file {SYNTHETIC} --checkpoint m.pth --input x"
    assert problems_of(tmp_path, bash(no_output)) == [
        "tools/predict.py: the following arguments are required: --output"
    ]
    # options typed after the overrides count (pvt_fpn_d2.cli.parse_args)
    assert problems_of(tmp_path, bash(no_output + " train.seed=1 --output output/x")) == []


def test_path_that_does_not_exist(tmp_path):
    missing = "configs/COCO/mask_rcnn_pvt_v2_b9_fpn_1x.py"
    (message,) = problems_of(tmp_path, bash(f"ls -l {missing}"))
    assert message.startswith(f"{missing} does not exist (did you mean configs/COCO/mask_rcnn_")
    assert problems_of(tmp_path, bash("ls -l configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py")) == []
    # a path given to an option of an entry point
    compare = "python tools/benchmark.py --config-file {} --task backbone --compare {}"
    good = "configs/COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py"
    assert problems_of(tmp_path, bash(compare.format(good, missing)))[0].startswith(
        f"{missing} does not exist"
    )
    assert problems_of(tmp_path, bash(compare.format(good, good))) == []


def test_output_path_not_made_earlier(tmp_path):
    predict = (
        f"python tools/predict.py --config-file {SYNTHETIC} "
        "--checkpoint output/demo/model_final.pth --input datasets/synthetic/val/images "
        "--output output/demo/more"
    )
    assert problems_of(tmp_path, bash(predict)) == [
        "output/demo/model_final.pth is not made by an earlier command on this page "
        "(made so far: nothing)",
        "datasets/synthetic/val/images is not made by an earlier command on this page "
        "(made so far: nothing)",
    ]
    # make demo makes both (output/demo, datasets/synthetic), also in an earlier block
    assert problems_of(tmp_path, bash("make demo") + "\ntext\n\n" + bash(predict)) == []
    # train_net.py writes train.output_dir (overridden, or the config's own)
    train = f"python train_net.py --config-file {SYNTHETIC} train.output_dir=output/run"
    use = "python tools/plot_losses.py output/run/metrics.json output/run/losses.png"
    assert problems_of(tmp_path, bash(use)) == [
        "output/run/metrics.json is not made by an earlier command on this page "
        "(made so far: nothing)"
    ]
    assert problems_of(tmp_path, bash(train, use)) == []
    semseg = "configs/SemSeg/pvt_v2_b0_fpn_concat_synthetic.py"  # train.output_dir: semseg_demo
    page = bash(
        "python datasets/prepare_synthetic.py --out datasets/synthetic_x",
        f"python train_net.py --config-file {semseg} dataset.train_images=datasets/synthetic_x",
        "ls output/semseg_demo/model_final.pth",
    )
    assert problems_of(tmp_path, page) == []


def test_override_key_not_in_config(tmp_path):
    train = f"python train_net.py --config-file {FINETUNE} --eval-only {{}}"
    assert problems_of(tmp_path, bash(train.format("train.max_itr=10"))) == [
        f"override train.max_itr=10: {FINETUNE} has no key train.max_itr "
        "(did you mean train.max_iter?)"
    ]
    assert problems_of(tmp_path, bash(train.format("train.max_iter=10"))) == []
    # +key adds a key on purpose; an argument of a LazyCall the config leaves out is a key too
    assert problems_of(tmp_path, bash(train.format("+train.max_itr=10"))) == []
    eps = "model.backbone.bottom_up.patch_and_sr_norm_eps=1e-06"
    assert problems_of(tmp_path, bash(train.format(eps))) == []
    # a placeholder value, and the values of the page's variables
    assert problems_of(tmp_path, bash(train.format("dataset.train_json=..."))) == []
    page = bash('ARGS="train.max_iter=10 train.eval_period=5"', train.format("$ARGS"))
    assert problems_of(tmp_path, page) == []
    page = bash('ARGS="train.max_itr=10"', train.format("$ARGS"))
    assert problems_of(tmp_path, page)[0].startswith("override train.max_itr=10:")


def test_broken_anchor(tmp_path):
    guide = (
        "# Guide\n\n## The demo: `make demo`\n\n## Usage\n\n```bash\n# not a heading\n```\n\n"
        "## Usage\n"
    )
    assert problems_of(tmp_path, guide, name="GUIDE.md") == []
    page = (
        "# Page\n\n## Getting started\n\n"
        "[a](#getting-started) [b](GUIDE.md#the-demo-make-demo) [c](GUIDE.md#usage-1)\n"
        "[d](GUIDE.md) `[not a link](#nowhere)`\n"
    )
    assert problems_of(tmp_path, page) == []
    assert problems_of(tmp_path, page + "[e](#getting-startd)\n") == [
        "link #getting-startd: no heading #getting-startd in this page "
        "(did you mean #getting-started?)"
    ]
    assert problems_of(tmp_path, page + "[f](GUIDE.md#not-a-heading)\n") == [
        "link GUIDE.md#not-a-heading: no heading #not-a-heading in GUIDE.md"
    ]
    assert problems_of(tmp_path, page + "![g](images/demo.png)\n") == [
        "link images/demo.png: images/demo.png does not exist"
    ]


def test_unknown_config_name(tmp_path):
    train = "python train_net.py --config-file {} --eval-only"
    (message,) = problems_of(tmp_path, bash(train.format("COCO/no_such_config.py")))
    assert message.startswith(
        "--config-file COCO/no_such_config.py: no such file, and no config of that name in the "
        "model zoo (configs/)"
    )
    # a model-zoo name, a file, a file with its configs/ prefix
    for name in ("COCO/mask_rcnn_pvt_v2_b0_fpn_1x.py", FINETUNE):
        assert problems_of(tmp_path, bash(train.format(name))) == []


def test_python_block_import_that_does_not_exist(tmp_path):
    block = "```python\nfrom pvt_fpn_d2 import {}\n\nmodel = None\n```\n"
    assert problems_of(tmp_path, block.format("NoSuchThing")) == [
        "from pvt_fpn_d2 import NoSuchThing: pvt_fpn_d2 has no NoSuchThing"
    ]
    assert problems_of(tmp_path, block.format("PVTv2Backbone, model_zoo")) == []
    assert problems_of(tmp_path, "```python\nimport pvt_fpn_d2.no_such_module\n```\n") == [
        "import pvt_fpn_d2.no_such_module: no such module"
    ]
    assert problems_of(tmp_path, "```python\nx = (1,\n```\n")[0].startswith(
        "python block does not compile"
    )


def test_make_target_that_does_not_exist(tmp_path):
    (message,) = problems_of(tmp_path, bash("make setup && make demoo"))
    assert message.startswith("make has no target demoo (did you mean demo?)")
    assert problems_of(tmp_path, bash("make setup && make demo", "make test PY=python")) == []


def test_problems_print_with_page_and_line(tmp_path):
    page = tmp_path / "PAGE.md"
    page.write_text("# Page\n\n" + bash("make setup", "python tools/predict.py \\", "    --xyz"))
    (problem,) = check_docs.check_pages([page], REPO)
    assert problem.line == 6 and str(problem).endswith(":6: tools/predict.py has no option --xyz")
    assert check_docs.main([str(page)]) == 1
    page.write_text(bash("make demo"))
    assert check_docs.main([str(page)]) == 0


def test_blocks_commands_and_tags(tmp_path):
    """The parsed blocks an executing tier uses: tags, continuations, comments, separators,
    the page's variables."""
    page = tmp_path / "PAGE.md"
    page.write_text(
        "<!-- docs: needs GPU -->\n"
        "```bash\n"
        "D=datasets/synthetic  # a comment\n"
        "python train_net.py --config-file C \\\n"
        "    'a= #not a comment' && ls $D/train; echo \"${D}/x\"  # the end\n"
        "```\n\n"
        "```sh\n"
        "ls $D\n"
        "```\n\n"
        "```python\nprint(1)\n```\n"
    )
    first, second, third = check_docs.blocks(page)
    assert (first.lang, first.line, first.needs) == ("bash", 2, ["GPU"])
    assert [c.argv for c in first.commands] == [
        ["D=datasets/synthetic"],
        ["python", "train_net.py", "--config-file", "C", "a= #not a comment"],
        ["ls", "datasets/synthetic/train"],
        ["echo", "datasets/synthetic/x"],
    ]
    assert first.commands[0].is_assignment and first.commands[1].line == 4
    assert [n for n, _ in first.commands[1].lines] == [4, 5]
    assert second.needs == [] and second.commands[0].argv == ["ls", "datasets/synthetic"]
    assert (third.lang, third.text, third.commands) == ("python", "print(1)", [])
    # a tag that is not right before a block is a problem
    page.write_text("<!-- docs: needs GPU -->\ntext\n\n" + bash("make demo"))
    assert [p.message for p in check_docs.check_pages([page], REPO)] == [
        "<!-- docs: needs ... --> is not right before a fenced block"
    ]


# --- every entry point exposes its parser -----------------------------------------------------


def entry_points() -> List[str]:
    """The scripts with a ``__main__`` block: train_net.py, tools/*.py, datasets/*.py, and
    pvt_fpn_d2/check_dataset.py (``python -m``)."""
    scripts = ["train_net.py", "pvt_fpn_d2/check_dataset.py"]
    for folder in ("tools", "datasets"):
        scripts += sorted(p.relative_to(REPO).as_posix() for p in (REPO / folder).glob("*.py"))
    main = re.compile(r"^if __name__ == .__main__.:", re.M)
    return [s for s in scripts if main.search((REPO / s).read_text())]


def test_entry_points_found():
    found = entry_points()
    for script in ("train_net.py", "tools/predict.py", "datasets/prepare_synthetic.py"):
        assert script in found


@pytest.mark.parametrize("script", entry_points())
def test_entry_point_has_get_parser(script):
    if script == "pvt_fpn_d2/check_dataset.py":
        import pvt_fpn_d2.check_dataset as module
    else:
        module = load_script(script, "entry_point_" + re.sub(r"\W", "_", script))
    assert callable(getattr(module, "get_parser", None)), f"{script} has no get_parser()"
    parser = module.get_parser()
    assert isinstance(parser, argparse.ArgumentParser)
    assert parser.format_help()
    # main (or the __main__ block) reads the command line with it
    source = (REPO / script).read_text()
    assert len(re.findall(r"\bget_parser\(\)", source)) >= 2, f"{script} never calls get_parser()"


def test_mistakes_planted_in_a_copy_of_a_real_page(tmp_path):
    """Each kind of mistake planted in a copy of docs/GETTING_STARTED.md (its links kept: the
    docs folder copied beside it, datasets/ linked): the checker names each, at its line, and
    the unchanged copy is clean."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for page in (REPO / "docs").glob("*.md"):
        (docs / page.name).write_text(page.read_text())
    (tmp_path / "datasets").symlink_to(REPO / "datasets")
    page = docs / "GETTING_STARTED.md"
    original = page.read_text()
    assert check_docs.check_pages([page], REPO) == []
    plants = {
        "--confidence-threshold 0.3": "--confidence-treshold 0.3",
        "--checkpoint output/demo/model_final.pth": "--checkpoint output/demo2/model_final.pth",
        "train.max_iter=200 optimizer.lr=5e-4": "train.max_itr=200 optimizer.lr=5e-4",
        "(MODEL_ZOO.md#yacs-configs)": "(MODEL_ZOO.md#yacs-config)",
        "--config-file configs/COCO/mask_rcnn_pvt_v2_b2_fpn_1x.py --eval-only": (
            "--config-file COCO/mask_rcnn_pvt_v2_b9_fpn_1x.py --eval-only"
        ),
    }
    planted = original
    for good, bad in plants.items():
        assert planted.count(good) == 1, good
        planted = planted.replace(good, bad)
    page.write_text(planted)
    messages = [p.message for p in check_docs.check_pages([page], REPO)]
    expected = [
        "tools/predict.py has no option --confidence-treshold",
        "output/demo2/model_final.pth is not made by an earlier command on this page",
        "override train.max_itr=200: configs/synthetic/mask_rcnn_pvt_v2_b0_fpn_synthetic.py has "
        "no key train.max_itr (did you mean train.max_iter?)",
        "link MODEL_ZOO.md#yacs-config: no heading #yacs-config in MODEL_ZOO.md",
        "--config-file COCO/mask_rcnn_pvt_v2_b9_fpn_1x.py: no such file, and no config of that "
        "name in the model zoo",
    ]
    for start in expected:
        assert any(m.startswith(start) for m in messages), (start, "\n".join(messages))
    assert len(messages) == len(expected), "\n".join(messages)
