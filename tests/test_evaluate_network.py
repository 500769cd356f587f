"""tracking.evaluate_network on short real videos written here: the skip vs dense agreement and the dense network's
own frame-to-frame agreement beside it."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from tracking.evaluate_network import evaluate_network

FRAMES = 6


def _evaluate(path: Path, images: list) -> dict:
    """evaluate_network on a 10 frames/s video of ``images``, from the second frame on (the first frame OpenCV
    decodes from such a file differs from the others by a few grey levels)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240), isColor=False)
    for image in [images[0], *images]:
        writer.write(image)
    writer.release()
    r = evaluate_network(f"video:{path}", seconds=len(images) / 10, start_s=0.1)
    assert r["frames"] == len(images)
    return r


@pytest.fixture
def street(data_dir: Path):
    return cv2.resize(cv2.imread(str(data_dir / "vtest_frames" / "vtest_0000.png"), cv2.IMREAD_GRAYSCALE), (320, 240))


def test_on_a_still_video_the_dense_keypoints_agree_with_their_previous_frame_and_the_skip_ones(tmp_path, street):
    r = _evaluate(tmp_path / "still.avi", [street] * FRAMES)
    assert r["dense_frame_agreement_1px"] == 1.0
    assert r["skip_dense_agreement_1px"] == 1.0


def test_the_dense_frame_to_frame_agreement_falls_where_the_image_changes(tmp_path, street):
    r = _evaluate(tmp_path / "cuts.avi", [street if i % 2 else cv2.flip(street, 1) for i in range(FRAMES)])
    assert r["dense_frame_agreement_1px"] < 0.2  # a scene and its mirror image in turn
    assert r["skip_dense_agreement_1px"] > 0.9  # the skip model follows the cuts
