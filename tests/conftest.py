import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detectron2.config import LazyConfig
from detectron2.structures import Boxes, Instances, PolygonMasks

# Nothing in the tests may download: make the Hugging Face hub fail fast instead.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATASET = SHARED / "datasets" / "fruits_nuts"


@contextlib.contextmanager
def datasets_registered_here_removed():
    """Remove, on exit, the dataset names registered inside the block."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    datasets, metadata = set(DatasetCatalog.list()), set(MetadataCatalog.list())
    try:
        yield
    finally:
        for name in set(DatasetCatalog.list()) - datasets:
            DatasetCatalog.remove(name)
        for name in set(MetadataCatalog.list()) - metadata:
            MetadataCatalog.remove(name)


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder that ``build(folder)`` fills once per test run, shared by every xdist worker
    (the first worker to ask builds it under a file lock, the others wait and reuse it): for
    expensive artefacts such as ONNX exports. pytest 9 computes node ids itself, so xdist's
    ``--dist loadgroup`` cannot keep a module's tests on one worker; this keeps each build
    single whichever workers the tests land on."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's base folder, above popen-gw0, popen-gw1 ...
    folder = root / f"built_once_{name}"
    with FileLock(str(folder) + ".lock"):
        done = folder / ".done"
        if not done.exists():
            folder.mkdir(parents=True, exist_ok=True)
            build(folder)
            done.touch()
    return folder


@pytest.fixture(autouse=True)
def _datasets_registered_by_a_test_are_removed():
    """Configs register fixed names (``coco_json_train``, ``coco_json_val``) for whatever files a
    test gives them: each test starts with the catalog as it found it, whatever ran before it in
    the same worker."""
    with datasets_registered_here_removed():
        yield


@pytest.fixture
def fruits_nuts() -> Path:
    """The small real COCO-format dataset beside the checkout, when it is there (the tests that
    use it are marked ``shared_data``: see pytest_runtest_makereport)."""
    if not (SHARED_DATASET / "annotations.json").is_file():
        pytest.skip(f"real dataset not found at {SHARED_DATASET}")
    return SHARED_DATASET


def subprocess_env(**extra) -> dict:
    """The environment of the scripts the tests start: this checkout's package first (an editable
    install may point at another checkout), third-party warnings off, and one thread per xdist
    worker as in pytest_configure."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A tiny synthetic COCO dataset: 8 train / 3 val images of 96 px."""
    from pvt_fpn_d2.data import generate_synthetic_coco

    root = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic_coco(str(root), num_train=8, num_val=3, image_size=96, semantic=False)


def tiny_config(
    tmp_path, dataset, config="mask_rcnn_pvt_v2_b0_fpn_coco_json.py", overrides=(), **train
):
    """A fine-tuning config (``configs/finetune/<config>``) pointed at a dataset, shrunk to run
    in seconds on a CPU, then ``overrides`` (key=value) applied; saved as
    ``tmp_path/config.yaml`` for ``train_net.py --config-file``."""
    cfg = LazyConfig.load(str(REPO / "configs/finetune" / config))
    cfg.dataset.update(
        train_json=dataset["train"]["json_file"],
        train_images=dataset["train"]["image_root"],
        val_json=dataset["val"]["json_file"],
        val_images=dataset["val"]["image_root"],
    )
    for split in ("train", "test"):
        resize = cfg.dataloader[split].mapper.augmentations[0]
        resize.short_edge_length, resize.max_size = 96, 128
        cfg.dataloader[split].num_workers = 0
    cfg.dataloader.train.total_batch_size = 2
    if "roi_heads" in cfg.model:  # R-CNNs; RetinaNet has no proposals to cut
        cfg.model.proposal_generator.post_nms_topk = (200, 50)
        cfg.model.roi_heads.batch_size_per_image = 32
    cfg.train.update(
        init_checkpoint="",
        output_dir=str(tmp_path / "out"),
        max_iter=4,
        eval_period=4,
        log_period=1,
        device="cpu",
        seed=0,
    )
    cfg.train.checkpointer.period = 2
    cfg.train.update(train)
    if overrides:
        from pvt_fpn_d2.config import apply_overrides

        cfg = apply_overrides(cfg, list(overrides))
    path = tmp_path / "config.yaml"
    LazyConfig.save(cfg, str(path))
    return path


def load_script(path: str, name: str):
    """A script of the checkout (``train_net.py``, ``tools/<tool>.py``) imported as a module
    named ``name``, to call its functions in this process."""
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_train_net(*args, timeout=600, check=True):
    r = subprocess.run(
        [sys.executable, str(REPO / "train_net.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(),
        cwd=REPO,
    )
    if check:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return r


def run_tool(script, *args, timeout=600):
    """``python <script> args`` in the checkout (e.g. tools/predict.py); it must exit 0."""
    r = subprocess.run(
        [sys.executable, str(REPO / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(),
        cwd=REPO,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return r


def train_steps(model, batches, steps, lr, loss_key):
    """``steps`` AdamW steps of ``model`` on ``batches`` in turn (all losses summed); the
    ``loss_key`` loss of each step."""
    from detectron2.utils.events import EventStorage

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    with EventStorage():
        for i in range(steps):
            loss_dict = model(batches[i % len(batches)])
            optimizer.zero_grad()
            sum(loss_dict.values()).backward()
            optimizer.step()
            losses.append(loss_dict[loss_key].item())
    return losses


def metrics(out_dir):
    """The rows of detectron2's metrics.json."""
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


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


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "fruits_nuts" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that needs ../shared must not pass as "skipped" where ../shared exists (CI has it
    beside the clone): its skip becomes a failure that names the reason."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("shared_data") and SHARED.is_dir():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} needs the shared data and {SHARED} exists, but it was skipped: "
            f"{reason}"
        )
