"""Train the hand model's pose prior: ``python -m tracking.train_hand_prior [--poses N] [--seed S]``.

Samples hand poses of the synthetic hand (hardware/synthetic/hands.py): random mixtures of its named poses (open,
relaxed, fist, pinch, point; Dirichlet weights) with every joint angle then moved by Gaussian noise (8° by
default) and clipped to the joint limits, so that the prior knows the grips and not only the scripted motions.
Each pose is shown to a ``HandModel`` (without a prior) as a perfect observation, every joint seen by two
cameras, and the angles it fits are the samples: the prior lives in the model's own angles, whatever the
synthetic hand's parametrisation. Writes tracking/weights/hand_prior.json (``HandPosePrior``): about 11 s on
this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hardware.synthetic import hands as synthetic_hands
from skiptrack_types import SkipTrackError
from tracking.pose.hand_model import HandModel
from tracking.pose.hand_prior import DEFAULT_PRIOR_PATH, HandPosePrior
from tracking.pose.hands import HandObservation

NAMED_POSES = ("OPEN", "RELAXED", "FIST", "PINCH", "POINT")
CAMERAS = np.array([[-0.032, 0.0, 0.0], [0.032, 0.0, 0.0]])
"""Two viewpoints for the perfect observations, a headset's camera baseline apart (m, head frame)."""
WARM_UP = 60
"""Frames of a relaxed hand first, for the model to learn the palm and the bone lengths."""


def sample_poses(count: int, noise_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Finger angle sets (count, 5, 4) of the synthetic hand, clipped to its joint limits."""
    named = np.stack([getattr(synthetic_hands, name) for name in NAMED_POSES])
    weights = rng.dirichlet(np.full(len(named), 0.5), size=count)
    angles = np.einsum("np,pij->nij", weights, named) + np.radians(noise_deg) * rng.standard_normal((count, 5, 4))
    return synthetic_hands.clamp_pose(angles)


def model_angles(poses: np.ndarray, progress: bool = True) -> np.ndarray:
    """The hand model's angles (N, 5, 5) fitted to each synthetic pose (N, 5, 4), a right hand held in front."""
    rotation = synthetic_hands.PALM_DOWN
    model = HandModel("right", prior=None)
    warm_up = [synthetic_hands.RELAXED] * WARM_UP
    fitted = []
    for k, angles in enumerate(tqdm([*warm_up, *poses], desc="fitting poses", unit="pose", disable=not progress)):
        joints = synthetic_hands.HandState(synthetic_hands.HOME, rotation, angles).joints_head("right")
        if model.update(_perfect_observation(joints)) is None:
            raise SkipTrackError("the hand model could not place a perfectly observed hand")
        if k >= WARM_UP:
            fitted.append(model.angles)
    return np.array(fitted)


def _perfect_observation(joints: np.ndarray) -> HandObservation:
    """Every joint triangulated exactly and seen by both cameras, with rays ten times sharper than a detector's."""
    dirs = joints[None] - CAMERAS[:, None]
    dirs /= np.linalg.norm(dirs, axis=2, keepdims=True)
    return HandObservation(joints.copy(), np.ones(21, bool), CAMERAS, dirs, np.ones((2, 21), bool),
                           np.full(21, 1e-10), ray_sigma_rad=3e-4)  # fmt: skip


def train(count: int, noise_deg: float, floor_deg: float, seed: int, progress: bool = True) -> HandPosePrior:
    angles = model_angles(sample_poses(count, noise_deg, np.random.default_rng(seed)), progress)
    return HandPosePrior.fit(angles, np.radians(floor_deg))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracking.train_hand_prior", description=__doc__.split("\n\n")[0])
    parser.add_argument("--poses", type=int, default=4000, help="poses sampled")
    parser.add_argument("--noise-deg", type=float, default=8.0, help="Gaussian noise on every joint angle, degrees")
    parser.add_argument("--floor-deg", type=float, default=2.0,
                        help="added to every angle's standard deviation (in quadrature), degrees")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_PRIOR_PATH)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.poses < 100:
        print("error: --poses must be at least 100 for a 25 x 25 covariance", file=sys.stderr)
        return 2
    try:
        prior = train(args.poses, args.noise_deg, args.floor_deg, args.seed)
    except SkipTrackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    about = {"command": "python -m tracking.train_hand_prior", "poses": args.poses, "named_poses": list(NAMED_POSES),
             "noise_deg": args.noise_deg, "floor_deg": args.floor_deg, "seed": args.seed}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    prior.save(args.out, about)
    spread = np.degrees(np.sqrt(np.diag(prior.covariance))).reshape(5, 5)
    print(json.dumps({"out": str(args.out), **about, "std_deg": np.round(spread, 1).tolist()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
