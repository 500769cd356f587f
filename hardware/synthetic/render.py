"""Rendering the synthetic world into distorted grey camera images, fast enough never to be a bottleneck.

Per camera: each planar textured face is warped with ``cv2.warpPerspective`` (homography texture -> an
undistorted pinhole "render" image slightly wider than the lens sees), clipped at a near plane in camera space;
walls first (a convex room seen from inside: walls never overlap), then furniture boxes back to front, then the
hands as shaded capsules drawn with OpenCV primitives in depth order. One ``cv2.remap`` with a precomputed map
applies the lens distortion. A label image of the hands, drawn alongside, answers occlusion queries.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from hardware.synthetic.hands import BONES, bone_radius
from hardware.synthetic.textures import TEXEL_M
from hardware.synthetic.world import MIP_LEVELS, Box, Face, World
from skiptrack_types import CameraModel, StereoRig

Z_NEAR_M = 0.05
SUBPIXEL_BITS = 4  # OpenCV drawing shift: coordinates in 1/16 pixel so hands move smoothly
SKIN_ALBEDO = 215.0
LIGHT_WORLD = np.array([0.3, 1.0, 0.4]) / np.linalg.norm([0.3, 1.0, 0.4])
PALM_JOINTS = (0, 1, 5, 9, 13, 17)


@dataclass(frozen=True)
class RenderCamera:
    """The undistorted pinhole image a camera is rendered into (``K`` (3, 3), ``size`` (w, h)), and the remap
    tables (fixed-point, from ``cv2.convertMaps``) taking it to the camera's distorted image."""

    K: np.ndarray
    size: tuple[int, int]
    map1: np.ndarray
    map2: np.ndarray


def make_render_camera(camera: CameraModel, margin_px: int = 3) -> RenderCamera:
    """Pinhole camera with the lens' focal length covering every pixel of ``camera`` after undistortion."""
    u, v = np.meshgrid(np.arange(camera.width, dtype=np.float64), np.arange(camera.height, dtype=np.float64))
    pixels = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    normalized = cv2.undistortPointsIter(pixels, camera.K, camera.dist, None, None, criteria).reshape(-1, 2)
    f = camera.fx
    lo = np.floor(normalized.min(axis=0) * f) - margin_px
    hi = np.ceil(normalized.max(axis=0) * f) + margin_px
    K = np.array([[f, 0.0, -lo[0]], [0.0, f, -lo[1]], [0.0, 0.0, 1.0]])
    size = (int(hi[0] - lo[0]) + 1, int(hi[1] - lo[1]) + 1)
    map_x = (normalized[:, 0] * f + K[0, 2]).reshape(camera.height, camera.width).astype(np.float32)
    map_y = (normalized[:, 1] * f + K[1, 2]).reshape(camera.height, camera.width).astype(np.float32)
    map1, map2 = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
    return RenderCamera(K, size, map1, map2)


def clip_near(points_cam: np.ndarray, z_near: float = Z_NEAR_M) -> np.ndarray:
    """Sutherland-Hodgman clip of a convex polygon (N, 3) in camera space against the plane z = z_near."""
    points = points_cam.tolist()
    out = []
    for a, b in zip(points, points[1:] + points[:1], strict=True):
        a_in, b_in = a[2] >= z_near, b[2] >= z_near
        if a_in:
            out.append(a)
        if a_in != b_in:
            s = (z_near - a[2]) / (b[2] - a[2])
            out.append([a[0] + (b[0] - a[0]) * s, a[1] + (b[1] - a[1]) * s, z_near])
    return np.array(out).reshape(-1, 3)


def _box_order(boxes: tuple[Box, ...], eye: np.ndarray) -> list[int]:
    """Indices of ``boxes`` back to front as seen from ``eye`` (3,): along an axis separating two boxes, the one on
    the viewer's side is in front."""

    def compare(i: int, j: int) -> int:
        a, b = boxes[i], boxes[j]
        for k in range(3):
            if a.hi[k] <= b.lo[k] + 1e-9:
                return -1 if eye[k] >= b.lo[k] else 1
            if b.hi[k] <= a.lo[k] + 1e-9:
                return 1 if eye[k] >= a.lo[k] else -1
        return int(np.sign(np.linalg.norm(b.center - eye) - np.linalg.norm(a.center - eye)))

    return sorted(range(len(boxes)), key=functools.cmp_to_key(compare))


