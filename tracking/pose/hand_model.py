"""An articulated hand tracked over time: a rigid palm and five three-bone chains with bone lengths learned online.

Half of a hand's joints are often seen by neither camera (curled fingers behind the back of the hand, a finger
behind its neighbour) and more are seen by one; a joint triangulated from 0.5 px keypoints at 30 cm is still
uncertain by about 8 mm in depth. A hand model fitted to the viewing rays does better than triangulation:

- The palm (wrist, thumb base, four knuckles) is rigid. Its shape is learned from triangulated frames and kept
  on the template hand's axes; knuckles never seen sit where the template, fitted to the learned ones, has them.
- Each finger (and the thumb) is a chain of three bones of fixed length, learned without the lengthening bias
  of noise. Its five angles: abduction about the palm normal, flexion at each of its three joints, and a twist
  of the last two joints' axis (zero for a finger, a hinge; free for the thumb).
- Each frame the palm pose and all 25 angles are fitted together (Levenberg-Marquardt, analytic Jacobian) to the
  angle between every seen joint and each camera's viewing ray, against: the palm pose predicted from the last
  two frames, the remembered angles, a learned Gaussian over hand poses (``hand_prior.py``: how fingers bend
  together) and the anatomical limits. A ray is precise across (a fraction of a millimetre at arm's length), so
  fitting rays rather than triangulated points keeps the depth noise out; a bent finger's plane fixes the palm's
  roll when few knuckles are seen. A ray far off the fit counts less (Huber): a detector's joints are good to a
  pixel in the median, with tails of several.
- A finger seen in no joint moves as the prior says it moves given the seen chains (fingers share tendons and
  move together: the Gaussian's conditional mean) and drifts towards that pose.

Everything lives in the palm's own frame, the template hand's axes (``hands.hand_template``): back of the hand
+Y, fingers along -Z. Flexion turns a bone towards the palm (-Y).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from tracking.pose.geometry import kabsch, matrix_to_rotvec, rotvec_to_matrix, skew
from tracking.pose.hand_prior import HandPosePrior, default_prior
from tracking.pose.hands import HandObservation, hand_template

PALM = np.array([0, 1, 5, 9, 13, 17])
"""MediaPipe joints of the rigid palm: wrist, thumb base (CMC) and the four finger knuckles (MCP)."""
CHAINS = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20]])
"""Per chain (thumb, index, middle, ring, little) its palm base joint, then its three bone-end joints."""
FINGERS = np.array([1, 2, 3, 4])
"""Rows of ``CHAINS`` that are fingers (the thumb is row 0)."""

DIP_PER_PIP = 2.0 / 3.0
"""Distal joint flexion per unit of middle joint flexion in the grid of starting curls (Rijpkema and Girard,
SIGGRAPH 1991)."""
RELAXED_FLEXION = np.radians([15.0, 25.0, 15.0])
"""Relative flexion (MCP, PIP, DIP) of a relaxed finger: the guess for a finger never seen, without a prior."""
FLEXION_LIMITS = np.radians([[-30.0, -10.0, -10.0], [100.0, 120.0, 95.0]])
"""Anatomical range of relative flexion per bone (MCP, PIP, DIP), generous."""
HIDDEN_FINGER_DRIFT = 0.05
"""Per frame, the fraction by which an unseen finger's angles move towards the prior's conditional mean given the
seen chains (seated training seeds 100 and 101, network keypoints, head frame: 0.02 7.81 mm, 0.05 7.80, 0.1 7.86,
0.2 7.94)."""
FINGER_PRIOR_SIGMA = np.radians([5.0, 10.0, 10.0, 10.0, 2.0])
"""Frame-to-frame standard deviation of a finger's angles (abduction, MCP, PIP, DIP, twist): fingers curl by up
to about 10 degrees a frame at 60 Hz; finger joints are hinges, so the twist stays near zero."""
THUMB_PRIOR_SIGMA = np.radians([10.0, 10.0, 10.0, 10.0, 10.0])
"""The thumb's, whose saddle joint moves more freely."""
RAY_HUBER_SIGMAS = 2.0
"""A joint's ray residual beyond this many standard deviations of the keypoint noise counts linearly, not
squared (Huber). The network's 2-D joints are within a pixel in the median with tails of several pixels, and one
such ray pulls a whole finger. Seated training seeds 100 and 101, network keypoints, head frame: MPJPE 11.7 ->
10.9 mm (1: 11.3, 1.5: 11.1, 3: 11.0, 5: 11.2)."""
LIMIT_SIGMA = np.radians(2.0)
"""Softness of ``FLEXION_LIMITS``."""
PALM_TURN_SIGMA = np.radians(3.0)
PALM_SHIFT_SIGMA = 0.016
"""Frame-to-frame standard deviation of the palm's rotation (rad) and of its translation (m) about the
constant-velocity prediction. A hand that starts or stops a reach leaves the prediction by centimetres within a
few frames; a tighter translation lags it (seated training seeds 100 and 101, network keypoints, head frame: 8.35
mm at 4 mm, 8.27 at 8, 8.22 at 16, 8.21 at 30)."""
HAND_STEPS = 10
CONVERGED = 1e-2
DAMPING = 1e-3
"""The fit's Levenberg-Marquardt: at most ``HAND_STEPS`` steps, stopping when a step lowers the cost by less
than ``CONVERGED`` of it, starting with ``DAMPING``."""
SHAPE_SETTLING = 30
"""For this many frames after a hand is first seen its triangulated joints are published as triangulated; after,
every joint is the model's. A new hand's palm and bone lengths are still being learned (``PALM_MIN_SAMPLES``), and
the model's joints are worse than triangulation (still_hand seed 1, truth keypoints, first 0.5 s: seen joints
9.7 mm from the model, 6.0 triangulated); once learned, the model is better: a triangulated joint's depth carries
the stereo noise that the fit to the rays leaves out (seated training seeds, network keypoints, head frame:
10.9 -> 10.7 mm)."""
SHAPE_MEMORY = 300
"""Learned palm positions and bone lengths become running means over this many of their latest samples."""
PALM_MIN_SAMPLES = 30
"""A palm joint triangulated fewer times than this sits where the template, fitted to the others, has it: a knuckle
mostly hidden (the middle and ring knuckles behind the others) is triangulated a few times at most, and then on
whatever hides it; a right hand's ring knuckle learned from 4 samples 2 cm short shrank its palm by 15 % and every
finger with it. Seated seeds 1 and 2, network keypoints, head frame: MPJPE 13.9 and 13.3 mm -> 13.1 and 12.8
(10 samples: the same; 100: 13.1 and 13.8)."""
MIN_LENGTH_RATIO = 0.9
"""A learned bone is never shorter than this share of the template's bone scaled to the learned palm. The running
mean is biased short where a finger is rarely seen whole: its hidden joints, detected on whatever hides them,
triangulate short of their true place (learned lengths 10-25 % short), and the noise correction can take a bone
sampled a few times down to nothing (1 mm distal bones on held-out seeds). Longer bones are learned freely (the
template's thumb is a short one). Seated seeds 1 and 2, network keypoints, head frame, with ``PALM_MIN_SAMPLES``:
MPJPE 14.9 and 13.6 mm without the floor, 13.3 and 13.0 at 0.8, 13.1 and 12.8 at 0.9, 12.4 and 12.4 at 1.0 (the
synthetic hands have the template's proportions; a real hand's fingers may be shorter for its palm)"""

