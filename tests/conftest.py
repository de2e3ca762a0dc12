import os
from pathlib import Path

import pytest
import torch

from detectron2.structures import Boxes, Instances, PolygonMasks

# Nothing in the tests may download: make the Hugging Face hub fail fast instead.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASET = REPO.parent / "shared" / "datasets" / "fruits_nuts"


@pytest.fixture
def fruits_nuts() -> Path:
    """The small real COCO-format dataset beside the checkout, when it is there."""
    if not (SHARED_DATASET / "annotations.json").is_file():
        pytest.skip(f"real dataset not found at {SHARED_DATASET}")
    return SHARED_DATASET


def make_batch(num_images=2, size=(160, 192), num_classes=3, seed=0):
    """Detectron2 training inputs: uint8 images with a few box+polygon instances each."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    batch = []
    for i in range(num_images):
        image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        inst = Instances((h, w))
        boxes, polys = [], []
        for j in range(2 + i):
            x0, y0 = 10 + 25 * j, 12 + 15 * j
            x1, y1 = min(x0 + 60, w - 1), min(y0 + 70, h - 1)
            boxes.append([x0, y0, x1, y1])
            polys.append([[x0, y0, x1, y0, x1, y1, x0, y1]])
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.arange(len(boxes)) % num_classes
        inst.gt_masks = PolygonMasks(polys)
        batch.append({"image": image, "instances": inst, "height": h, "width": w})
    return batch


def pytest_configure(config):
    # one thread per xdist worker: two workers x two threads on two cores thrash
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
