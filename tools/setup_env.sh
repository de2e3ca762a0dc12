#!/usr/bin/env bash
# `make setup`: create (or complete) the Python environment for pvt_fpn_d2.
#
#   VENV    the environment to use (default .venv). If it does not exist it is created with
#           $PYTHON and filled with the pinned, known-good stack of tools/constraints.txt.
#           If it exists and was not created here (your own env with torch and perhaps
#           detectron2 from GitHub), what is in it is kept: nothing is pinned, only what is
#           missing is installed.
#   PYTHON  interpreter used to create a new VENV (default python3.11)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
MARK="$VENV/.pvt_fpn_d2-pinned"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
    touch "$MARK"
fi
PY="$VENV/bin/python"
PIN=()
if [ -e "$MARK" ]; then
    PIN=(-c tools/constraints.txt)
else
    echo "$VENV was not created by make setup: keeping its packages, installing only what is missing"
fi
PIP=("$PY" -m pip install --disable-pip-version-check "${PIN[@]}")

# torch first: detectron2's setup.py imports it (built with --no-build-isolation).
if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
    "${PIP[@]}" torch torchvision
fi
# detectron2.model_zoo imports pkg_resources, which setuptools>=81 no longer ships.
if ! "$PY" -c "import pkg_resources, wheel" 2>/dev/null; then
    "${PIP[@]}" "setuptools<81" wheel
fi
# Builds detectron2 from the pb1-detectron2 sdist only if no working detectron2 is found.
"$PY" tools/install_detectron2.py --pip-args "${PIN[*]}"
"${PIP[@]}" -e ".[test,deploy]"
"$PY" tools/install_detectron2.py --check
# Test-only: mmdetection, for the parity tests of converted checkpoints
# (tests/test_mmdet_convert.py); the library never imports it. --no-deps: mmengine and mmcv-lite
# require opencv-python, which would shadow the pinned opencv-python-headless (both own cv2);
# the file lists their real dependencies. An environment not created here is left alone (its
# mmcv may have the compiled ops): the tests are skipped there unless it has mmdetection.
if [ -e "$MARK" ]; then
    "${PIP[@]}" --no-deps -r tools/requirements-mmdet.txt
elif ! "$PY" -c "import mmdet" 2>/dev/null; then
    echo "note: mmdetection is not installed in $VENV, so tests/test_mmdet_convert.py is skipped;" \
        "to run it: $PY -m pip install --no-deps -r tools/requirements-mmdet.txt"
fi