_BACK = np.array([0.0, 1.0, 0.0])
_CROSS_MINUS_BACK = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # v @ this = v x (-_BACK)


class HandModel:
    """One hand's articulated model, fed one ``HandObservation`` (head frame) per frame.

    ``update`` returns the 21 joints (21, 3) m in the head frame and which of them were observed this frame.
    ``reset`` forgets the pose (after the hand was lost) but keeps the learned shape of the hand.
    """

    def __init__(self, side: str, prior: HandPosePrior | Literal["default"] | None = "default") -> None:
        """``prior``: the pose prior (``hand_prior.py``); "default" reads the shipped one, None fits without (for
        training one)."""
        self.side = side
        prior = default_prior() if prior == "default" else prior
        # the fit's prior residual W @ (angles - mean) and its derivatives by the 31 parameters, made once
        self._prior_terms: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._prior_precision: np.ndarray | None = None  # (25, 25) rad^-2
        self._regressions: dict[bytes, np.ndarray] = {}  # per pattern of hidden chains, see _conditional_mean
        if prior is None:
            self._rest_angles = np.zeros((5, 5))
            self._rest_angles[FINGERS, 1:4] = RELAXED_FLEXION
        else:
            mean, whitening = prior.for_side(side)
            self._prior_terms = (mean, whitening, np.concatenate([np.zeros((25, 6)), whitening], axis=1))
            self._prior_precision = whitening.T @ whitening
            self._rest_angles = mean.reshape(5, 5)
        self._template = hand_template(side)
        self._rest, self._side_dir = _rest_frames(self._template)
        self._palm_local: np.ndarray | None = None  # (21, 3), only PALM rows used
        self._palm_count = np.zeros(21)
        self._lengths: np.ndarray | None = None  # (5, 3) m
        self._template_lengths = np.linalg.norm(np.diff(self._template[CHAINS], axis=1), axis=2)
        self._palm_scale = 1.0  # learned palm size over the template's (Umeyama similarity scale)
        self._initial_lengths: np.ndarray | None = None  # the template's, scaled to the hand
        self._length_count = np.zeros((5, 3))
        self._length_sq = np.zeros((5, 3))  # running mean of squared sampled lengths less their noise, m^2
        self._angles = np.zeros((5, 5))  # rad: abduction, MCP, PIP, DIP flexion, twist (see _chain_points)
        self._previous_angles = np.zeros((5, 5))
        self._finger_seen_ever = np.zeros(5, bool)
        self._fitted = 0  # frames fitted since the hand was first seen
        self._has_pose = False
        self.R_head_palm = np.eye(3)
        self.t_head_palm = np.zeros(3)
        self._palm_velocity = np.zeros(3)  # m per frame
        self._R_measured, self._t_measured = np.eye(3), np.zeros(3)  # this frame's Kabsch fit, for learning

    @property
    def angles(self) -> np.ndarray:
        """The chains' angles (5, 5) rad (thumb, index, middle, ring, little; abduction, MCP, PIP and DIP flexion,
        twist) after the last update."""
        return self._angles.copy()

    @property
    def bone_lengths(self) -> np.ndarray | None:
        """Learned bone lengths (5, 3) m per chain (thumb, index, middle, ring, little) from its palm joint out;
        None before the hand was first seen."""
        return None if self._lengths is None else self._lengths.copy()

    def reset(self) -> None:
        """Forget the hand's pose; the learned palm shape and bone lengths stay (it is the same hand)."""
        self._has_pose = False

    def update(self, obs: HandObservation) -> tuple[np.ndarray, np.ndarray] | None:
        """Fit the model to one frame's observation: (joints (21, 3) m in the head frame, observed (21,) bool),
        or None when too few palm joints triangulate to place the palm."""
        if self._palm_local is None and not self._initialise(obs):
            return None
        if not self._measure_palm(obs):
            return None
        self._learn_palm(obs)
        if not self._has_pose:
            self.R_head_palm, self.t_head_palm = self._R_measured, self._t_measured
            self._palm_velocity = np.zeros(3)
        predicted = (self.R_head_palm, self.t_head_palm + self._palm_velocity)
        remembered = self._angles.copy()
        start = self._start_angles(obs)
        problem = _HandProblem(self, obs, predicted)
        R, t, angles = problem.solve(start, HAND_STEPS)
        self._palm_velocity = t - self.t_head_palm
        self.R_head_palm, self.t_head_palm = R, t
        chain_seen = obs.seen[:, CHAINS[:, 1:]].any(axis=(0, 2))
        # angles kept in (-pi, pi]: the thumb's twist is free and would otherwise wind up
        self._angles = np.where(chain_seen[:, None], (angles + np.pi) % (2 * np.pi) - np.pi, remembered)
        self._previous_angles = remembered
        self._finger_seen_ever |= chain_seen
        joints = np.zeros((21, 3))
        joints[PALM] = self._palm_local[PALM]
        joints[CHAINS[:, 1:]] = _chain_points(joints[CHAINS[:, 0]], self._rest, self._side_dir, self._lengths,
                                              self._angles)  # fmt: skip
        self._move_hidden_fingers(chain_seen, joints)
        self._learn_lengths(obs)
        self._has_pose = True
        self._fitted += 1
        joints_head = joints @ self.R_head_palm.T + self.t_head_palm
        if self._fitted <= SHAPE_SETTLING:
            joints_head[obs.triangulated] = obs.points[obs.triangulated]
        return joints_head, obs.seen.any(axis=0) | obs.triangulated

    # ----------------------------------------------------------------------------------------------- palm

    def _initialise(self, obs: HandObservation) -> bool:
        """Scale the template to the triangulated palm joints (Umeyama similarity); it is the starting shape."""
        tri = obs.triangulated[PALM]
        if tri.sum() < 3:
            return False
        src, dst = self._template[PALM[tri]], obs.points[PALM[tri]]
        scale = np.sqrt(((dst - dst.mean(0)) ** 2).sum() / max(((src - src.mean(0)) ** 2).sum(), 1e-12))
        self._palm_scale = float(np.clip(scale, 0.6, 1.6))
        self._palm_local = self._template * self._palm_scale
        self._lengths = np.linalg.norm(np.diff(self._palm_local[CHAINS], axis=1), axis=2)
        self._initial_lengths = self._lengths.copy()
        self._angles = self._rest_angles.copy()
        return True

    def _measure_palm(self, obs: HandObservation) -> bool:
        """This frame's palm pose from its triangulated joints alone (Kabsch; with fewer than three, the last
        rotation moved to the seen ones): the start of the fit and the frame the palm shape is learned in."""
        tri = PALM[obs.triangulated[PALM]]
        if len(tri) >= 3:
            self._R_measured, self._t_measured = kabsch(self._palm_local[tri], obs.points[tri])
            return True
        if len(tri) > 0 and self._has_pose:
            self._R_measured = self.R_head_palm
            self._t_measured = (obs.points[tri] - self._palm_local[tri] @ self.R_head_palm.T).mean(axis=0)
            return True
        return False

    def _learn_palm(self, obs: HandObservation) -> None:
        """Move the learned palm joints towards where this frame's triangulation puts them in the measured palm
        frame (running mean), then re-anchor the frame on the template."""
        tri = PALM[obs.triangulated[PALM]]
        if len(tri) < 3:
            return
        local = (obs.points[tri] - self._t_measured) @ self._R_measured
        self._palm_count[tri] = np.minimum(self._palm_count[tri] + 1, SHAPE_MEMORY)
        rate = 1.0 / self._palm_count[tri]
        self._palm_local[tri] += rate[:, None] * (local - self._palm_local[tri])
        self._anchor_to_template()

    def _anchor_to_template(self) -> None:
        """Keep the palm frame on the template's axes (the finger model's flexion and abduction axes) and place
        the palm joints seen too rarely to trust (``PALM_MIN_SAMPLES``) where the template, scaled and fitted to
        the others, has them.

        The thumb base is left out of the fit when three other joints are known: it sits off the knuckle row by a
        different amount in every hand, and would tilt the palm plane."""
        learned = PALM[self._palm_count[PALM] >= PALM_MIN_SAMPLES]
        if (learned != 1).sum() < 3:
            learned = PALM[self._palm_count[PALM] > 0]  # the first frames: whatever has been seen
        anchors = learned[learned != 1] if (learned != 1).sum() >= 3 else learned
        if len(anchors) < 3:
            return
        R, t, self._palm_scale = _similarity(self._template[anchors], self._palm_local[anchors])
        self._palm_local = (self._palm_local - t) @ R
        unseen = np.setdiff1d(PALM, learned)
        self._palm_local[unseen] = self._palm_scale * self._template[unseen]
        self.t_head_palm = self.t_head_palm + self.R_head_palm @ t
        self.R_head_palm = self.R_head_palm @ R
        self._t_measured = self._t_measured + self._R_measured @ t
        self._R_measured = self._R_measured @ R

    def _start_angles(self, obs: HandObservation) -> np.ndarray:
        """Per chain the angles (5, 5) to start the fit from: the remembered ones or a coarse grid of curls,
        whichever fits this frame's rays best with the palm where it was measured (a ray that meets a finger
        twice then takes the more likely place)."""
        R, t = self._R_measured, self._t_measured
        origins, dirs = (obs.ray_origins - t) @ R, obs.ray_dirs @ R
        base = self._palm_local[CHAINS[:, 0]]
        ray_seen = obs.seen[:, CHAINS[:, 1:]]
        problem = _ChainProblem(base, self._rest, self._side_dir, self._lengths, origins, dirs, ray_seen,
                                self._angles, obs.ray_sigma_rad)  # fmt: skip
        starts = np.concatenate([self._angles[None], _curl_starts(self._angles)], axis=0)  # (S, 5, 5)
        return starts[np.argmin(problem.cost(starts), axis=0), np.arange(5)]

    def _move_hidden_fingers(self, chain_seen: np.ndarray, joints: np.ndarray) -> None:
        """Fingers seen in no joint take the change of the prior's conditional mean given the other chains (how
        the prior says they move when the seen ones do) and drift towards that mean; a finger never seen takes it
        outright. The drift keeps one stray sighting from bending a finger for good. Without a prior (training
        one) an unseen finger keeps its angles.

        The learned coupling replaced a hand-set rule (take the seen neighbours' change of flexion, nearer ones
        weighted more, and relax abduction and twist to the rest pose): seated, network keypoints, head frame,
        training seeds 100 and 101 8.08 -> 7.80 mm, held-out seeds 1-4 8.58 -> 8.14 mm (hidden joints 10.14 ->
        9.43)."""
        unseen = FINGERS[~chain_seen[FINGERS]]
        if len(unseen) == 0 or self._prior_precision is None:
            return
        given = np.ones(5, bool)
        given[unseen] = False
        now = self._conditional_mean(self._angles, given)
        before = self._conditional_mean(self._previous_angles, given)
        followed = self._previous_angles[unseen] + now - before
        followed += HIDDEN_FINGER_DRIFT * (now - followed)
        never = ~self._finger_seen_ever[unseen]
        followed[never] = now[never]
        followed[:, 1:4] = np.clip(followed[:, 1:4], FLEXION_LIMITS[0], FLEXION_LIMITS[1])
        self._angles[unseen] = followed
        joints[CHAINS[unseen, 1:]] = _chain_points(
            joints[CHAINS[unseen, 0]], self._rest[unseen], self._side_dir[unseen], self._lengths[unseen],
            self._angles[unseen],
        )  # fmt: skip

    def _conditional_mean(self, angles: np.ndarray, given: np.ndarray) -> np.ndarray:
        """The prior's mean angles (k, 5) of the chains not ``given`` (5,) bool, given the others' ``angles``:
        mean_free - inv(P_free,free) P_free,known (angles_known - mean_known) for the prior's precision P (the
        regression matrix made once per pattern of hidden chains)."""
        mean = self._prior_terms[0]
        known = np.repeat(given, 5)
        key = given.tobytes()
        if key not in self._regressions:
            free = ~known
            precision = self._prior_precision
            self._regressions[key] = np.linalg.solve(precision[np.ix_(free, free)], precision[np.ix_(free, known)])
        shift = self._regressions[key] @ (angles.ravel()[known] - mean[known])
        return (mean[~known] - shift).reshape(-1, 5)

    def _learn_lengths(self, obs: HandObservation) -> None:
        """Bone lengths from bones whose two ends both triangulated this frame. Triangulation noise lengthens a
        bone on average (E|d|^2 = L^2 + the trace of both ends' covariance), so the running mean is taken of the
        squared length less that trace."""
        both = obs.triangulated[CHAINS[:, :-1]] & obs.triangulated[CHAINS[:, 1:]]
        if not both.any():
            return
        sample = (np.diff(obs.points[CHAINS], axis=1) ** 2).sum(axis=2)
        sample -= obs.noise_var[CHAINS[:, :-1]] + obs.noise_var[CHAINS[:, 1:]]
        self._length_count[both] = np.minimum(self._length_count[both] + 1, SHAPE_MEMORY)
        self._length_sq[both] += (sample[both] - self._length_sq[both]) / self._length_count[both]
        # a few samples are too noisy to trust: blend from the template-scaled length over the first ten
        trust = np.minimum(self._length_count / 10.0, 1.0)
        measured = np.sqrt(np.maximum(self._length_sq, 1e-6))
        learned = np.where(trust > 0, trust * measured + (1 - trust) * self._initial_lengths, self._lengths)
        self._lengths = np.maximum(learned, MIN_LENGTH_RATIO * self._palm_scale * self._template_lengths)


