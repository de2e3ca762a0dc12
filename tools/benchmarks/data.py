"""
The ``data`` task: what a large COCO json costs before training starts. A generated dataset
(``num_images`` images, ``instances`` polygon objects each) is registered, its training loader
gives its first batch, and a ``COCOEvaluator`` is set up on it, in a fresh interpreter per run:
seconds for each step and the peak memory (RSS) of the process.

With ``other_checkout`` the same runs use the ``pvt_fpn_d2`` of another checkout (for example a
``git worktree`` of an older commit), alternated with this one, on the same files.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["make_large_coco", "run_data_benchmark"]

IMAGE_SIZE = (480, 640)  # (H, W) of every generated image

# run in a fresh interpreter: argv = json file, image folder
_CHILD = r"""
import json, resource, sys, time
start = time.perf_counter()
from pvt_fpn_d2.cli import silence_known_warnings
silence_known_warnings()
import detectron2.data.transforms as T
from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
from pvt_fpn_d2.data import DatasetMapper, register_coco_json
from pvt_fpn_d2.evaluation import COCOEvaluator
import pvt_fpn_d2
t = {"imports_s": time.perf_counter() - start}
mark = time.perf_counter()
register_coco_json("large_coco", sys.argv[1], sys.argv[2], check="header")
t["register_s"] = time.perf_counter() - mark
mark = time.perf_counter()
loader = build_detection_train_loader(
    dataset=get_detection_dataset_dicts(["large_coco"]),
    mapper=DatasetMapper(
        is_train=True,
        augmentations=[T.ResizeShortestEdge(480, 640)],
        image_format="RGB",
        use_instance_mask=True,
    ),
    total_batch_size=2,
    num_workers=0,
)
batch = next(iter(loader))
t["dataset_and_first_batch_s"] = time.perf_counter() - mark
t["start_to_first_batch_s"] = time.perf_counter() - start
mark = time.perf_counter()
evaluator = COCOEvaluator("large_coco", output_dir=None)
evaluator.reset()
t["evaluator_setup_s"] = time.perf_counter() - mark
t["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t["package"] = pvt_fpn_d2.__file__
print("RESULT " + json.dumps(t))
"""


def make_large_coco(folder: str, num_images: int, instances: int, seed: int = 0) -> Tuple[str, str]:
    """A COCO json of ``num_images`` images with ``instances`` polygon objects each (10 classes),
    and its image folder, where every image is a hard link to one 480x640 JPEG. Reused when
    ``folder`` already holds one of that size. Returns (json file, image folder)."""
    from PIL import Image

    root = Path(folder)
    json_file, images = root / "annotations.json", root / "images"
    stamp = root / "made.json"
    wanted = {"num_images": num_images, "instances": instances, "seed": seed}
    if json_file.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return str(json_file), str(images)
    images.mkdir(parents=True, exist_ok=True)
    h, w = IMAGE_SIZE
    rng = np.random.default_rng(seed)
    base = root / "base.jpg"
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(base, quality=80)
    image_entries, annotations = [], []
    for i in range(1, num_images + 1):
        name = f"{i:07d}.jpg"
        target = images / name
        if not target.exists():
            try:
                os.link(base, target)
            except OSError:  # a file system without hard links
                target.write_bytes(base.read_bytes())
        image_entries.append({"id": i, "file_name": name, "height": h, "width": w})
    boxes = rng.uniform(0, 1, (num_images * instances, 4))
    cats = rng.integers(1, 11, num_images * instances)
    for k, (a, b, c, d) in enumerate(boxes):
        bw, bh = 16 + c * (w / 4), 16 + d * (h / 4)
        x, y = a * (w - bw), b * (h - bh)
        poly = [x, y, x + bw, y, x + bw, y + bh, x + bw / 2, y + bh * 1.2, x, y + bh]
        poly = [round(min(v, (w if j % 2 == 0 else h) - 1), 1) for j, v in enumerate(poly)]
        annotations.append(
            {
                "id": k + 1,
                "image_id": k // instances + 1,
                "category_id": int(cats[k]),
                "bbox": [round(x, 1), round(y, 1), round(bw, 1), round(bh, 1)],
                "area": round(bw * bh, 1),
                "iscrowd": 0,
                "segmentation": [poly],
            }
        )
    categories = [{"id": i, "name": f"class_{i}"} for i in range(1, 11)]
    with open(json_file, "w") as f:
        json.dump(
            {"images": image_entries, "annotations": annotations, "categories": categories}, f
        )
    stamp.write_text(json.dumps(wanted))
    return str(json_file), str(images)


def _run_child(checkout: str, json_file: str, image_root: str) -> Dict[str, Any]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [checkout, env.get("PYTHONPATH")]))
    r = subprocess.run(
        [sys.executable, "-c", _CHILD, json_file, image_root],
        capture_output=True,
        text=True,
        env=env,
        cwd=checkout,
    )
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"the data benchmark child failed:\n{r.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def run_data_benchmark(
    data_dir: str,
    num_images: int = 50000,
    instances: int = 10,
    repeats: int = 1,
    other_checkout: Optional[str] = None,
    seed: int = 0,
) -> Dict[str, Any]:
    """Generate (or reuse) the dataset in ``data_dir`` and measure it ``repeats`` times with this
    checkout (A) and, alternately, ``other_checkout`` (B). Figures are medians."""
    this = str(Path(__file__).resolve().parents[2])
    mark = time.perf_counter()
    json_file, image_root = map(
        os.path.abspath, make_large_coco(data_dir, num_images, instances, seed)
    )
    out: Dict[str, Any] = {
        "num_images": num_images,
        "num_annotations": num_images * instances,
        "json_mb": os.path.getsize(json_file) / 2**20,
        "generate_s": time.perf_counter() - mark,
    }
    checkouts = {"A": this} if not other_checkout else {"A": this, "B": other_checkout}
    runs: Dict[str, List[Dict[str, Any]]] = {k: [] for k in checkouts}
    for i in range(repeats):
        order = list(checkouts) if i % 2 == 0 else list(checkouts)[::-1]
        for k in order:
            runs[k].append(_run_child(checkouts[k], json_file, image_root))
    for k, results in runs.items():
        keys = [key for key in results[0] if key.endswith(("_s", "_mb"))]
        out[k] = {key: float(np.median([r[key] for r in results])) for key in keys}
        out[k]["checkout"] = checkouts[k]
        out[k]["package"] = results[0]["package"]
    return out
