"""Hands fitted in a second process while the head is tracked: the same results as in-process, and a worker that
dies costs a warning, not the hands."""

import logging
import os

import numpy as np
import pytest
from pose_scene import PoseScene

from tracking.filter import OneEuroConfig
from tracking.hand_tracker import HandJob
from tracking.hand_worker import HandWorker, HandWorkerError
from tracking.pose.hands import HandConfig
from tracking.tracker import Tracker, TrackerConfig, TruthKeypointProvider


def _run(scene, hand_process):
    config = TrackerConfig(gates_path=None, hand_process=hand_process, keypoint_provider=TruthKeypointProvider(seed=3))
    with Tracker(scene.rig, config) as tracker:
        return [tracker.process(f) for f in scene]


def test_hands_from_the_worker_process_equal_the_in_process_ones():
    scene = PoseScene(seconds=0.4)
    here = _run(scene, False)
    there = _run(scene, True)
    assert sum(len(r.hands) for r in here) >= len(here)  # hands were fitted at all
    for a, b in zip(here, there, strict=True):
        assert [h.side for h in a.hands] == [h.side for h in b.hands]
        for ha, hb in zip(a.hands, b.hands, strict=True):
            np.testing.assert_array_equal(ha.joint_positions, hb.joint_positions)
            np.testing.assert_array_equal(ha.joint_orientations, hb.joint_orientations)
        assert b.timings_ms["hands_fit_ms"] > 0


def test_a_dead_worker_is_replaced_by_in_process_fitting(caplog):
    scene = PoseScene(seconds=0.3)
    frames = list(scene)
    config = TrackerConfig(gates_path=None, hand_process=True)
    with Tracker(scene.rig, config) as tracker:
        first = [tracker.process(f) for f in frames[:3]]
        worker = tracker._hand_worker
        assert worker is not None and first[-1].hands
        os.kill(worker._process.pid, 9)
        worker._process.wait()
        with caplog.at_level(logging.WARNING):
            later = [tracker.process(f) for f in frames[3:]]
    assert tracker._hand_worker is None
    assert "hand worker process stopped" in caplog.text
    assert all(r.hands and not r.problems for r in later)


def test_a_failing_job_raises_the_workers_traceback_here():
    scene = PoseScene(seconds=0.1)
    worker = HandWorker(scene.rig, HandConfig(), OneEuroConfig())
    try:
        worker.submit(HandJob(0, ("not", "keypoints"), None))
        try:
            worker.result()
        except HandWorkerError as exc:
            assert "AttributeError" in str(exc) and "hands" in str(exc)
        else:
            raise AssertionError("a failing job must raise")
    finally:
        worker.close()
    assert worker._process.poll() is not None


@pytest.mark.parametrize("python", ["/bin/false", "/nonexistent/python"])
def test_a_worker_that_cannot_start_leaves_the_hands_in_process(monkeypatch, caplog, python):
    scene = PoseScene(seconds=0.1)
    monkeypatch.setattr("sys.executable", python)
    with caplog.at_level(logging.WARNING), Tracker(scene.rig, TrackerConfig(gates_path=None, hand_process=True)) as t:
        results = [t.process(f) for f in scene]
    assert t._hand_worker is None and "fitting them in this process" in caplog.text
    assert results[-1].hands and not results[-1].problems
