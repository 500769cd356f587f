"""A Gaussian over a hand's 25 model angles: how fingers bend together, learned from hand poses.

The hand model (``hand_model.py``) fits five angles per chain (abduction, three flexions, twist) to the joints
the cameras see. About half a hand's joints are seen by neither camera, and the angles of a finger seen in one
joint or none are set by what the model assumes. Fingers do not bend independently: a curling middle finger
takes the ring finger with it, the distal joint follows the middle one, straight fingers fan out from the palm.
A Gaussian over all 25 angles holds these couplings; the fit adds its whitened residual, so a hidden finger
takes the bend its seen neighbours imply, and a seen one is pulled towards a hand-like pose when its rays are
few. Trained by ``python -m tracking.train_hand_prior`` (poses of the synthetic hand) into
``tracking/weights/hand_prior.json``.

Angles are stored for a right hand; a left hand's abduction and twist turn the other way (its template is the
mirror image), so their signs flip (``HandPosePrior.for_side``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from skiptrack_types import InvalidInputError
from tracking.trained_file import trained_json

DEFAULT_PRIOR_PATH = Path(__file__).resolve().parent.parent / "weights" / "hand_prior.json"
TRAIN_COMMAND = "python -m tracking.train_hand_prior"
MIRROR_SIGNS = np.array([-1.0, 1.0, 1.0, 1.0, -1.0])
"""Per chain angle (abduction, MCP, PIP, DIP flexion, twist): its sign on a left hand against a right one."""


@dataclass(frozen=True, eq=False)
class HandPosePrior:
    """Mean (5, 5) rad and covariance (25, 25) rad^2 of a right hand's chain angles (chain-major: thumb, index,
    middle, ring, little; per chain abduction, MCP, PIP, DIP flexion, twist)."""

    mean: np.ndarray
    covariance: np.ndarray

    def __post_init__(self) -> None:
        if self.mean.shape != (5, 5) or self.covariance.shape != (25, 25):
            raise InvalidInputError(
                f"a hand pose prior needs a (5, 5) mean and a (25, 25) covariance, got {self.mean.shape} and "
                f"{self.covariance.shape}; retrain with `{TRAIN_COMMAND}`"
            )
        if not (np.isfinite(self.mean).all() and np.isfinite(self.covariance).all()):
            raise InvalidInputError(f"the hand pose prior holds NaN or infinite values; retrain with `{TRAIN_COMMAND}`")
        if not np.allclose(self.covariance, self.covariance.T) or np.linalg.eigvalsh(self.covariance)[0] <= 0:
            raise InvalidInputError(
                f"the hand pose prior's covariance is not symmetric positive definite; retrain with `{TRAIN_COMMAND}`"
            )

    @classmethod
    def fit(cls, angles: np.ndarray, floor_rad: float) -> HandPosePrior:
        """The prior of right-hand angle sets (N, 5, 5), each angle's variance raised by ``floor_rad`` squared (the
        model's angles are never exact, and a prior too sure of a pose the samples never left would forbid others)."""
        flat = angles.reshape(len(angles), 25)
        return cls(flat.mean(axis=0).reshape(5, 5), np.cov(flat.T) + np.eye(25) * floor_rad**2)

    def for_side(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """(mean (25,), whitening W (25, 25)) for ``side``: the residual W @ (angles.ravel() - mean) has unit
        covariance under the prior."""
        signs = np.tile(MIRROR_SIGNS if side == "left" else np.ones(5), 5)
        whitening = np.linalg.cholesky(np.linalg.inv(self.covariance)).T * signs  # = W_right @ diag(signs)
        return signs * self.mean.ravel(), whitening

    def save(self, path: Path, about: dict) -> None:
        """Write as JSON with ``about`` (how it was trained)."""
        doc = {"about": about, "mean_rad": self.mean.tolist(), "covariance_rad2": self.covariance.tolist()}
        Path(path).write_text(json.dumps(doc, indent=1))

    @classmethod
    def load(cls, path: Path = DEFAULT_PRIOR_PATH) -> HandPosePrior:
        """Read a prior written by ``save``; raises InvalidInputError naming what is wrong with the file."""
        with trained_json(path, "hand pose prior", TRAIN_COMMAND) as doc:
            return cls(np.array(doc["mean_rad"], float), np.array(doc["covariance_rad2"], float))


@cache
def default_prior() -> HandPosePrior:
    """The shipped prior (read once per process)."""
    return HandPosePrior.load()
