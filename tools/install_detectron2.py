#!/usr/bin/env python
"""
Build and install detectron2 v0.6 from the PyPI sdist ``pb1-detectron2==0.6``, with the
smallest set of fixes that make it build and import on today's PyTorch, Pillow, NumPy and
setuptools.

There is no official detectron2 on PyPI. Users with internet access should install detectron2
from GitHub instead (``pip install 'git+https://github.com/facebookresearch/detectron2.git'``);
this installer is for machines that only reach a package registry. ``make setup`` runs it only
when no working detectron2 is installed (see ``--check``).

Each fix names the problem it solves (numbered as in the project's environment notes) and first
checks that the text it changes is there. If the sdist ever changes, the installer stops with an
error instead of producing a half-working detectron2.

The fixes (also listed in docs/INSTALL.md):
  1. the sdist ships no C++/CUDA sources (``detectron2/layers/csrc``) but setup.py always builds
     the extension: build without it;
  2. setup.py looks for model-zoo configs in a top-level ``configs/`` the sdist does not have:
     package ``detectron2/model_zoo/configs`` instead;
  3. ``install_requires`` pins ``black==21.4b2``, which breaks with current click: unpin;
  4. four modules import ``detectron2._C`` at import time: import a stand-in that raises a clear
     error naming the op when one of them (deformable conv on GPU, rotated boxes,
     ROIAlignRotated, the fast COCOeval) is used;
  5. Pillow >= 10 removed ``Image.LINEAR``: use ``Image.BILINEAR`` (as upstream did);
  6. NumPy >= 1.24 removed ``np.bool``/``np.int``/``np.float``/``np.str``: use the builtins;
  7. ``model_zoo`` imports ``pkg_resources``: requires ``setuptools<81`` (checked, not patched;
     upstream detectron2 needs it too).

Usage:
  python tools/install_detectron2.py            # install unless a working detectron2 exists
  python tools/install_detectron2.py --check    # exit 0 iff a working detectron2 is importable
  python tools/install_detectron2.py --sdist pb1-detectron2-0.6.tar.gz  # offline, local sdist
"""

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

SDIST_NAME = "pb1-detectron2-0.6.tar.gz"
SDIST_URL = (
    "https://files.pythonhosted.org/packages/60/26/"
    "48f5bbb7ee492696a21da23303daeecdfe3942c498a70d34108acf63b2bd/" + SDIST_NAME
)
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
# Shows up in `pip show pb1-detectron2` so a patched build is recognisable.
VERSION_SUFFIX = "+pvtfpnd2"

# What "a working detectron2" means for this project (issue #2).
REQUIRED_MODULES = (
    "detectron2.layers",
    "detectron2.structures",
    "detectron2.data",
    "detectron2.modeling",
    "detectron2.evaluation",
    "detectron2.engine",
    "detectron2.checkpoint",
    "detectron2.model_zoo",
)
CHECK_CODE = (
    "import importlib\n"
    f"for m in {REQUIRED_MODULES!r}:\n"
    "    importlib.import_module(m)\n"
    "from detectron2 import model_zoo\n"
    "model_zoo.get_config('common/models/mask_rcnn_fpn.py')\n"
    "import detectron2\n"
    "print(detectron2.__version__, detectron2.__file__)\n"
)


class PatchError(RuntimeError):
    """A fix could not be applied because the text it changes is not in the sdist."""


@dataclass(frozen=True)
class Patch:
    """Replace ``old`` by ``new`` in ``path`` (relative to the sdist root)."""

    problem: int
    path: str
    old: str
    new: str

    def apply(self, root: Path) -> None:
        file = root / self.path
        if not file.is_file():
            raise PatchError(
                f"fix for problem {self.problem}: {self.path} does not exist in the sdist. "
                "The sdist is not the one this installer was written for; install detectron2 "
                "from source instead (see docs/INSTALL.md)."
            )
        text = file.read_text()
        n = text.count(self.old)
        if n == 0:
            raise PatchError(
                f"fix for problem {self.problem}: expected text not found in {self.path}:\n"
                f"    {self.old.strip()!r}\n"
                "The sdist changed (or was already patched); refusing to build a half-fixed "
                "detectron2. Install detectron2 from source instead (see docs/INSTALL.md)."
            )
        file.write_text(text.replace(self.old, self.new))


