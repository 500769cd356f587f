"""The learned exit gates of the refinement cascade (FrameExit-style, Ghodrati et al., ICCV 2021).

After stage k a gate estimates the probability that the later stages would move the pose by less than a tolerance
τ; the cascade stops when that probability reaches ``threshold``. Each gate is a logistic regression on a few
standardised features (see ``GATE_FEATURES``), trained on the synthetic world with labels computed on the fly by
running the later stages anyway (``python -m tracking.train_gates``), and shipped as JSON in tracking/weights/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from skiptrack_types import InvalidInputError
from tracking.trained_file import trained_json

GATE_FEATURES: tuple[str, ...] = (
    "stage_failed",
    "log_inliers",
    "residual_px",
    "matched_fraction",
    "correction_mm",
    "correction_deg",
    "gyro_rate_rad_s",
    "speed_m_s",
    "since_full_s",
)
"""Features a gate sees, in order. Values a stage does not produce are 0 (stage 0 has no inliers)."""

DEFAULT_GATES_PATH = Path(__file__).resolve().parent.parent / "weights" / "gates.json"


@dataclass(frozen=True, eq=False)
class Gate:
    """Logistic regression: p = sigmoid(w · (x - mean) / std + b); ``weights``, ``mean``, ``std`` (F,)."""

    weights: np.ndarray
    bias: float
    mean: np.ndarray
    std: np.ndarray

    def probability(self, features: np.ndarray) -> float:
        """P(later stages would move the pose by less than τ) for one feature vector (F,)."""
        z = float(self.weights @ ((features - self.mean) / self.std) + self.bias)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, l2: float = 1e-2) -> Gate:
        """Fit on ``features`` (N, F) and boolean ``labels`` (N,) by L2-regularised maximum likelihood."""
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
        xs = (x - mean) / std

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            z = xs @ theta[:-1] + theta[-1]
            p = 1.0 / (1.0 + np.exp(-z))
            nll = float(np.mean(np.logaddexp(0.0, z) - y * z)) + l2 * float(theta[:-1] @ theta[:-1])
            grad_z = (p - y) / len(y)
            grad = np.concatenate([xs.T @ grad_z + 2 * l2 * theta[:-1], [grad_z.sum()]])
            return nll, grad

        theta = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B").x
        return cls(theta[:-1], float(theta[-1]), mean, std)


@dataclass(frozen=True, eq=False)
class GateSet:
    """One gate per stage that may exit early (stage -> Gate), the exit ``threshold`` and the τ they learned."""

    gates: dict[int, Gate]
    threshold: float = 0.9
    tau_m: float = 0.002
    tau_deg: float = 0.2

    def should_exit(self, stage: int, features: np.ndarray, threshold: float | None = None) -> bool:
        gate = self.gates.get(stage)
        if gate is None:
            return False
        return gate.probability(features) >= (self.threshold if threshold is None else threshold)

    def save(self, path: Path) -> None:
        doc = {
            "features": list(GATE_FEATURES),
            "threshold": self.threshold,
            "tau_m": self.tau_m,
            "tau_deg": self.tau_deg,
            "gates": {
                str(k): {"weights": g.weights.tolist(), "bias": g.bias, "mean": g.mean.tolist(), "std": g.std.tolist()}
                for k, g in self.gates.items()
            },
        }
        Path(path).write_text(json.dumps(doc, indent=1))

    @classmethod
    def load(cls, path: Path = DEFAULT_GATES_PATH) -> GateSet:
        """Read gates written by ``save``; raises InvalidInputError naming what is wrong with the file."""
        with trained_json(path, "gate file", "python -m tracking.train_gates") as doc:
            if tuple(doc["features"]) != GATE_FEATURES:
                raise InvalidInputError(
                    f"gate file {path} was trained on features {doc['features']}, this code uses {list(GATE_FEATURES)}"
                    "; retrain with `python -m tracking.train_gates`"
                )
            gates = {
                int(k): Gate(np.array(g["weights"]), float(g["bias"]), np.array(g["mean"]), np.array(g["std"]))
                for k, g in doc["gates"].items()
            }
            return cls(gates, float(doc["threshold"]), float(doc["tau_m"]), float(doc["tau_deg"]))
