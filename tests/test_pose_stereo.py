"""Stereo matching along rectified epipolar lines and triangulation, on the analytic pose scene."""

import numpy as np
from pose_scene import PoseScene

from tracking.keypoints import landmark_descriptors, truth_keypoints
from tracking.pose.geometry import invert, transform_points
from tracking.pose.map import REJECTED, UNMATCHED, LandmarkMap
from tracking.pose.stereo import match_stereo


def _scene_keypoints(noise: float = 0.0):
    scene = PoseScene(seconds=0.1)
    frame = scene.frame(0)
    desc = landmark_descriptors(len(scene.landmarks_world))
    rng = np.random.default_rng(0)
    return scene, frame, desc, [truth_keypoints(frame, c, desc, noise, rng) for c in range(2)]


def test_stereo_triangulates_noise_free_matches_exactly():
    scene, frame, _, (left, right) = _scene_keypoints()
    stereo = match_stereo(left, right, scene.rig)
    T_cam0_world = invert(frame.truth.T_world_head @ scene.rig.T_head_cam0)
    truth = transform_points(T_cam0_world, scene.landmarks_world[frame.truth.landmarks_visible[0]][stereo.left_index])
    assert len(stereo) > 0.8 * min(len(left), len(right))
    np.testing.assert_allclose(stereo.points_cam0, truth, atol=1e-4)  # float32 pixels, iterative undistortion


def test_stereo_matches_only_the_same_landmark():
    scene, frame, _, (left, right) = _scene_keypoints(noise=0.5)
    stereo = match_stereo(left, right, scene.rig)
    ids_l = np.flatnonzero(frame.truth.landmarks_visible[0])[stereo.left_index]
    ids_r = np.flatnonzero(frame.truth.landmarks_visible[1])[stereo.right_index]
    np.testing.assert_array_equal(ids_l, ids_r)


def test_map_fusion_of_many_noisy_views_beats_a_single_view():
    scene, frame, desc, _ = _scene_keypoints()
    rng = np.random.default_rng(1)
    T_world_cam0 = frame.truth.T_world_head @ scene.rig.T_head_cam0
    visible_ids = np.flatnonzero(frame.truth.landmarks_visible[0])
    single = LandmarkMap(desc.shape[1])
    fused = LandmarkMap(desc.shape[1])
    map_id_of: dict[int, int] = {}
    for _ in range(20):
        left, right = (truth_keypoints(frame, c, desc, 0.5, rng) for c in range(2))
        stereo = match_stereo(left, right, scene.rig)
        if not map_id_of:
            single.fuse(T_world_cam0, stereo, np.full(len(left), UNMATCHED), scene.rig.cam0.fx)
            got = fused.fuse(T_world_cam0, stereo, np.full(len(left), UNMATCHED), scene.rig.cam0.fx)
            map_id_of = dict(zip(visible_ids[stereo.left_index].tolist(), got.tolist(), strict=True))
        else:
            left_ids = np.array([map_id_of.get(i, REJECTED) for i in visible_ids])
            fused.fuse(T_world_cam0, stereo, left_ids, scene.rig.cam0.fx)
    truth = scene.landmarks_world[list(map_id_of)]
    err_single = np.linalg.norm(single.positions - truth, axis=1).mean()
    err_fused = np.linalg.norm(fused.positions - truth, axis=1).mean()
    assert err_fused < 0.35 * err_single  # sqrt(20) views would give 0.22 without the inverse-depth bias