@dataclass(frozen=True)
class RenderedView:
    """One camera's rendering: the distorted uint8 ``image`` (H, W); ``hand_labels`` (h, w) uint8 in render space
    holding 1 + the index into ``label_owners`` of the hand primitive in front at each pixel (0: no hand), where
    ``label_owners[i]`` = (hand index, joints the primitive spans); ``K`` the render camera's (3, 3)."""

    image: np.ndarray
    hand_labels: np.ndarray
    label_owners: tuple[tuple[int, tuple[int, ...]], ...]
    K: np.ndarray

    def label_at(self, points_cam: np.ndarray) -> np.ndarray:
        """Hand label (N,) int at camera-frame points (N, 3) (0 off-image or behind the camera)."""
        h, w = self.hand_labels.shape
        out = np.zeros(len(points_cam), np.int32)
        front = points_cam[:, 2] > Z_NEAR_M
        px = points_cam[front] @ self.K.T
        u = np.round(px[:, 0] / px[:, 2]).astype(np.int64, copy=False) if len(px) else np.zeros(0, np.int64)
        v = np.round(px[:, 1] / px[:, 2]).astype(np.int64, copy=False) if len(px) else np.zeros(0, np.int64)
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        idx = np.flatnonzero(front)[inside]
        out[idx] = self.hand_labels[v[inside], u[inside]]
        return out


@dataclass(frozen=True)
class _FaceTable:
    """Every face of the world stacked for vectorised culling: walls first, then each box's faces.

    ``corners`` (F, 4, 3), ``origins`` / ``normals`` (F, 3), ``planes`` (F, levels, 3, 3) as
    ``Face.plane_matrices``; ``wall_faces`` and ``box_faces[b]`` index into ``faces``."""

    faces: tuple[Face, ...]
    corners: np.ndarray
    origins: np.ndarray
    normals: np.ndarray
    planes: np.ndarray
    wall_faces: np.ndarray
    box_faces: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, world: World) -> _FaceTable:
        faces = list(world.walls)
        box_faces = []
        for box in world.boxes:
            box_faces.append(np.arange(len(faces), len(faces) + len(box.faces)))
            faces += box.faces
        return cls(
            faces=tuple(faces),
            corners=np.stack([f.corners_world for f in faces]),
            origins=np.stack([f.origin for f in faces]),
            normals=np.stack([f.normal for f in faces]),
            planes=np.stack([np.stack(f.plane_matrices) for f in faces]),
            wall_faces=np.arange(len(world.walls)),
            box_faces=tuple(box_faces),
        )


