"""The keypoint network as the tracker uses it: one ``KeypointModel`` per camera, ``infer(image) -> Keypoints``.

```python
left, right = load_default(), load_default()     # skip-convolution models with the shipped weights and gate ε
keypoints = left.infer(frame.images[0])           # scene points, descriptors, hands
print(left.stats()["active_fraction"])            # share of the dense MACs this frame really executed
```
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from skiptrack_types import InvalidInputError, SkipTrackError
from tracking.heap import keep_freed_memory
from tracking.keypoints import Keypoints
from tracking.network.deadband import DEADBAND_GREY, Deadband
from tracking.network.decode import DecodeConfig, decode
from tracking.network.low_light import LowLight
from tracking.network.model import KeypointNet, count_macs, to_input
from tracking.skipconv.convert import PRECISIONS, SkipModel, convert
from tracking.skipconv.layers import InputLayer

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / "keypoint_net.pt"
"""The shipped weights: an fp16 state dict of ``KeypointNet``."""
GATE_FILE = WEIGHTS_DIR / "keypoint_net_gate.json"
"""The gate threshold ε chosen for the shipped weights (``tracking.network.export.tune_gate``)."""
MIN_SIDE = 16
"""Smallest image side the network accepts."""


class WeightsError(SkipTrackError):
    """The network's weights file is missing or does not fit the network."""


