"""Skip-convolution engine: run a trained CNN frame by frame, recomputing only what changed (see docs/skipconv.md).

``tracking.skipconv.convert(model, threshold=...)`` returns a ``SkipModel``.
"""

from tracking.skipconv.convert import SkipModel, convert
from tracking.skipconv.errors import UnsupportedOperationError
from tracking.skipconv.gates import GateKind, GumbelGate, gated_skip_conv, norm_gate, sparsity_loss
from tracking.skipconv.kernels import Backend, ExtensionBuildError

__all__ = [
    "Backend",
    "ExtensionBuildError",
    "GateKind",
    "GumbelGate",
    "SkipModel",
    "UnsupportedOperationError",
    "convert",
    "gated_skip_conv",
    "norm_gate",
    "sparsity_loss",
]