class SceneRenderer:
    """Renders the world and hands for both cameras of ``rig``; one instance per (world, rig)."""

    def __init__(self, world: World, rig: StereoRig) -> None:
        self.world = world
        self.rig = rig
        self.cameras = tuple(make_render_camera(cam) for cam in rig.cameras)
        self._table = _FaceTable.of(world)

    def render(self, camera_index: int, T_world_cam: np.ndarray, hands_world: tuple[np.ndarray, ...]) -> RenderedView:
        """Render camera ``camera_index`` at pose ``T_world_cam`` (4, 4) with the hands' joints (21, 3) in the world."""
        rc = self.cameras[camera_index]
        T_cam_world = np.linalg.inv(T_world_cam)
        R, t = T_cam_world[:3, :3], T_cam_world[:3, 3]
        # Mid grey where no face lands (a seam pixel between walls at most), so it never shows as a black dot.
        image = np.full((rc.size[1], rc.size[0]), 120, np.uint8)
        self._draw_room(image, rc, R, t, T_world_cam[:3, 3])
        labels = np.zeros_like(image)
        owners = []
        if hands_world:
            joints_cam = [h @ R.T + t for h in hands_world]
            owners = _draw_hands(image, labels, rc.K, joints_cam, R @ LIGHT_WORLD)
        image = cv2.remap(image, rc.map1, rc.map2, cv2.INTER_LINEAR)
        return RenderedView(image, labels, tuple(owners), rc.K)

    def _draw_room(self, image: np.ndarray, rc: RenderCamera, R: np.ndarray, t: np.ndarray, eye: np.ndarray) -> None:
        """Walls, then boxes back to front; per face one warpPerspective into its bounding box."""
        table = self._table
        order = [table.wall_faces]
        order += [table.box_faces[b] for b in _box_order(self.world.boxes, eye)]
        index = np.concatenate(order)
        index = index[((eye - table.origins[index]) * table.normals[index]).sum(axis=1) > 0]
        corners = table.corners[index] @ R.T + t  # (F, 4, 3)
        seen = _in_frustum(corners, rc)
        index, corners = index[seen], corners[seen]
        whole = (corners[..., 2] >= Z_NEAR_M).all(axis=1)
        K, (w, h) = rc.K, rc.size
        px = corners @ K.T
        px = px[..., :2] / np.where(whole[:, None, None], px[..., 2:], 1.0)
        lo = np.maximum(np.floor(px.min(axis=1)).astype(int), 0)
        hi = np.minimum(np.ceil(px.max(axis=1)).astype(int) + 1, (w, h))
        levels = _mip_levels(np.linalg.norm(corners.mean(axis=1), axis=1), K[0, 0])
        M = R @ table.planes[index, levels]
        M[:, :, 2] += t
        H = K @ M
        H[:, 0] -= lo[:, :1] * H[:, 2]
        H[:, 1] -= lo[:, 1:] * H[:, 2]
        for i, face_index in enumerate(index):
            face = table.faces[face_index]
            if not whole[i]:
                _draw_clipped_face(image, rc, face, corners[i], R, t)
                continue
            (x0, y0), (x1, y1) = lo[i], hi[i]
            if x1 > x0 and y1 > y0:
                # Wholly in front of the camera: pixels that map outside the texture are outside the face,
                # and the transparent border leaves them alone.
                cv2.warpPerspective(
                    face.mips[levels[i]],
                    H[i],
                    (x1 - x0, y1 - y0),
                    dst=image[y0:y1, x0:x1],
                    flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_TRANSPARENT,
                )


def _mip_levels(distance_m: np.ndarray, focal_px: float) -> np.ndarray:
    """Mip level per face from the texels a pixel spans at the given distance: less aliasing far away.

    Switching only above 2.8 texels per pixel keeps the texture as crisp as a low-resolution sensor sees it."""
    texels_per_px = np.maximum(distance_m / (focal_px * TEXEL_M), 1.0)
    return np.clip((np.log2(texels_per_px) - 0.5).astype(int), 0, MIP_LEVELS - 1)


def _in_frustum(corners_cam: np.ndarray, rc: RenderCamera) -> np.ndarray:
    """(F,) bool: False for faces (F, 4, 3) wholly behind the near plane or outside one side of the view."""
    f, (cx, cy), (w, h) = rc.K[0, 0], rc.K[:2, 2], rc.size
    x, y, z = corners_cam[..., 0], corners_cam[..., 1], corners_cam[..., 2]
    planes = np.stack(
        [z - Z_NEAR_M, f * x + cx * z, -(f * x + (cx - w) * z), f * y + cy * z, -(f * y + (cy - h) * z)], axis=-1
    )
    return ~(planes < 0).all(axis=1).any(axis=1)


