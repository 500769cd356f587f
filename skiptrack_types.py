"""The types that flow between SkipTrack's packages, and the project's exceptions.

Every package imports these from here and nowhere else. Conventions (see docs/DESIGN.md):

- time: integer nanoseconds, ``t_ns`` is capture time (mid-exposure) on the source's clock;
- images: uint8 grayscale ``(H, W)``, C-contiguous, one per camera, camera 0 is the left camera;
- camera frame: OpenCV (x right, y down, z forward); world and everything published: OpenXR (right-handed,
  +Y up, -Z forward, metres); quaternions ``(x, y, z, w)`` as in ``scipy.spatial.transform.Rotation``;
- ``T_a_b`` is the 4x4 pose of frame b in frame a (maps points from b to a);
- hands: 21 keypoints in MediaPipe order inside the tracker, 26 OpenXR ``XR_EXT_hand_tracking`` joints when published.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

# --------------------------------------------------------------------------------------------------- errors


class SkipTrackError(Exception):
    """Base of every error SkipTrack raises on purpose; the message says what was wrong and what to do."""


class InvalidInputError(SkipTrackError, ValueError):
    """An array, value or option that does not have the expected shape, dtype, range or finiteness."""


class TimestampError(InvalidInputError):
    """Time went backwards or did not advance where it must."""


class SourceError(SkipTrackError):
    """A frame source could not be opened or failed while reading (unknown scheme, missing file, lost device)."""


class CalibrationError(SkipTrackError):
    """A calibration could not be computed, or a calibration file is corrupt or incomplete."""


# --------------------------------------------------------------------------------------------------- validation


def require_array(
    name: str,
    value: object,
    shape: tuple[int | None, ...],
    dtype: type | np.dtype | None = None,
    finite: bool = True,
) -> np.ndarray:
    """Check that ``value`` is an ndarray of ``shape`` (None = any size) and ``dtype``; return it.

    Raises InvalidInputError naming the array, what it got and what was expected.
    """
    if not isinstance(value, np.ndarray):
        raise InvalidInputError(
            f"{name} must be a numpy array of shape {_shape_str(shape)}, got {type(value).__name__}"
        )
    # The exact-shape comparison first: poses are checked per message on the bridge, where microseconds count.
    if value.shape != shape and (
        value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape, strict=True))
    ):
        raise InvalidInputError(f"{name} must have shape {_shape_str(shape)}, got {value.shape}")
    if dtype is not None and value.dtype != np.dtype(dtype):
        raise InvalidInputError(f"{name} must have dtype {np.dtype(dtype)}, got {value.dtype}")
    if finite and value.dtype.kind == "f" and not np.isfinite(value).all():
        raise InvalidInputError(f"{name} contains NaN or infinite values; every value must be finite")
    return value


def require_transform(name: str, value: object) -> np.ndarray:
    """Check a 4x4 rigid transform (finite, last row 0 0 0 1, orthonormal rotation) and return it as float64."""
    T = require_array(name, np.asarray(value, dtype=np.float64) if isinstance(value, np.ndarray) else value, (4, 4))
    T = T.astype(np.float64, copy=False)
    R = T[:3, :3]
    if not np.allclose(T[3], (0.0, 0.0, 0.0, 1.0), atol=1e-9):
        raise InvalidInputError(f"{name} must have last row (0, 0, 0, 1), got {T[3]}")
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or np.linalg.det(R) < 0:
        raise InvalidInputError(f"{name} must hold a proper rotation (orthonormal, det +1) in its upper-left 3x3")
    return T


def require_later(name: str, prev_t_ns: int | None, t_ns: int) -> None:
    """Raise TimestampError unless ``t_ns`` is strictly after ``prev_t_ns`` (when there is one)."""
    if prev_t_ns is not None and t_ns <= prev_t_ns:
        raise TimestampError(
            f"{name} went backwards or repeated: {t_ns} ns after {prev_t_ns} ns; timestamps must strictly increase "
            "(check the source's clock, or reset the consumer when a recording restarts)"
        )


def _shape_str(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"


# --------------------------------------------------------------------------------------------------- hands

MEDIAPIPE_JOINTS: tuple[str, ...] = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)  # fmt: skip
"""The 21 hand keypoints inside the tracker, in MediaPipe order."""

OPENXR_HAND_JOINTS: tuple[str, ...] = (
    "palm", "wrist",
    "thumb_metacarpal", "thumb_proximal", "thumb_distal", "thumb_tip",
    "index_metacarpal", "index_proximal", "index_intermediate", "index_distal", "index_tip",
    "middle_metacarpal", "middle_proximal", "middle_intermediate", "middle_distal", "middle_tip",
    "ring_metacarpal", "ring_proximal", "ring_intermediate", "ring_distal", "ring_tip",
    "little_metacarpal", "little_proximal", "little_intermediate", "little_distal", "little_tip",
)  # fmt: skip
"""The 26 joints of OpenXR ``XR_EXT_hand_tracking`` (``XrHandJointEXT`` order), as published."""

HAND_SIDES: tuple[str, ...] = ("left", "right")


# --------------------------------------------------------------------------------------------------- cameras


class CameraModelKind(enum.Enum):
    """Projection + distortion model. Both are handled by OpenCV."""

    PINHOLE_RADTAN = "pinhole-radtan"  # OpenCV's 5 coefficients k1 k2 p1 p2 k3
    FISHEYE = "fisheye"  # equidistant, cv2.fisheye's 4 coefficients k1 k2 k3 k4


_DIST_COUNT = {CameraModelKind.PINHOLE_RADTAN: 5, CameraModelKind.FISHEYE: 4}


@dataclass(frozen=True, eq=False)
class CameraModel:
    """One camera's intrinsics. ``K`` (3, 3), ``dist`` (5,) radtan or (4,) fisheye, image size in pixels."""

    width: int
    height: int
    K: np.ndarray
    dist: np.ndarray
    kind: CameraModelKind = CameraModelKind.PINHOLE_RADTAN

    def __post_init__(self) -> None:
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise InvalidInputError(f"camera image size must be positive, got {self.width}x{self.height}")
        K = require_array("camera K", np.asarray(self.K, dtype=np.float64), (3, 3))
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise InvalidInputError(f"camera focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
        n = _DIST_COUNT[self.kind]
        dist = require_array(f"{self.kind.value} distortion", np.asarray(self.dist, dtype=np.float64).ravel(), (n,))
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @classmethod
    def from_intrinsics(
        cls,
        width: int,
        height: int,
        fx: float,
        fy: float,
        cx: float,
        cy: float,
        dist: np.ndarray | list[float] | None = None,
        kind: CameraModelKind = CameraModelKind.PINHOLE_RADTAN,
    ) -> CameraModel:
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        if dist is None:
            dist = np.zeros(_DIST_COUNT[kind])
        return cls(width, height, K, np.asarray(dist, dtype=np.float64), kind)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, the order OpenCV takes."""
        return (self.width, self.height)

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Project ``points_cam`` (N, 3) metres in the camera frame to pixels (N, 2), distortion applied.

        Points with z <= 0 are returned as NaN (they are behind the camera).
        """
        pts = require_array("points_cam", np.asarray(points_cam, dtype=np.float64), (None, 3))
        out = np.full((len(pts), 2), np.nan)
        front = pts[:, 2] > 1e-9
        if front.any():
            obj = pts[front].reshape(-1, 1, 3)
            zero = np.zeros(3)
            if self.kind is CameraModelKind.FISHEYE:
                px, _ = cv2.fisheye.projectPoints(obj, zero, zero, self.K, self.dist)
            else:
                px, _ = cv2.projectPoints(obj, zero, zero, self.K, self.dist)
            out[front] = px.reshape(-1, 2)
        return out

    def unproject(self, pixels: np.ndarray) -> np.ndarray:
        """Rays (N, 3) with z = 1 in the camera frame for ``pixels`` (N, 2), distortion removed."""
        return np.hstack([self.undistort_points(pixels), np.ones((len(pixels), 1))])

    def undistort_points(self, pixels: np.ndarray) -> np.ndarray:
        """Normalised image coordinates (N, 2) (x/z, y/z) of distorted ``pixels`` (N, 2)."""
        px = require_array("pixels", np.asarray(pixels, dtype=np.float64), (None, 2)).reshape(-1, 1, 2)
        if len(px) == 0:
            return np.zeros((0, 2))
        if self.kind is CameraModelKind.FISHEYE:
            return cv2.fisheye.undistortPoints(px, self.K, self.dist).reshape(-1, 2)
        return cv2.undistortPoints(px, self.K, self.dist).reshape(-1, 2)

    def undistort_image(self, image: np.ndarray) -> np.ndarray:
        """The image as a distortion-free pinhole camera with the same K would have seen it."""
        require_array("image", image, (self.height, self.width), np.uint8)
        if self.kind is CameraModelKind.FISHEYE:
            return cv2.fisheye.undistortImage(image, self.K, self.dist, Knew=self.K)
        return cv2.undistort(image, self.K, self.dist)


T_OPENXR_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
"""Axis change from an OpenCV camera frame (x right, y down, z forward) to an OpenXR frame at the same place
(x right, y up, z backward): the pose of a forward-looking camera in the head frame, without offset."""


@dataclass(frozen=True)
class Rectification:
    """Stereo rectification (cv2.stereoRectify): rotations R0/R1 (3, 3), projections P0/P1 (3, 4), Q (4, 4),
    and remap tables per camera ((H, W) float32 map_x, map_y)."""

    R0: np.ndarray
    R1: np.ndarray
    P0: np.ndarray
    P1: np.ndarray
    Q: np.ndarray
    maps0: tuple[np.ndarray, np.ndarray]
    maps1: tuple[np.ndarray, np.ndarray]

    @property
    def focal_px(self) -> float:
        return float(self.P0[0, 0])

    @property
    def baseline_m(self) -> float:
        """Distance between the rectified optical centres, metres (positive)."""
        return float(abs(self.P1[0, 3] / self.P1[0, 0]))

    def rectify(self, images: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Remap a (left, right) image pair into the rectified pair."""
        left = cv2.remap(images[0], *self.maps0, cv2.INTER_LINEAR)
        right = cv2.remap(images[1], *self.maps1, cv2.INTER_LINEAR)
        return left, right


@dataclass(frozen=True, eq=False)
class StereoRig:
    """The headset's sensor rig: two cameras and ``T_cam0_cam1`` (4, 4), the pose of camera 1 (right) in camera 0
    (left).

    ``T_head_cam0`` places camera 0 on the headset, ``T_head_imu`` the IMU; the head frame uses OpenXR axes
    (x right, y up, z backward), cameras OpenCV axes. When the placement is unknown the head frame sits at camera 0
    with OpenXR axes (``T_head_cam0`` = ``T_OPENXR_OPENCV``) and the IMU at the head frame (identity).
    """

    cam0: CameraModel
    cam1: CameraModel
    T_cam0_cam1: np.ndarray
    T_head_cam0: np.ndarray = field(default_factory=lambda: T_OPENXR_OPENCV.copy())
    T_head_imu: np.ndarray = field(default_factory=lambda: np.eye(4))

    def __post_init__(self) -> None:
        for name in ("T_cam0_cam1", "T_head_cam0", "T_head_imu"):
            object.__setattr__(self, name, require_transform(name, getattr(self, name)))
        if self.cam0.size != self.cam1.size:
            raise InvalidInputError(
                f"stereo cameras must have the same image size, got {self.cam0.size} and {self.cam1.size}"
            )

    @property
    def baseline_m(self) -> float:
        return float(np.linalg.norm(self.T_cam0_cam1[:3, 3]))

    @property
    def cameras(self) -> tuple[CameraModel, CameraModel]:
        return (self.cam0, self.cam1)

    @property
    def T_head_cam1(self) -> np.ndarray:
        return self.T_head_cam0 @ self.T_cam0_cam1

    @cached_property
    def rectification(self) -> Rectification:
        """Rectification of the pair, computed once (alpha = 0: only valid pixels)."""
        T_cam1_cam0 = np.linalg.inv(self.T_cam0_cam1)
        R, t = T_cam1_cam0[:3, :3], T_cam1_cam0[:3, 3]
        size = self.cam0.size
        if self.cam0.kind is CameraModelKind.FISHEYE:
            R0, R1, P0, P1, Q = cv2.fisheye.stereoRectify(
                self.cam0.K, self.cam0.dist, self.cam1.K, self.cam1.dist, size, R, t,
                flags=cv2.CALIB_ZERO_DISPARITY, balance=0.0,
            )  # fmt: skip
            init = cv2.fisheye.initUndistortRectifyMap
        else:
            R0, R1, P0, P1, Q, _, _ = cv2.stereoRectify(
                self.cam0.K, self.cam0.dist, self.cam1.K, self.cam1.dist, size, R, t,
                flags=cv2.CALIB_ZERO_DISPARITY, alpha=0.0,
            )  # fmt: skip
            init = cv2.initUndistortRectifyMap
        maps0 = init(self.cam0.K, self.cam0.dist, R0, P0, size, cv2.CV_32FC1)
        maps1 = init(self.cam1.K, self.cam1.dist, R1, P1, size, cv2.CV_32FC1)
        return Rectification(R0, R1, P0, P1, Q, tuple(maps0), tuple(maps1))


# --------------------------------------------------------------------------------------------------- frames


@dataclass(frozen=True, eq=False)
class HandTruth:
    """Ground truth of one hand: ``joints_world`` (21, 3) metres, and per camera ``joints_px`` (21, 2) and
    ``visible`` (21,) bool (in the image and not occluded), MediaPipe order."""

    side: str
    joints_world: np.ndarray
    joints_px: tuple[np.ndarray, ...]
    visible: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if self.side not in HAND_SIDES:
            raise InvalidInputError(f"hand side must be one of {HAND_SIDES}, got {self.side!r}")
        require_array("joints_world", self.joints_world, (21, 3))
        if len(self.joints_px) != len(self.visible):
            raise InvalidInputError("joints_px and visible must have one entry per camera")
        for i, (px, vis) in enumerate(zip(self.joints_px, self.visible, strict=True)):
            require_array(f"joints_px[{i}]", px, (21, 2), finite=False)
            require_array(f"visible[{i}]", vis, (21,), np.bool_)


@dataclass(frozen=True, eq=False)
class Truth:
    """What the source knows for certain about a frame: ``T_world_head`` (4, 4), the hands (in view or not),
    and, when the source has a landmark map (the synthetic world), per camera the projections
    ``landmarks_px`` (N, 2) of all N world landmarks and their ``landmarks_visible`` (N,) bool (in the image,
    in front of the camera and not occluded). Landmark i is row i of the source's ``landmarks_world`` (N, 3)."""

    T_world_head: np.ndarray
    hands: tuple[HandTruth, ...] = ()
    landmarks_px: tuple[np.ndarray, ...] = ()
    landmarks_visible: tuple[np.ndarray, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "T_world_head", require_transform("T_world_head", self.T_world_head))
        object.__setattr__(self, "hands", tuple(self.hands))
        object.__setattr__(self, "landmarks_px", tuple(self.landmarks_px))
        object.__setattr__(self, "landmarks_visible", tuple(self.landmarks_visible))
        if len(self.landmarks_px) != len(self.landmarks_visible):
            raise InvalidInputError("landmarks_px and landmarks_visible must have one entry per camera")
        for i, (px, vis) in enumerate(zip(self.landmarks_px, self.landmarks_visible, strict=True)):
            require_array(f"landmarks_px[{i}]", px, (None, 2), finite=False)
            require_array(f"landmarks_visible[{i}]", vis, (len(px),), np.bool_)

    def hand(self, side: str) -> HandTruth | None:
        return next((h for h in self.hands if h.side == side), None)


@dataclass(frozen=True, eq=False)
class Frame:
    """One capture: ``images`` (one uint8 (H, W) per camera), ``imu`` rows of (t_ns, gx, gy, gz [rad/s],
    ax, ay, az [m/s^2]) since the previous frame (or None), and ``truth`` when the source knows it."""

    seq: int
    t_ns: int
    images: tuple[np.ndarray, ...]
    imu: np.ndarray | None = None
    truth: Truth | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.seq, (int, np.integer)) or self.seq < 0:
            raise InvalidInputError(f"frame seq must be a non-negative integer, got {self.seq!r}")
        if not isinstance(self.t_ns, (int, np.integer)):
            raise InvalidInputError(f"frame t_ns must be an integer (nanoseconds), got {type(self.t_ns).__name__}")
        images = tuple(self.images)
        if not images:
            raise InvalidInputError("a frame needs at least one image")
        for i, img in enumerate(images):
            require_array(f"image {i}", img, (None, None), np.uint8)
            if not img.flags.c_contiguous:
                raise InvalidInputError(f"image {i} must be C-contiguous; pass np.ascontiguousarray(image)")
            if img.shape != images[0].shape:
                raise InvalidInputError(
                    f"all images of a frame must have one size, got {images[0].shape} and {img.shape}"
                )
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "seq", int(self.seq))
        object.__setattr__(self, "t_ns", int(self.t_ns))
        if self.imu is not None:
            imu = require_array("imu", np.asarray(self.imu, dtype=np.float64), (None, 7))
            if len(imu) > 1 and np.any(np.diff(imu[:, 0]) < 0):
                raise TimestampError("imu sample times must not go backwards within a frame")
            object.__setattr__(self, "imu", imu)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of every image."""
        return (self.images[0].shape[1], self.images[0].shape[0])


@dataclass(frozen=True)
class Gap:
    """Marker a live source yields in place of frames it lost (dropped frames, a camera that disappeared).

    ``first_seq`` .. ``first_seq + count - 1`` were not delivered; ``t_ns`` is when the gap was noticed.
    Consumers must treat the next frame as discontinuous (no motion prior across the gap).
    """

    first_seq: int
    count: int
    t_ns: int
    reason: str


# --------------------------------------------------------------------------------------------------- poses


@dataclass(frozen=True)
class TrackingFlags:
    """The four OpenXR location flags. A pose predicted from old data is valid but not tracked."""

    orientation_valid: bool = False
    orientation_tracked: bool = False
    position_valid: bool = False
    position_tracked: bool = False

    @classmethod
    def tracked(cls) -> TrackingFlags:
        return cls(True, True, True, True)

    @classmethod
    def predicted(cls) -> TrackingFlags:
        """Valid but not tracked: what a pose extrapolated from stale data must say."""
        return cls(True, False, True, False)

    @classmethod
    def lost(cls) -> TrackingFlags:
        return cls()

    def to_bits(self) -> int:
        """Bits in OpenXR's ``XrSpaceLocationFlags`` order: 1 orientation valid, 2 position valid,
        4 orientation tracked, 8 position tracked."""
        return (
            int(self.orientation_valid)
            | int(self.position_valid) << 1
            | int(self.orientation_tracked) << 2
            | int(self.position_tracked) << 3
        )

    @classmethod
    def from_bits(cls, bits: int) -> TrackingFlags:
        return cls(bool(bits & 1), bool(bits & 4), bool(bits & 2), bool(bits & 8))


@dataclass(frozen=True, eq=False)
class HeadPose:
    """The headset's pose in the world (OpenXR axes, metres), as published.

    ``position`` (3,), ``orientation`` (4,) unit quaternion (x, y, z, w), velocities in the world frame
    (m/s, rad/s). ``t_ns`` is the capture time of the frame it came from, ``display_t_ns`` the time it was
    predicted to (equal to ``t_ns`` when not predicted). ``exit_stage`` is the refinement stage it exited at,
    ``active_fraction`` the share of the network that was recomputed for it.
    """

    seq: int
    t_ns: int
    position: np.ndarray
    orientation: np.ndarray
    linear_velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    angular_velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    flags: TrackingFlags = field(default_factory=TrackingFlags.tracked)
    display_t_ns: int | None = None
    exit_stage: int = 0
    active_fraction: float = 1.0

    def __post_init__(self) -> None:
        _check_pose_arrays(self)
        if self.display_t_ns is None:
            object.__setattr__(self, "display_t_ns", int(self.t_ns))

    @property
    def T_world_head(self) -> np.ndarray:
        """The pose as a 4x4 transform."""
        from scipy.spatial.transform import Rotation

        T = np.eye(4)
        T[:3, :3] = Rotation.from_quat(self.orientation).as_matrix()
        T[:3, 3] = self.position
        return T


@dataclass(frozen=True, eq=False)
class HandPose:
    """One hand as the 26 OpenXR joints in the world (OpenXR axes, metres).

    ``joint_positions`` (26, 3), ``joint_orientations`` (26, 4) (x, y, z, w), ``joint_radii`` (26,) metres,
    ``joint_valid`` / ``joint_tracked`` (26,) bool. ``position``/``orientation`` are the wrist's (joint 1),
    velocities the wrist's. Other fields as in HeadPose.
    """

    seq: int
    t_ns: int
    side: str
    joint_positions: np.ndarray
    joint_orientations: np.ndarray
    joint_radii: np.ndarray
    joint_valid: np.ndarray
    joint_tracked: np.ndarray
    linear_velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    angular_velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    flags: TrackingFlags = field(default_factory=TrackingFlags.tracked)
    display_t_ns: int | None = None
    exit_stage: int = 0
    active_fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.side not in HAND_SIDES:
            raise InvalidInputError(f"hand side must be one of {HAND_SIDES}, got {self.side!r}")
        require_array("joint_positions", self.joint_positions, (26, 3))
        require_array("joint_orientations", self.joint_orientations, (26, 4))
        require_array("joint_radii", self.joint_radii, (26,))
        require_array("joint_valid", self.joint_valid, (26,), np.bool_)
        require_array("joint_tracked", self.joint_tracked, (26,), np.bool_)
        require_array("linear_velocity", self.linear_velocity, (3,))
        require_array("angular_velocity", self.angular_velocity, (3,))
        if self.display_t_ns is None:
            object.__setattr__(self, "display_t_ns", int(self.t_ns))

    @property
    def position(self) -> np.ndarray:
        return self.joint_positions[1]

    @property
    def orientation(self) -> np.ndarray:
        return self.joint_orientations[1]


def build_prechecked(cls: type, fields: dict) -> object:
    """An instance of the frozen dataclass ``cls`` from ``fields`` (every field, none defaulted) without running
    ``__post_init__``: for decoders that have already checked every value against the same rules, where the
    per-message cost matters (the bridge decodes thousands of poses a second)."""
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


def _check_pose_arrays(pose: HeadPose) -> None:
    require_array("position", pose.position, (3,))
    q = require_array("orientation", pose.orientation, (4,))
    if abs(float(np.linalg.norm(q)) - 1.0) > 1e-3:
        raise InvalidInputError(f"orientation must be a unit quaternion (x, y, z, w), got norm {np.linalg.norm(q):.4f}")
    require_array("linear_velocity", pose.linear_velocity, (3,))
    require_array("angular_velocity", pose.angular_velocity, (3,))