@dataclass(frozen=True)
class RegexPatch:
    """Apply a regex substitution to each of ``paths``; each must contain at least one match."""

    problem: int
    paths: Sequence[str]
    pattern: str
    repl: str

    def apply(self, root: Path) -> None:
        for rel in self.paths:
            file = root / rel
            if not file.is_file():
                raise PatchError(
                    f"fix for problem {self.problem}: {rel} does not exist in the sdist."
                )
            text, n = re.subn(self.pattern, self.repl, file.read_text())
            if n == 0:
                raise PatchError(
                    f"fix for problem {self.problem}: pattern {self.pattern!r} not found in {rel}. "
                    "The sdist changed (or was already patched); refusing to build a half-fixed "
                    "detectron2. Install detectron2 from source instead (see docs/INSTALL.md)."
                )
            file.write_text(text)


@dataclass(frozen=True)
class NewFile:
    """Add a file that must not exist yet."""

    problem: int
    path: str
    text: str

    def apply(self, root: Path) -> None:
        file = root / self.path
        if file.exists():
            raise PatchError(f"fix for problem {self.problem}: {self.path} already exists.")
        file.write_text(self.text)


MISSING_OPS_MODULE = '''\
"""
Stand-in for ``detectron2._C``, added by pvt_fpn_d2's tools/install_detectron2.py.

This detectron2 was built from the ``pb1-detectron2==0.6`` sdist, which ships no C++/CUDA
sources. Everything pure-Python (and everything torchvision provides: RoIAlign, NMS) works;
the few ops below need the compiled extension and raise a clear error when used.
"""

_FEATURES = {
    "deform_conv": "deformable convolution on GPU (DeformConv/ModulatedDeformConv)",
    "box_iou_rotated": "rotated boxes (pairwise_iou_rotated, RotatedBoxes.iou)",
    "roi_align_rotated": "ROIAlignRotated",
    "COCOeval": "detectron2's fast COCOeval (COCOEvaluator(use_fast_impl=True))",
    "InstanceAnnotation": "detectron2's fast COCOeval (COCOEvaluator(use_fast_impl=True))",
}


class _MissingOps:
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        feature = next((v for k, v in _FEATURES.items() if k in name), "a detectron2 C++ op")
        raise RuntimeError(
            f"detectron2 C++ op '{name}' is not available: this detectron2 was built from the "
            f"pb1-detectron2 sdist without its C++/CUDA extension, so {feature} cannot run. "
            "PVT-v2 + FPN detectors do not need it. To use it, install detectron2 from source: "
            "https://detectron2.readthedocs.io/en/latest/tutorials/install.html"
        )


_C = _MissingOps()
'''

_C_IMPORT = "from detectron2 import _C\n"
_C_STANDIN = "from detectron2._missing_ops import _C  # pvt_fpn_d2 installer: no C++ ops built\n"

PATCHES = (
    Patch(1, "setup.py", "    ext_modules=get_extensions(),\n", "    ext_modules=[],\n"),
    Patch(
        2,
        "setup.py",
        '    config_paths = glob.glob("configs/**/*.yaml", recursive=True) + glob.glob(\n'
        '        "configs/**/*.py", recursive=True\n'
        "    )\n",
        "    # the sdist keeps the configs inside the package (pvt_fpn_d2 installer)\n"
        "    config_paths = [\n"
        '        path.relpath(p, "detectron2/model_zoo")\n'
        '        for ext in ("yaml", "py")\n'
        '        for p in glob.glob(f"detectron2/model_zoo/configs/**/*.{ext}", recursive=True)\n'
        "    ]\n",
    ),
    Patch(3, "setup.py", '        "black==21.4b2",\n', '        "black",\n'),
    NewFile(4, "detectron2/_missing_ops.py", MISSING_OPS_MODULE),
    Patch(4, "detectron2/layers/deform_conv.py", _C_IMPORT, _C_STANDIN),
    Patch(4, "detectron2/layers/rotated_boxes.py", _C_IMPORT, _C_STANDIN),
    Patch(4, "detectron2/layers/roi_align_rotated.py", _C_IMPORT, _C_STANDIN),
    Patch(4, "detectron2/evaluation/fast_eval_api.py", _C_IMPORT, _C_STANDIN),
    Patch(
        5,
        "detectron2/data/transforms/transform.py",
        "interp=Image.LINEAR,",
        "interp=Image.BILINEAR,",
    ),
    RegexPatch(
        6,
        (
            "detectron2/structures/masks.py",
            "detectron2/data/build.py",
            "detectron2/data/datasets/pascal_voc.py",
            "detectron2/evaluation/sem_seg_evaluation.py",
            "detectron2/evaluation/pascal_voc_evaluation.py",
            "detectron2/utils/visualizer.py",
            "detectron2/utils/video_visualizer.py",
        ),
        # np.bool -> bool etc.; \b keeps np.bool_, np.int64, np.float32 untouched.
        r"\bnp\.(bool|int|float|str)\b(?![_\w])",
        r"\1",
    ),
)
NUMPY_ALIAS = re.compile(r"\bnp\.(bool|int|float|str)\b(?![_\w])")


