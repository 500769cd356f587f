"""Unity and Unreal axis conversions: known values and agreement with the change-of-basis rotation M R M^T."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from bridge.engines import (
    UNITY_AXES,
    UNREAL_AXES,
    unity_angular_velocity,
    unity_position,
    unity_rotation,
    unreal_angular_velocity,
    unreal_position,
    unreal_rotation,
)
from skiptrack_types import InvalidInputError

TURN_LEFT_90 = Rotation.from_euler("y", 90, degrees=True).as_quat()  # OpenXR: +90 deg about +Y turns -Z to -X


def test_unity_position_negates_z():
    np.testing.assert_array_equal(unity_position([1.0, 2.0, 3.0]), [1.0, 2.0, -3.0])


def test_unity_rotation_negates_x_and_y():
    np.testing.assert_array_equal(unity_rotation([0.1, 0.2, 0.3, 0.9]), [-0.1, -0.2, 0.3, 0.9])


def test_unity_turn_left_maps_forward_to_left():
    # Unity: forward +Z, left -X; the quaternion rotates vectors with the usual q v q* formula.
    q = unity_rotation(TURN_LEFT_90)
    np.testing.assert_allclose(Rotation.from_quat(q).apply([0.0, 0.0, 1.0]), [-1.0, 0.0, 0.0], atol=1e-12)


def test_unreal_position_is_centimetres_forward_right_up():
    np.testing.assert_array_equal(unreal_position([1.0, 2.0, 3.0]), [-300.0, 100.0, 200.0])
    np.testing.assert_array_equal(unreal_position([0.0, 0.0, -1.0]), [100.0, 0.0, 0.0])  # forward is +X


def test_unreal_rotation_known_value():
    np.testing.assert_array_equal(unreal_rotation([0.1, 0.2, 0.3, 0.9]), [0.3, -0.1, -0.2, 0.9])


def test_unreal_turn_left_maps_forward_to_left():
    # Unreal: forward +X, right +Y, so left is -Y.
    q = unreal_rotation(TURN_LEFT_90)
    np.testing.assert_allclose(Rotation.from_quat(q).apply([1.0, 0.0, 0.0]), [0.0, -1.0, 0.0], atol=1e-12)


@pytest.mark.parametrize(
    ("to_position", "to_rotation", "axes", "scale"),
    [(unity_position, unity_rotation, UNITY_AXES, 1.0), (unreal_position, unreal_rotation, UNREAL_AXES, 100.0)],
)
def test_conversions_agree_with_the_change_of_basis(to_position, to_rotation, axes, scale):
    rng = np.random.default_rng(0)
    rotations = Rotation.random(50, random_state=1)
    points = rng.normal(size=(50, 3))
    converted = Rotation.from_quat(to_rotation(rotations.as_quat()))
    np.testing.assert_allclose(converted.as_matrix(), axes @ rotations.as_matrix() @ axes.T, atol=1e-12)
    # Rotating then converting equals converting then rotating with the converted quaternion.
    np.testing.assert_allclose(
        to_position(rotations.apply(points)), converted.apply(to_position(points)), atol=1e-9 * scale
    )
    np.testing.assert_allclose(to_position(points), scale * points @ axes.T)


@pytest.mark.parametrize(
    ("to_rotation", "to_angular_velocity"),
    [(unity_rotation, unity_angular_velocity), (unreal_rotation, unreal_angular_velocity)],
)
def test_angular_velocity_converts_like_the_rotation_axis(to_rotation, to_angular_velocity):
    # A spin of w rad/s for dt seconds is the rotation exp(w dt); converting either way must agree.
    w = np.array([0.3, -1.2, 0.7])
    dt = 0.01
    spin = Rotation.from_rotvec(w * dt).as_quat()
    converted = Rotation.from_quat(to_rotation(spin)).as_rotvec() / dt
    np.testing.assert_allclose(to_angular_velocity(w), converted, atol=1e-12)
    np.testing.assert_array_equal(unity_angular_velocity([1.0, 2.0, 3.0]), [-1.0, -2.0, 3.0])
    np.testing.assert_array_equal(unreal_angular_velocity([1.0, 2.0, 3.0]), [3.0, -1.0, -2.0])


def test_conversions_check_the_last_axis():
    with pytest.raises(InvalidInputError, match=r"\(\.\.\., 4\)"):
        unity_rotation([0.0, 0.0, 1.0])
    with pytest.raises(InvalidInputError, match=r"\(\.\.\., 3\)"):
        unreal_position(np.zeros((5, 4)))
