"""tools/predict.py on videos: every frame predicted, drawn and written at the source's size."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from detectron2.config import LazyConfig, instantiate

from pvt_fpn_d2.engine.predictor import Predictor, draw_outputs

from .conftest import REPO, run_tool, subprocess_env, tiny_config


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, tiny_dataset):
    """A tiny Mask R-CNN config and a checkpoint of its random weights."""
    tmp = tmp_path_factory.mktemp("video")
    config = tiny_config(tmp, tiny_dataset)
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(str(config)).model)
    checkpoint = tmp / "model.pth"
    torch.save({"model": model.state_dict()}, checkpoint)
    return config, checkpoint, tiny_dataset["val"]["image_root"]


def _write_video(path, frames, fps=5.0):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


def _read_video(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_video_in_annotated_video_out(model_files, tmp_path):
    config, checkpoint, images = model_files
    stills = [cv2.imread(str(p)) for p in sorted(__import__("pathlib").Path(images).iterdir())]
    source = [stills[i % len(stills)] for i in range(10)]  # 10 frames, 96x96 BGR
    video = tmp_path / "clip.mp4"
    _write_video(video, source)
    decoded = _read_video(video)  # the frames the tool will see (mp4v is lossy)
    assert len(decoded) == 10

    r = run_tool("tools/predict.py", "--config-file", config, "--checkpoint", checkpoint,
                 "--video-input", video, "--output", tmp_path / "out",
                 "--confidence-threshold", "0.0")  # fmt: skip
    assert "10 frames" in r.stdout
    written = _read_video(tmp_path / "out" / "clip.mp4")
    assert len(written) == 10
    assert all(f.shape == decoded[0].shape for f in written)

    # the same frame drawn here, through the Python API
    predictor = Predictor(LazyConfig.load(str(config)), str(checkpoint))
    frame = decoded[3] if predictor.image_format == "BGR" else decoded[3][:, :, ::-1]
    out = predictor.predict(frame)
    assert len(out["instances"]) > 0  # random weights, threshold 0: boxes are drawn
    expected = draw_outputs(predictor, frame, out, score_threshold=0.0)[:, :, ::-1]
    got = written[3].astype(float)
    to_expected = np.abs(got - expected).mean()
    to_plain = np.abs(got - decoded[3]).mean()
    assert to_expected < 0.5 * to_plain, (to_expected, to_plain)


def test_a_video_that_cannot_be_read_is_a_clear_error(model_files, tmp_path):
    config, checkpoint, _ = model_files
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    for source, message in (
        (bad, "OpenCV cannot open video"),
        (tmp_path / "gone.mp4", "does not exist"),
    ):
        r = subprocess.run(
            [sys.executable, str(REPO / "tools/predict.py"), "--config-file", str(config),
             "--checkpoint", str(checkpoint), "--video-input", str(source),
             "--output", str(tmp_path / "out")],
            capture_output=True, text=True, env=subprocess_env(), cwd=REPO,
        )  # fmt: skip
        assert r.returncode != 0
        assert message in r.stderr, r.stderr[-2000:]