@dataclass(frozen=True)
class GateSettings:
    """The skip gate's global ε (relative RMS change of a block's receptive field that makes it recompute)."""

    threshold: float
    noise_margin: float = 0.0  # sensor-noise floor of the first layer (see tracking.skipconv.convert); 0: none
    deep_scale: float = 1.0  # ε multiplier of the layers that do not read the camera (SkipModel.deep_scale)
    block: int | None = None  # gate block side in output positions (None: the engine's per-layer default)
    module_scales: dict[str, float] = field(default_factory=dict)  # ε multipliers by module (SkipModel.module_scales)

    @classmethod
    def load(cls, path: Path = GATE_FILE) -> GateSettings:
        try:
            data = json.loads(Path(path).read_text())
            block = data.get("block")
            return cls(
                float(data["threshold"]),
                float(data.get("noise_margin", 0.0)),
                float(data.get("deep_scale", 1.0)),
                None if block is None else int(block),
                {str(k): float(v) for k, v in data.get("module_scales", {}).items()},
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WeightsError(
                f"cannot read the gate settings {path} ({exc}); retrain with `python -m tracking.train` or pass "
                "threshold= explicitly"
            ) from exc


def load_weights(path: Path = WEIGHTS_FILE) -> KeypointNet:
    """A ``KeypointNet`` in eval mode (float32) with the weights in ``path``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no network weights at {path}; train them with `python -m tracking.train`")
    network = KeypointNet()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except (RuntimeError, ValueError, KeyError, AttributeError) as exc:
        raise WeightsError(
            f"weights {path} do not fit KeypointNet ({exc}); retrain with `python -m tracking.train`"
        ) from exc
    return network.eval()


class KeypointModel:
    """One camera's network: skip convolutions (``skip=True``) or the same folded weights run densely.

    Keeps state between frames (the skip layers' references): use one instance per camera, call ``reset()`` at a
    scene cut. ``stats()`` gives the engine's counts for the last frame. ``precision`` ("fp32", "bf16" or
    "auto") is that of the whole-model dense passes (``SkipModel.precision``). ``low_light``: a dark image is
    smoothed and brightened first, and a skip model's gate runs exact meanwhile (``tracking.network.low_light``; an
    image in normal light goes in as it is). ``deadband``: grey levels a pixel must move to be taken from the
    camera unless its region moves, else it keeps its last value (``tracking.network.deadband``; 0: every image as
    it is; not in low light). ``module_scales``: ε multipliers of named modules' layers instead of ``deep_scale``
    (``SkipModel.module_scales``; the tuned gate gives the context and the decoder, on which the scene points do not
    depend, their own: ``GateSettings``).
    """

    def __init__(
        self,
        network: KeypointNet,
        skip: bool = True,
        threshold: float = 0.0,
        decode_config: DecodeConfig | None = None,
        break_even: float | None = None,
        noise_margin: float = 0.0,
        deep_scale: float = 1.0,
        precision: str = "fp32",
        low_light: bool = True,
        deadband: int = DEADBAND_GREY,
        block: int | None = None,
        module_scales: dict[str, float] | None = None,
    ) -> None:
        keep_freed_memory()  # every frame allocates the same feature maps: keep them mapped (tracking.heap)
        self.engine: SkipModel = convert(
            network,
            threshold=threshold,
            block=block,
            break_even=break_even,
            noise_margin=noise_margin,
            deep_scale=deep_scale,
            module_scales=module_scales,
        )
        self.engine.dense = not skip
        self.engine.precision = resolve_precision(precision)
        self.skip = skip
        self.decode_config = decode_config or DecodeConfig()
        self._dense_macs: dict[tuple[int, int], int] = {}
        self._network = network
        self._size: tuple[int, int] | None = None
        self.last_network_s = 0.0
        self.last_network_cpu_s = 0.0
        self.low_light = LowLight() if low_light else None
        self.deadband = Deadband(deadband)
        self._threshold = float(threshold)
        self._exact = False  # the gate set to ε 0 for low light (_condition)
        self._noise_in = 0  # frames until the camera's image is kept for the next noise estimate (_observe_noise)
        self._noise_previous: np.ndarray | None = None

    @property
    def threshold(self) -> float:
        """The gate's global ε (see ``SkipModel.threshold``); settable, takes effect from the next frame (in low
        light the engine runs at 0, exact, and takes this value back when the light returns)."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.engine.threshold = value  # checks it
        self._threshold = float(value)
        if self._exact:
            self.engine.threshold = 0.0

    def _condition(self, image: np.ndarray) -> np.ndarray:
        """``image`` as the network should see it: steadied by the ``deadband``, or in low light smoothed and
        brightened (``low_light``). In low light the skip engine's gate runs exact (ε 0): in a dark image
        sensor noise is as large as the change head motion makes, and the gate cannot tell them apart (at the
        shipped ε the skip network's head poses were 50-90 mm from the dense network's on the synthetic ``dark``
        scenario); each switch starts from a key frame."""
        self._observe_noise(image)
        if self.low_light is None:
            return self.deadband.steady(image)
        conditioned = self.low_light.condition(image)
        if self.skip and self.low_light.active != self._exact:
            self._exact = self.low_light.active
            self.engine.threshold = 0.0 if self._exact else self._threshold
            self.engine.reset()
        if self.low_light.active:
            self.deadband.reset()
            return conditioned
        return self.deadband.steady(conditioned)

    def _observe_noise(self, image: np.ndarray) -> None:
        """With the deadband on, the skip engine's noise floor is estimated from the camera's images, not from the
        steadied ones it runs on (``SkipModel.observe_noise``): those hold the noise back and put the floor at
        zero, while the pixels of noise the deadband lets through (past 6 grey levels, a few hundred a frame of a
        still synthetic camera) would each fire a gate block at a low ε and recompute the ring around it through
        every layer of the scene points' path."""
        if not self.skip or not self.deadband.grey:
            return
        if self._noise_previous is not None and self._noise_previous.shape == image.shape:
            self.engine.observe_noise(image, self._noise_previous, 1.0 / 255.0)
            self._noise_previous = None
            self._noise_in = InputLayer.NOISE_EVERY - 1  # the engine's own cadence
        elif self._noise_in <= 0:
            self._noise_previous = image.copy()
        else:
            self._noise_in -= 1

    def run(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The raw outputs (scene (17, h, w), descriptors (D, h, w), hands (42, h, w)) for ``image`` (H, W) uint8;
        valid until the next call. ``last_network_s`` is the wall time the network took, ``last_network_cpu_s`` the
        CPU time of this process meanwhile (all threads; less disturbed by other processes)."""
        check_image(image)
        self._size = (image.shape[1], image.shape[0])
        x = to_input(self._condition(image))
        t0, cpu0 = time.perf_counter(), time.process_time()
        outputs = self.engine(x, known_finite=True)  # a uint8 image / 255
        self.last_network_s = time.perf_counter() - t0
        self.last_network_cpu_s = time.process_time() - cpu0
        return tuple(o[0] for o in outputs)

    def infer(self, image: np.ndarray) -> Keypoints:
        """Keypoints of one uint8 grayscale image (H, W), H and W multiples of 8."""
        outputs = self.run(image)
        return decode(outputs, (image.shape[1], image.shape[0]), self.decode_config)

    def reset(self, new_camera: bool = False) -> None:
        """Make the next frame a key frame (dense refresh), its image taken whole; ``new_camera``: the images now
        come from another camera (its noise is estimated afresh, from its first two images on)."""
        self.engine.reset(new_camera)
        self.deadband.reset()
        self._noise_previous = None
        if new_camera:
            self._noise_in = 0

    def stats(self, per_layer: bool = True) -> dict:
        """``{"macs", "dense_macs", "active_fraction", "per_layer"}`` of the last frame (dense mode: all MACs);
        ``per_layer=False``: the totals alone, ``per_layer`` empty."""
        if self.skip:
            return self.engine.stats(per_layer)
        if self._size is None:
            return {"macs": 0, "dense_macs": 0, "active_fraction": 0.0, "per_layer": []}
        if self._size not in self._dense_macs:
            self._dense_macs[self._size] = count_macs(self._network, self._size[1], self._size[0])
        macs = self._dense_macs[self._size]
        return {"macs": macs, "dense_macs": macs, "active_fraction": 1.0, "per_layer": []}


def check_image(image: object) -> np.ndarray:
    """Raise InvalidInputError unless ``image`` is a 2-D uint8 array with sides that are multiples of 8."""
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"image must be a numpy uint8 array (H, W), got {type(image).__name__}")
    if image.ndim != 2:
        raise InvalidInputError(
            f"image must be 2-D grayscale (H, W), got shape {image.shape}; convert colour images with "
            "cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)"
        )
    if image.dtype != np.uint8:
        raise InvalidInputError(f"image must have dtype uint8 (grey levels 0..255), got {image.dtype}")
    h, w = image.shape
    if h % 8 or w % 8 or min(h, w) < MIN_SIDE:
        raise InvalidInputError(
            f"image sides must be multiples of 8 and at least {MIN_SIDE} px, got {w}x{h}; resize or crop it "
            "(e.g. to 320x240)"
        )
    return image


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX-BF16; read from /proc/cpuinfo on Linux).
    Without them oneDNN emulates bfloat16, slower than fp32 (PyTorch's own check accepts any AVX-512 CPU)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """The precision to run for "fp32", "bf16", or "auto" (bf16 where the CPU has bfloat16 instructions,
    ``native_bf16``, else fp32)."""
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be auto, {' or '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and not native_bf16():
        log.warning("this CPU has no bfloat16 instructions: bf16 is emulated and slower than fp32 here")
    return precision


def load_default(skip: bool = True, threshold: float | None = None, precision: str = "fp32") -> KeypointModel:
    """The shipped network for one camera. ``threshold`` None: the tuned ε stored with the weights (skip only);
    the noise floor and the deeper layers' ε multiplier stored with them apply either way. ``precision``: of the
    whole-model dense passes (``SkipModel.precision``; "auto": ``resolve_precision``)."""
    settings = GateSettings.load()
    if threshold is None:
        threshold = settings.threshold if skip else 0.0
    return KeypointModel(load_weights(), skip=skip, threshold=threshold, noise_margin=settings.noise_margin,
                         deep_scale=settings.deep_scale, precision=precision, block=settings.block,
                         module_scales=settings.module_scales)  # fmt: skip
