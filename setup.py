#!/usr/bin/env python
"""pvt_fpn_d2: PVT-v2 backbones with FPN for Detectron2.

detectron2 is not declared as a dependency because it is not on PyPI: install it first
(from GitHub, or with ``make setup``, which builds it from the pb1-detectron2 sdist).
"""

from pathlib import Path

from setuptools import find_packages, setup


def get_version() -> str:
    init = Path(__file__).parent / "pvt_fpn_d2" / "__init__.py"
    line = next(l for l in init.read_text().splitlines() if l.startswith("__version__"))
    return line.split("=")[1].strip().strip("\"'")


setup(
    name="pvt_fpn_d2",
    version=get_version(),
    description="PVT-v2 (Pyramid Vision Transformer v2) backbones with FPN for Detectron2",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    # an SPDX expression (PEP 639): setuptools >= 77 deprecates the License classifier
    license="Apache-2.0",
    license_files=["LICENSE"],
    # the configs/ folder ships inside the package as pvt_fpn_d2/configs (pvt_fpn_d2.model_zoo):
    # one copy of the configs, read in place in a checkout
    packages=find_packages(include=("pvt_fpn_d2", "pvt_fpn_d2.*")) + ["pvt_fpn_d2.configs"],
    package_dir={"pvt_fpn_d2.configs": "configs"},
    package_data={"pvt_fpn_d2.configs": ["**/*.py", "**/*.yaml"]},
    python_requires=">=3.9",
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: Science/Research",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        # pvt_v2 with forward_intermediates / prune_intermediate_layers
        "timm>=1.0.3",
        "safetensors>=0.4",
        "fvcore>=0.1.5,<0.1.6",
        "pycocotools>=2.0.2",
        # C++ COCOeval that needs no compiled detectron2 (drop-in for pycocotools)
        "faster-coco-eval>=1.6",
        "omegaconf>=2.1",
        "numpy",
        "Pillow",
        "opencv-python-headless",
        "psutil",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3"],
        # tools/export_model.py (torch.export-based ONNX exporter) and OnnxPredictor
        "deploy": ["onnx>=1.17", "onnxruntime>=1.20", "onnxscript>=0.3"],
    },
)
