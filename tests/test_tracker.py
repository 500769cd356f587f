"""The Tracker: one call per frame, never raises on a bad frame, honest flags."""

import numpy as np
from pose_scene import PoseScene

from skiptrack_types import Frame, Gap
from tracking.tracker import Tracker, TrackerConfig, TruthKeypointProvider


def _tracked(seconds=0.5):
    scene = PoseScene(seconds=seconds)
    tracker = Tracker(scene.rig, TrackerConfig(gates_path=None))
    results = [tracker.process(f) for f in scene]
    return scene, tracker, results


def test_tracker_reports_tracked_head_with_exit_stage_and_timings():
    _, _, results = _tracked()
    last = results[-1]
    assert last.head.flags.position_tracked and last.head.flags.orientation_tracked
    assert last.head.exit_stage == last.exit_stage == 2
    assert {"keypoints_ms", "head_ms", "hands_ms"} <= set(last.timings_ms)
    assert last.refine_cost > 0 and not last.problems


def test_the_head_pose_is_handed_out_before_the_hands_are_collected():
    scene = PoseScene(seconds=0.2)
    with Tracker(scene.rig, TrackerConfig(gates_path=None)) as tracker:
        finish_hands = tracker._finish_hands
        events: list = []

        def collecting(job):
            events.append("hands")
            return finish_hands(job)

        tracker._finish_hands = collecting
        localized = 0
        for frame in scene:
            events.clear()
            result = tracker.process(frame, on_head=events.append)
            if result.head is not None:
                localized += 1
                assert events == [result.head, "hands"]  # the same pose, before the hands' wait
            else:
                assert events == ["hands"]
    assert localized >= 10


def test_time_going_backwards_is_reported_not_raised():
    scene, tracker, results = _tracked()
    old = scene.frame(3)
    result = tracker.process(old)
    assert any("backwards" in p for p in result.problems)
    assert not result.head.flags.position_tracked and result.head.flags.position_valid


def test_wrong_image_size_is_reported():
    scene, tracker, _ = _tracked()
    small = np.zeros((10, 10), np.uint8)
    result = tracker.process(Frame(999, 10**12, (small, small.copy())))
    assert any("size" in p for p in result.problems)


def test_gap_breaks_the_motion_prior_and_tracking_resumes():
    scene, tracker, results = _tracked()
    gap = tracker.process(Gap(first_seq=30, count=5, t_ns=results[-1].t_ns + 1, reason="usb reset"))
    assert gap.problems and not gap.head.flags.position_tracked
    after = tracker.process(scene.frame(36))
    assert after.head.flags.position_tracked and not after.problems


def test_a_non_frame_is_reported():
    scene, tracker, _ = _tracked()
    result = tracker.process("not a frame")
    assert result.problems


def test_prediction_to_display_time_goes_stale_honestly():
    scene, tracker, results = _tracked()
    t = results[-1].t_ns
    near, _ = tracker.predict(t + 10_000_000)
    far, _ = tracker.predict(t + 200_000_000)
    assert near.flags.position_tracked and near.display_t_ns == t + 10_000_000
    assert far.flags.position_valid and not far.flags.position_tracked
    assert not np.allclose(far.position, results[-1].head.position) or np.allclose(far.linear_velocity, 0)


def test_covered_camera_keeps_tracking_with_the_other():
    scene = PoseScene(seconds=0.6)
    with Tracker(scene.rig, TrackerConfig(gates_path=None)) as tracker:
        results = []
        for f in scene:
            if 15 <= f.seq < 30:
                f = Frame(f.seq, f.t_ns, (np.zeros_like(f.images[0]), f.images[1]), f.imu, f.truth)
            results.append(tracker.process(f))
    assert all(r.head.flags.position_tracked for r in results)


def test_truth_provider_finds_nothing_in_a_covered_camera():
    scene = PoseScene(seconds=0.1)
    frame = scene.frame(0)
    covered = Frame(frame.seq, frame.t_ns, (np.full_like(frame.images[0], 3), frame.images[1]), frame.imu, frame.truth)
    left, right = TruthKeypointProvider()(covered)
    assert len(left) == 0 and not left.hands
    assert len(right) > 50 and right.hands


def test_a_network_provider_starts_the_hands_before_it_decodes_the_scene(monkeypatch):
    """The hand job leaves as soon as the hands are decoded (the hand worker fits them while this process decodes
    the scene points and tracks the head), with the same results as a provider that returns everything at once."""
    from hardware.synthetic import open_synthetic
    from tracking.network import decode as decoding
    from tracking.providers import NetworkKeypointProvider

    frames = list(open_synthetic("still_hand", seconds=0.2, seed=7))
    rig = open_synthetic("still_hand", seconds=0.1, seed=7).rig
    events: list[str] = []
    detect_points = decoding.detect_points

    def detecting(*args, **kwargs):
        events.append("scene")
        return detect_points(*args, **kwargs)

    monkeypatch.setattr(decoding, "detect_points", detecting)
    early_provider = NetworkKeypointProvider(skip=False, parallel=False)
    late_provider = NetworkKeypointProvider(skip=False, parallel=False)

    def frame_only(frame):
        return late_provider(frame)

    early = Tracker(rig, TrackerConfig(gates_path=None, keypoint_provider=early_provider, hand_process=False))
    late = Tracker(rig, TrackerConfig(gates_path=None, keypoint_provider=frame_only, hand_process=False))
    start_hands = early._start_hands

    def starting(job):
        events.append("hands")
        start_hands(job)

    early._start_hands = starting
    fitted = 0
    for frame in frames:
        events.clear()
        a = early.process(frame)
        assert events == ["hands", "scene", "scene"]
        b = late.process(frame)
        assert [h.side for h in a.hands] == [h.side for h in b.hands]
        for hand_a, hand_b in zip(a.hands, b.hands, strict=True):
            np.testing.assert_array_equal(hand_a.joint_positions, hand_b.joint_positions)
        fitted += len(a.hands)
    assert fitted >= len(frames)