def _draw_clipped_face(
    image: np.ndarray, rc: RenderCamera, face: Face, corners_cam: np.ndarray, R: np.ndarray, t: np.ndarray
) -> None:
    """A face crossing the near plane: the homography also maps points behind the camera into the image, so the
    warp is masked to the clipped polygon."""
    polygon = clip_near(corners_cam)
    if len(polygon) < 3:
        return
    px = polygon @ rc.K.T
    px = px[:, :2] / px[:, 2:]
    w, h = rc.size
    x0, y0 = np.maximum(np.floor(px.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(px.max(axis=0)).astype(int) + 1, (w, h))
    if x1 <= x0 or y1 <= y0:
        return
    level = int(_mip_levels(np.linalg.norm(polygon.mean(axis=0)), rc.K[0, 0]))
    M = R @ face.plane_matrices[level]
    M[:, 2] += t
    H = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]]) @ rc.K @ M
    patch = cv2.warpPerspective(
        face.mips[level], H, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    mask = np.zeros_like(patch)
    vertices = np.round((px - (x0, y0)) * (1 << SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillConvexPoly(mask, vertices, 1, cv2.LINE_8, SUBPIXEL_BITS)
    cv2.copyTo(patch, mask, image[y0:y1, x0:x1])


_BONE_A = np.array([a for a, _ in BONES])
_BONE_B = np.array([b for _, b in BONES])
_BONE_RADII = np.array([bone_radius(a, b) for a, b in BONES])
_PALM = np.array(PALM_JOINTS)
_MAX_PX = 1e5  # hands projecting this far off-screen overflow OpenCV's fixed point; they cannot be seen anyway


def _draw_hands(
    image: np.ndarray, labels: np.ndarray, K: np.ndarray, joints_cam: list[np.ndarray], light_cam: np.ndarray
) -> list[tuple[int, tuple[int, ...]]]:
    """Draw the hands in view: per hand a capsule per bone and a palm polygon, shaded by a directional light, all
    primitives far to near. Primitive i (1-based) is also drawn into ``labels`` with value i.

    Returns per label the (hand index, joints the primitive spans)."""
    depth, owners, draws = [], [], []
    size = (image.shape[1], image.shape[0])
    for hand, joints in enumerate(joints_cam):
        if (joints[:, 2] < Z_NEAR_M).any():
            continue
        px = joints @ K.T
        px = px[:, :2] / px[:, 2:]
        margin = K[0, 0] * 0.02 / joints[:, 2].min()
        lo, hi = px.min(axis=0) - margin, px.max(axis=0) + margin
        if (hi < 0).any() or lo[0] > size[0] or lo[1] > size[1] or np.abs(px).max() > _MAX_PX:
            continue
        fixed = np.round(px * (1 << SUBPIXEL_BITS)).astype(np.int32)
        mid = (joints[_BONE_A] + joints[_BONE_B]) / 2
        axis = joints[_BONE_B] - joints[_BONE_A]
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        to_eye = -mid / np.linalg.norm(mid, axis=1, keepdims=True)
        # Lit like a cylinder along its silhouette's middle line: the normal facing the eye, across the bone axis.
        normal = to_eye - (to_eye * axis).sum(axis=1, keepdims=True) * axis
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
        shades = SKIN_ALBEDO * (0.4 + 0.6 * np.maximum(0.0, normal @ light_cam))
        radii_px = K[0, 0] * _BONE_RADII / mid[:, 2]
        outer = np.maximum(1, np.rint(2.0 * radii_px)).astype(int).tolist()
        inner = np.maximum(1, np.rint(1.1 * radii_px)).astype(int).tolist()
        p0, p1 = fixed[_BONE_A].tolist(), fixed[_BONE_B].tolist()
        depth += mid[:, 2].tolist()
        owners += [(hand, bone) for bone in BONES]
        draws += [(p0[i], p1[i], outer[i], inner[i], float(shades[i])) for i in range(len(BONES))]
        palm_normal = np.cross(joints[5] - joints[0], joints[17] - joints[0])
        palm_normal /= np.linalg.norm(palm_normal)
        depth.append(float(joints[_PALM, 2].mean()) + 0.002)  # just behind the metacarpal capsules on it
        owners.append((hand, PALM_JOINTS))
        shade = SKIN_ALBEDO * (0.35 + 0.55 * abs(float(palm_normal @ light_cam)))
        draws.append((cv2.convexHull(fixed[_PALM]), None, 0, 0, shade))
    order = np.argsort(-np.array(depth), kind="stable")
    for label, i in enumerate(order.tolist(), start=1):
        p0, p1, outer, inner, shade = draws[i]
        if p1 is None:
            cv2.fillConvexPoly(image, p0, shade, cv2.LINE_AA, SUBPIXEL_BITS)
            cv2.fillConvexPoly(labels, p0, label, cv2.LINE_8, SUBPIXEL_BITS)
            continue
        cv2.line(image, p0, p1, 0.78 * shade, outer, cv2.LINE_AA, SUBPIXEL_BITS)
        # The highlight lies inside the anti-aliased silhouette; its own edges need no anti-aliasing.
        cv2.line(image, p0, p1, shade, inner, cv2.LINE_8, SUBPIXEL_BITS)
        cv2.line(labels, p0, p1, label, outer, cv2.LINE_8, SUBPIXEL_BITS)
    return [owners[i] for i in order.tolist()]