def apply_patches(root: Path, patches: Sequence = PATCHES) -> None:
    """Apply every fix to the unpacked sdist at ``root``; raise PatchError on the first miss."""
    for p in patches:
        p.apply(root)
    # Problem 6 must be fixed everywhere, not only in the files listed above.
    left = [
        f"{f.relative_to(root)}:{i}"
        for f in sorted((root / "detectron2").rglob("*.py"))
        for i, line in enumerate(f.read_text().splitlines(), 1)
        if NUMPY_ALIAS.search(line) and not line.lstrip().startswith("#")
    ]
    if left:
        raise PatchError(
            "fix for problem 6: removed NumPy aliases still used at " + ", ".join(left)
        )


def check_detectron2(python: str = sys.executable) -> Optional[str]:
    """Return detectron2's version and path if a working detectron2 is importable, else None."""
    r = subprocess.run([python, "-c", CHECK_CODE], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def check_setuptools() -> None:
    """Problem 7: detectron2.model_zoo imports pkg_resources (gone from setuptools >= 81)."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        sys.exit(
            "error: detectron2's model_zoo imports pkg_resources, which this environment lacks. "
            "Install it first: pip install 'setuptools<81'"
        )


def fetch_sdist(dest: Path) -> Path:
    path = dest / SDIST_NAME
    print(f"downloading {SDIST_URL}", flush=True)
    with urllib.request.urlopen(SDIST_URL, timeout=120) as r:
        path.write_bytes(r.read())
    return path


def verify_sdist(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        sys.exit(
            f"error: {path} has sha256 {digest}, expected {SDIST_SHA256} "
            f"({SDIST_NAME} from PyPI). Pass the original file with --sdist."
        )


def get_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check for a working detectron2")
    parser.add_argument("--force", action="store_true", help="install even if one works")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="with --check: the interpreter to check (default: this one)",
    )
    parser.add_argument("--sdist", type=Path, help=f"a local copy of {SDIST_NAME}")
    parser.add_argument(
        "--pip-args", default="", help="extra arguments for pip install, e.g. '-c constraints.txt'"
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)

    found = check_detectron2(args.python if args.check else sys.executable)
    if args.check:
        print(f"detectron2: {found}" if found else "detectron2: not installed or not working")
        return 0 if found else 1
    if found and not args.force:
        print(f"detectron2 already works ({found}); keeping it.")
        return 0

    check_setuptools()
    with tempfile.TemporaryDirectory(prefix="install_detectron2_") as tmp:
        tmp = Path(tmp)
        sdist = args.sdist or fetch_sdist(tmp)
        verify_sdist(sdist)
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        root = tmp / SDIST_NAME[: -len(".tar.gz")]
        apply_patches(root)
        print(f"applied {len(PATCHES)} fixes to {root.name}", flush=True)
        cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation"]
        cmd += args.pip_args.split() + [str(root)]
        env = {**os.environ, "D2_VERSION_SUFFIX": VERSION_SUFFIX}
        subprocess.run(cmd, check=True, env=env)

    found = check_detectron2()
    if not found:
        sys.exit("error: detectron2 was installed but does not import; see the output above.")
    print(f"detectron2 installed: {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
