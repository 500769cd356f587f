"""Stereo matching along rectified epipolar lines, its refinement on the images, and triangulation, on the analytic
pose scene and on rendered frames."""

import cv2
import numpy as np
from pose_scene import PoseScene

from hardware.synthetic import open_synthetic
from tracking.keypoints import landmark_descriptors, truth_keypoints
from tracking.pose.geometry import invert, transform_points
from tracking.pose.map import REJECTED, UNMATCHED, LandmarkMap
from tracking.pose.stereo import match_stereo, refine_right_columns


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


def _shifted_pair(disparity: float) -> tuple[np.ndarray, np.ndarray]:
    """A textured left image and the right image it becomes at one sub-pixel ``disparity`` everywhere."""
    rng = np.random.default_rng(3)
    left = cv2.GaussianBlur(rng.integers(0, 255, (240, 320)).astype(np.uint8), (0, 0), 1.2)
    shift = np.float32([[1, 0, -disparity], [0, 1, 0]])
    right = cv2.warpAffine(left, shift, (320, 240), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return left, right


def test_refinement_finds_a_subpixel_disparity_from_a_guess_two_pixels_off():
    left, right = _shifted_pair(6.3)
    rng = np.random.default_rng(4)
    left_px = rng.uniform([20, 20], [300, 220], (50, 2))
    guess = left_px[:, 0] - 6.3 + rng.uniform(-2, 2, 50)
    refined = refine_right_columns((left, right), left_px, guess, patch_px=4, search_px=3, min_match=0.8)
    error = np.abs(refined - (left_px[:, 0] - 6.3))
    assert np.median(error) < 0.08 and error.max() < 0.25  # the parabola's pixel locking: a tenth of a pixel or two
    flat = np.full_like(right, 90)  # nothing to match: the guess stays
    np.testing.assert_array_equal(refine_right_columns((left, flat), left_px, guess, 4, 3, 0.8), guess)


def test_stereo_matches_refined_on_the_images_triangulate_closer_to_the_truth():
    source = open_synthetic("seated", seconds=0.1, seed=7)
    frame = next(iter(source))
    rig = source.rig
    desc = landmark_descriptors(len(frame.truth.landmarks_px[0]))
    rng = np.random.default_rng(5)
    left, right = (truth_keypoints(frame, c, desc, 0.7, rng) for c in range(2))
    exact = match_stereo(*(truth_keypoints(frame, c, desc, 0.0, rng) for c in range(2)), rig)
    truth_depth = dict(zip(exact.left_index.tolist(), exact.points_cam0[:, 2], strict=True))

    def depth_errors(stereo):
        pairs = [(z, truth_depth[i]) for i, z in zip(stereo.left_index.tolist(), stereo.points_cam0[:, 2],
                                                     strict=True) if i in truth_depth]  # fmt: skip
        return np.abs(np.subtract(*np.array(pairs).T) / np.array(pairs)[:, 1])

    plain = depth_errors(match_stereo(left, right, rig))
    refined = depth_errors(match_stereo(left, right, rig, images=frame.images))
    assert len(refined) >= 0.9 * len(plain) >= 30
    assert np.median(refined) < 0.5 * np.median(plain)