def _rest_frames(template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per chain the rest direction (5, 3) of its first bone in the palm plane and the in-plane normal to it
    (5, 3): straight ahead (-Z) for the fingers, which lie side by side when straight; the ``template`` hand's
    (21, 3) metacarpal direction for the thumb."""
    direction = np.tile([0.0, 0.0, -1.0], (5, 1))
    direction[0] = template[2] - template[1]
    direction[0, 1] = 0.0
    direction[0] /= np.linalg.norm(direction[0])
    return direction, np.cross(_BACK, direction)


def _angle_terms(remembered: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-chain angle residuals as (linear (5, 5, 5), offset (5, 5), limit weights (5, 1)): per chain,
    residuals = angles @ linear + offset are the temporal prior (against the ``remembered`` angles, over its
    standard deviation); the limits weigh the flexions' excursions past ``FLEXION_LIMITS`` (fingers only)."""
    sigma = np.where(np.arange(5)[:, None] == 0, THUMB_PRIOR_SIGMA, FINGER_PRIOR_SIGMA)
    linear = np.zeros((5, 5, 5))
    linear[:, np.arange(5), np.arange(5)] = 1.0 / sigma
    return linear, -remembered / sigma, (np.arange(5) > 0)[:, None] / LIMIT_SIGMA


def _angle_residuals(angles: np.ndarray, terms: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Angle residuals (..., 5, 8) of angle sets (..., 5, 5) (see ``_angle_terms``)."""
    linear, offset, limited = terms
    flex = angles[..., 1:4]
    limits = (np.maximum(FLEXION_LIMITS[0] - flex, 0.0) + np.maximum(flex - FLEXION_LIMITS[1], 0.0)) * limited
    return np.concatenate([np.einsum("...cp,cpr->...cr", angles, linear) + offset, limits], axis=-1)


def _angle_residuals_and_jacobian(
    angles: np.ndarray, terms: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """``_angle_residuals`` of one angle set (5, 5) and their derivatives (5, 8, 5) by that chain's angles."""
    linear, _, limited = terms
    flex = angles[:, 1:4]
    slope = (np.where(flex > FLEXION_LIMITS[1], 1.0, 0.0) - np.where(flex < FLEXION_LIMITS[0], 1.0, 0.0)) * limited
    d_limits = np.zeros((5, 3, 5))
    d_limits[:, np.arange(3), np.arange(1, 4)] = slope
    return _angle_residuals(angles, terms), np.concatenate([np.swapaxes(linear, 1, 2), d_limits], axis=1)


def _ray_residuals(points: np.ndarray, origins: np.ndarray, dirs: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Angles off the viewing rays (..., 2, N, 3) (a 3-vector per joint and camera, in units of its standard
    deviation) of joints ``points`` (..., N, 3), for rays from ``origins`` (2, 3) along ``dirs`` (2, N, 3)
    weighted by ``weight`` (2, N) (0 where a camera did not see the joint)."""
    to_joint = points[..., None, :, :] - origins[:, None, :]
    along = (to_joint * dirs).sum(axis=-1, keepdims=True)
    distance_sq = (to_joint * to_joint).sum(axis=-1, keepdims=True)
    return (to_joint - along * dirs) * (weight[..., None] / np.sqrt(np.maximum(distance_sq, 1e-12)))


class _ChainProblem:
    """The chains' part of the cost with the palm held still, in the palm frame, per chain, vectorised over
    candidate angle sets (..., 5, 5): for choosing where to start the fit."""

    def __init__(self, base, rest, side_dir, lengths, origins, dirs, ray_seen, remembered, ray_sigma_rad) -> None:
        self.base, self.rest, self.side_dir, self.lengths = base, rest, side_dir, lengths
        self.origins = origins
        self.dirs = dirs[:, CHAINS[:, 1:]].reshape(2, 15, 3)
        self.weight = ray_seen.reshape(2, 15) / ray_sigma_rad
        self.terms = _angle_terms(remembered)

    def cost(self, angles: np.ndarray) -> np.ndarray:
        """Sum of squared residuals (..., 5) per chain."""
        points = _chain_points(self.base, self.rest, self.side_dir, self.lengths, angles)  # (..., 5, 3, 3)
        rays = _ray_residuals(points.reshape(*angles.shape[:-2], 15, 3), self.origins, self.dirs, self.weight)
        ray_cost = (rays**2).sum(axis=(-1, -3)).reshape(*angles.shape[:-2], 5, 3).sum(axis=-1)
        return ray_cost + (_angle_residuals(angles, self.terms) ** 2).sum(axis=-1)


# index arrays placing each chain's joint derivatives (5 chains, 3 joints, xyz, 5 angles) and its angle residuals'
# derivatives (5 chains, 8 residuals, 5 angles) into the 31 parameter columns (palm rotation, translation, angles)
_ANGLE_COLS = (6 + np.arange(25).reshape(5, 5))[:, None, :]
_CHAIN_JOINT_ROWS = (6 + np.arange(15).reshape(5, 3))[:, :, None, None]
_XYZ = np.arange(3)[None, None, :, None]
_CHAIN_ANGLE_COLS = _ANGLE_COLS[:, :, None, :]
_CHAIN_INDEX = np.arange(5)[:, None, None]
_ANGLE_RESIDUAL_INDEX = np.arange(8)[None, :, None]
_EYE31 = np.eye(31)
_D_POSE = np.zeros((6, 31))
_D_POSE[:3, :3] = np.eye(3) / PALM_TURN_SIGMA
_D_POSE[3:, 3:6] = np.eye(3) / PALM_SHIFT_SIGMA


class _HandProblem:
    """Least squares for the palm pose and the chains' angles together (31 parameters: a rotation vector and a
    translation applied to the measured palm pose, then the angles (5, 5)).

    Residuals, each over its standard deviation: every seen joint's angle off each camera's ray (Huber-weighted,
    ``RAY_HUBER_SIGMAS``), the palm's departure from its predicted pose, the angle terms (``_angle_terms``) and
    the pose prior (whitened). A bent finger's plane holds the palm's roll when few knuckles are seen, so palm
    and fingers are fitted at once."""

    def __init__(self, model: HandModel, obs: HandObservation, predicted: tuple[np.ndarray, np.ndarray]) -> None:
        order = np.concatenate([PALM, CHAINS[:, 1:].ravel()])
        self.palm = model._palm_local[PALM]
        self.base = model._palm_local[CHAINS[:, 0]]
        self.rest, self.side_dir, self.lengths = model._rest, model._side_dir, model._lengths
        self.origins, self.dirs = obs.ray_origins, obs.ray_dirs[:, order]
        self.weight = obs.seen[:, order] / obs.ray_sigma_rad
        self.across = np.eye(3) - self.dirs[..., :, None] * self.dirs[..., None, :]  # (2, 21, 3, 3)
        self.R0, self.t0 = model._R_measured, model._t_measured
        self.R_pred, self.t_pred = predicted
        self.terms = _angle_terms(model._angles)
        self.prior = model._prior_terms

    def evaluate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Residuals (R,) and their Jacobian (R, 31) at parameters ``x`` (31,). Joint derivatives are exact (each
        angle turns the joints beyond it about a known axis); the ray residuals' change of range is neglected."""
        R = rotvec_to_matrix(x[:3]) @ self.R0
        t = self.t0 + x[3:6]
        angles = x[6:].reshape(5, 5)
        chains, d_chains = _chain_kinematics(self.base, self.rest, self.side_dir, self.lengths, angles)
        points = np.concatenate([self.palm, chains.reshape(15, 3)]) @ R.T + t  # (21, 3)
        d_points = np.zeros((21, 3, 31))
        d_points[:, :, :3] = -skew(points - t)
        d_points[:, :, 3:6] = np.eye(3)
        # chain c's joints (rows 6 + 3c .. 6 + 3c + 2) depend on that chain's five angles only
        d_points[_CHAIN_JOINT_ROWS, _XYZ, _CHAIN_ANGLE_COLS] = np.einsum("ij,cnpj->cnip", R, d_chains)
        to_joint = points[None] - self.origins[:, None, :]  # (2, 21, 3)
        distance = np.sqrt((to_joint * to_joint).sum(axis=-1))
        project = self.across * (self.weight / np.maximum(distance, 1e-6))[..., None, None]
        rays = np.einsum("cnij,cnj->cni", project, to_joint)
        d_rays = np.matmul(project, d_points[None])  # einsum would take 3x longer here
        # Huber as reweighting: a residual of norm n > k counts k * n, and its rows scale by sqrt(k / n)
        norm = np.sqrt((rays * rays).sum(axis=-1))
        scale = np.sqrt(np.minimum(1.0, RAY_HUBER_SIGMAS / np.maximum(norm, 1e-12)))
        rays = (rays * scale[..., None]).reshape(-1)
        d_rays = (d_rays * scale[..., None, None]).reshape(-1, 31)
        turn = matrix_to_rotvec(R @ self.R_pred.T) / PALM_TURN_SIGMA
        shift = (t - self.t_pred) / PALM_SHIFT_SIGMA
        angle_res, d_angle = _angle_residuals_and_jacobian(angles, self.terms)  # (5, 8), (5, 8, 5)
        d_angles = np.zeros((5, 8, 31))
        d_angles[_CHAIN_INDEX, _ANGLE_RESIDUAL_INDEX, _ANGLE_COLS] = d_angle
        residuals = [rays, turn, shift, angle_res.ravel()]
        jacobian = [d_rays, _D_POSE, d_angles.reshape(40, 31)]
        if self.prior is not None:
            mean, whitening, d_prior = self.prior
            residuals.append(whitening @ (x[6:] - mean))
            jacobian.append(d_prior)
        return np.concatenate(residuals), np.concatenate(jacobian)

    def solve(self, angles: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Levenberg-Marquardt from the measured palm and ``angles`` (5, 5), at most ``steps`` steps, until a step
        lowers the cost by less than ``CONVERGED`` of it; returns (R (3, 3), t (3,), angles (5, 5))."""
        x = np.concatenate([np.zeros(6), angles.ravel()])
        r, jac = self.evaluate(x)
        cost, damping = float(r @ r), DAMPING
        for _ in range(steps):
            trial = x + np.linalg.solve(jac.T @ jac + damping * _EYE31, -jac.T @ r)
            trial_r, trial_jac = self.evaluate(trial)
            trial_cost = float(trial_r @ trial_r)
            if trial_cost >= cost:
                damping *= 100.0
                continue
            converged = cost - trial_cost < CONVERGED * cost
            x, r, jac, cost, damping = trial, trial_r, trial_jac, trial_cost, damping * 0.1
            if converged:
                break
        return rotvec_to_matrix(x[:3]) @ self.R0, self.t0 + x[3:6], x[6:].reshape(5, 5)


def _curl_starts(prior: np.ndarray) -> np.ndarray:
    """Starting angle sets (S, 5, 5): the remembered abduction and twist with a coarse grid of finger curls."""
    mcp, pip = np.meshgrid(np.radians([0.0, 30.0, 60.0, 90.0]), np.radians([0.0, 40.0, 80.0]), indexing="ij")
    starts = np.repeat(prior[None], mcp.size, axis=0)
    starts[:, :, 1] = mcp.reshape(-1, 1)
    starts[:, :, 2] = pip.reshape(-1, 1)
    starts[:, :, 3] = DIP_PER_PIP * pip.reshape(-1, 1)
    return starts


def _chain_points(
    base: np.ndarray, rest: np.ndarray, side_dir: np.ndarray, lengths: np.ndarray, angles: np.ndarray
) -> np.ndarray:
    """Joints (..., 5, 3, 3) of chains with palm bases (5, 3), rest directions and their in-plane normals (5, 3),
    bone lengths (5, 3) and angles (..., 5, 5) = (abduction, MCP, PIP and DIP flexion, twist) in radians.

    The first bone is the rest direction turned by the abduction about the palm normal (+Y) and flexed towards
    the palm (-Y); the next two flex about the first joint's axis, turned about the first bone by the twist."""
    cos, sin = np.cos(angles)[..., None], np.sin(angles)[..., None]
    in_plane = cos[..., 0, :] * rest + sin[..., 0, :] * side_dir
    first = cos[..., 1, :] * in_plane - sin[..., 1, :] * _BACK
    axis = in_plane @ _CROSS_MINUS_BACK
    axis = cos[..., 4, :] * axis + sin[..., 4, :] * _cross(first, axis)
    second = cos[..., 2, :] * first + sin[..., 2, :] * _cross(axis, first)
    third = cos[..., 3, :] * second + sin[..., 3, :] * _cross(axis, second)
    joint1 = base + lengths[:, 0, None] * first
    joint2 = joint1 + lengths[:, 1, None] * second
    joint3 = joint2 + lengths[:, 2, None] * third
    return np.stack([joint1, joint2, joint3], axis=-2)


def _chain_kinematics(
    base: np.ndarray, rest: np.ndarray, side_dir: np.ndarray, lengths: np.ndarray, angles: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``_chain_points`` of one angle set (5, 5) and the joints' derivatives (5, 3 joints, 5 angles, 3) by the
    angles: each angle turns the joints beyond it about its axis (abduction: the palm normal at the base; MCP
    flexion: the first joint's axis at the base; twist: the first bone at the first joint; PIP and DIP flexion:
    the twisted axis at the first and second joint)."""
    cos, sin = np.cos(angles)[:, :, None], np.sin(angles)[:, :, None]
    in_plane = cos[:, 0] * rest + sin[:, 0] * side_dir
    first = cos[:, 1] * in_plane - sin[:, 1] * _BACK
    axis0 = in_plane @ _CROSS_MINUS_BACK
    axis = cos[:, 4] * axis0 + sin[:, 4] * _cross(first, axis0)
    second = cos[:, 2] * first + sin[:, 2] * _cross(axis, first)
    third = cos[:, 3] * second + sin[:, 3] * _cross(axis, second)
    joint1 = base + lengths[:, 0, None] * first
    joint2 = joint1 + lengths[:, 1, None] * second
    joint3 = joint2 + lengths[:, 2, None] * third
    joints = np.stack([joint1, joint2, joint3], axis=1)  # (5, 3, 3)
    pivots = np.stack([base, base, joint1, joint2, joint1], axis=1)  # per angle (5, 5, 3)
    axes = np.stack([np.broadcast_to(_BACK, base.shape), axis0, axis, axis, first], axis=1)  # (5, 5, 3)
    turned = _cross(axes[:, None, :, :], joints[:, :, None, :] - pivots[:, None, :, :])  # (5, 3 joints, 5, 3)
    # an angle moves only the joints beyond its pivot: PIP and twist not the first joint, DIP only the last
    moves = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 0, 1], [1, 1, 1, 1, 1]], float)
    return joints, turned * moves[None, :, :, None]


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross products of broadcast (..., 3) vectors (np.cross spends most of its time checking axes on arrays
    this small)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    first = a1 * b2 - a2 * b1  # its shape is the broadcast one (np.broadcast_shapes costs as much as the product)
    out = np.empty(first.shape + (3,))
    out[..., 0] = first
    out[..., 1] = a2 * b0 - a0 * b2
    out[..., 2] = a0 * b1 - a1 * b0
    return out


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Rotation (3, 3), translation (3,) and scale with dst ~ scale * R @ src + t (Umeyama 1991), (N, 3) each."""
    R, _ = kabsch(src, dst)
    cs, cd = src.mean(axis=0), dst.mean(axis=0)
    scale = float(np.einsum("ij,ij->", (dst - cd) @ R, src - cs) / max(((src - cs) ** 2).sum(), 1e-12))
    return R, cd - scale * R @ cs, scale
