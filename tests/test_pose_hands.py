"""Hands: stereo triangulation of the 21 joints, the OpenXR 26-joint mapping, flags, radii and sides."""

import numpy as np
from pose_scene import PoseScene

from skiptrack_types import OPENXR_HAND_JOINTS
from tracking.keypoints import HandKeypoints, Keypoints, landmark_descriptors, truth_keypoints
from tracking.pose.hands import hand_joint_frames, hand_radii, openxr_flags, pair_hands, triangulate_hand
from tracking.tracker import Tracker, TrackerConfig


def _frame_and_keypoints(noise=0.0):
    scene = PoseScene(seconds=0.1)
    frame = scene.frame(3)
    desc = landmark_descriptors(len(scene.landmarks_world))
    kps = [truth_keypoints(frame, c, desc, noise) for c in range(2)]
    return scene, frame, kps


def test_hand_joints_triangulate_to_the_truth():
    scene, frame, (left, right) = _frame_and_keypoints()
    hand = triangulate_hand("right", left.hand("right"), right.hand("right"), scene.rig, frame.truth.T_world_head)
    assert hand.tracked.all()
    np.testing.assert_allclose(hand.joints_world, frame.truth.hands[0].joints_world, atol=1e-4)


def test_openxr_mapping_places_every_tracker_joint_and_points_bones_along_minus_z():
    scene, frame, _ = _frame_and_keypoints()
    joints = frame.truth.hands[0].joints_world
    positions, orientations = hand_joint_frames("right", joints)
    assert positions.shape == (len(OPENXR_HAND_JOINTS), 3)
    np.testing.assert_allclose(positions[OPENXR_HAND_JOINTS.index("index_proximal")], joints[5])
    np.testing.assert_allclose(positions[OPENXR_HAND_JOINTS.index("little_tip")], joints[20])
    np.testing.assert_allclose(np.linalg.norm(orientations, axis=1), 1.0)
    from scipy.spatial.transform import Rotation

    k = OPENXR_HAND_JOINTS.index("middle_proximal")
    minus_z = -Rotation.from_quat(orientations[k]).as_matrix()[:, 2]
    bone = (joints[10] - joints[9]) / np.linalg.norm(joints[10] - joints[9])
    np.testing.assert_allclose(minus_z, bone, atol=1e-9)


def test_back_of_the_hand_is_plus_y_for_a_palm_down_right_hand():
    scene, frame, _ = _frame_and_keypoints()
    joints_head = frame.truth.hands[0].joints_world  # frame 3: head nearly upright, palm down
    _, orientations = hand_joint_frames("right", joints_head)
    from scipy.spatial.transform import Rotation

    y_wrist = Rotation.from_quat(orientations[1]).as_matrix()[:, 1]
    assert y_wrist[1] > 0.9


def test_derived_joints_are_tracked_only_when_their_sources_are():
    valid = np.ones(21, bool)
    tracked = np.ones(21, bool)
    tracked[9] = False  # middle knuckle
    v26, t26 = openxr_flags(valid, tracked)
    assert v26.all()
    assert not t26[OPENXR_HAND_JOINTS.index("palm")]
    assert not t26[OPENXR_HAND_JOINTS.index("middle_proximal")]
    assert t26[OPENXR_HAND_JOINTS.index("index_proximal")]


def test_radii_scale_with_the_hand():
    scene, frame, _ = _frame_and_keypoints()
    joints = frame.truth.hands[0].joints_world
    small, large = hand_radii(joints * 0.8), hand_radii(joints)
    assert (large > small).all()
    assert 0.004 < large.min() and large.max() < 0.04


def test_sides_stay_consistent_when_one_camera_mislabels_the_hand():
    scene, frame, (left, right) = _frame_and_keypoints()
    h = right.hands[0]
    wrong = Keypoints(
        right.points_px, right.scores, right.descriptors, (HandKeypoints("left", h.joints_px, h.confidence * 0.5, 0.5),)
    )
    pairs = pair_hands(left, wrong, scene.rig)
    assert [p[0] for p in pairs] == ["right"]
    assert pairs[0][1] is not None and pairs[0][2] is not None


def test_tracker_publishes_hand_poses_with_26_joints():
    scene = PoseScene(seconds=0.3)
    with Tracker(scene.rig, TrackerConfig(gates_path=None)) as tracker:
        results = [tracker.process(f) for f in scene]
    hands = results[-1].hands
    assert [h.side for h in hands] == ["right"]
    assert hands[0].joint_tracked.all() and hands[0].flags.position_tracked
    err = np.linalg.norm(hands[0].joint_positions[1] - scene.frame(len(results) - 1).truth.hands[0].joints_world[0])
    assert err < 0.05


def test_evaluation_reads_back_the_21_tracker_joints_from_the_26():
    from tracking.evaluate import OPENXR_TO_MEDIAPIPE

    scene, frame, _ = _frame_and_keypoints()
    joints = frame.truth.hands[0].joints_world
    positions, _ = hand_joint_frames("right", joints)
    np.testing.assert_array_equal(positions[OPENXR_TO_MEDIAPIPE], joints)
    assert hand_radii(joints).shape == (26,)


def test_unseen_joints_follow_the_seen_ones_rigidly():
    from scipy.spatial.transform import Rotation

    from tracking.pose.geometry import carry_rigidly
    from tracking.pose.hands import hand_template

    template = hand_template("right")
    moved = template @ Rotation.from_rotvec([0.2, -0.5, 0.3]).as_matrix().T + (0.1, -0.2, -0.4)
    known = np.zeros(21, bool)
    known[[0, 5, 9, 13, 17]] = True  # wrist and knuckles only
    np.testing.assert_allclose(carry_rigidly(template, known, moved), moved, atol=1e-12)
