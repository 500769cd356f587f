"""The keypoint network: budget, shapes, decoding, the public API, and the shipped weights on real inputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from hardware.synthetic import open_synthetic
from skiptrack_types import InvalidInputError, SkipTrackError
from tracking.keypoints import DESCRIPTOR_DIM, Keypoints
from tracking.network import KeypointModel, KeypointNet, count_macs, load_default, load_weights
from tracking.network.api import GATE_FILE, WEIGHTS_FILE, GateSettings
from tracking.network.decode import (
    DecodeConfig,
    decode,
    decode_hands,
    decode_many,
    detect_points,
    sample_descriptors,
    scene_probabilities,
    window_soft_argmax,
)
from tracking.network.export import GATE_BLOCKS
from tracking.network.metrics import agreement, hand_pck, point_repeatability
from tracking.network.model import CELL_CLASSES, CONTEXT_MODULES, DECODER_MODULES, HAND_CHANNELS, STRIDE
from tracking.skipconv.convert import convert
from tracking.skipconv.layers import ConvLayer

MAC_BUDGET = 0.6e9
HELD_OUT_SEED = 7


@pytest.fixture(scope="module")
def shipped() -> KeypointNet:
    return load_weights()


@pytest.fixture(scope="module")
def still_hand_images() -> list[np.ndarray]:
    return [frame.images[0] for frame in open_synthetic("still_hand", seconds=0.1, seed=HELD_OUT_SEED)]


def test_network_dense_macs_fit_the_budget():
    assert 0 < count_macs(KeypointNet(), 240, 320) <= MAC_BUDGET


def test_skip_engine_counts_the_dense_macs_of_its_rewritten_decoder():
    """count_macs counts the network as written; the engine runs its 1x1 fusion over cat(up(f8), f4) as one
    convolution at /8 before the upsampling and one at /4 (tracking.skipconv.rewrite), 7.4 M MACs fewer."""
    skip = convert(KeypointNet().eval(), threshold=0.0, break_even=0.5)
    skip(torch.rand(1, 1, 240, 320))
    as_written = 60 * 80 * 96 * 32
    rewritten = 30 * 40 * 64 * 32 + 60 * 80 * 32 * 32
    assert skip.stats()["dense_macs"] == count_macs(KeypointNet(), 240, 320) - as_written + rewritten


def test_scene_points_do_not_depend_on_the_context_or_the_decoder():
    """The skip model gates the context and the decoder with their own ε (GateSettings.module_scales): the scene head
    must not read them, while the descriptors and the hands do."""
    torch.manual_seed(0)
    net = KeypointNet().eval()
    x = torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        scene, descriptors, hands = net(x)
        for name in CONTEXT_MODULES + DECODER_MODULES:
            getattr(net, name)[0].weight.mul_(1.5)
        scene2, descriptors2, hands2 = net(x)
    assert torch.equal(scene, scene2)
    assert not torch.allclose(descriptors, descriptors2) and not torch.allclose(hands, hands2)


def test_the_skip_models_noise_floor_comes_from_the_camera_not_the_steadied_images(shipped, still_hand_images):
    """The deadband holds a still camera's noise back: estimated from what it hands on the floor would be zero."""
    expected = 2 * (1.6 / 255.0) ** 2  # the synthetic sensor's read noise, 1.6 grey levels RMS, in two frames
    for deadband in (6, 0):
        model = KeypointModel(shipped, skip=True, threshold=0.04, noise_margin=1.0, deadband=deadband)
        for image in still_hand_images:
            model.infer(image)
        assert 0.5 * expected < model.engine.noise_energy < 2.0 * expected, deadband
    model.reset(new_camera=True)
    assert model.engine.noise_energy == 0.0
    # The estimate starts again on a new camera's first two images, wherever the old one's cadence stood.
    model = KeypointModel(shipped, skip=True, threshold=0.04, noise_margin=1.0)
    for image in still_hand_images[:2]:
        model.infer(image)
    model.reset(new_camera=True)
    for image in still_hand_images[:2]:
        model.infer(image)
    assert model.engine.noise_energy > 0.0


def test_network_heads_have_documented_shapes():
    scene, descriptors, hands = KeypointNet().eval()(torch.rand(2, 1, 240, 320))
    assert scene.shape == (2, CELL_CLASSES, 240 // STRIDE, 320 // STRIDE)
    assert descriptors.shape == (2, DESCRIPTOR_DIM, 60, 80)
    assert hands.shape == (2, HAND_CHANNELS, 60, 80)


def _cell_logits_for(prob: np.ndarray) -> torch.Tensor:
    """Scene cell logits whose decoded pixel probabilities are ``prob`` (H, W)."""
    h, w = prob.shape
    grid = prob.reshape(h // STRIDE, STRIDE, w // STRIDE, STRIDE)  # [row, dy, column, dx]
    cells = grid.transpose(1, 3, 0, 2).reshape(STRIDE * STRIDE, h // STRIDE, w // STRIDE)
    dustbin = np.clip(1.0 - cells.sum(0, keepdims=True), 1e-6, None)
    return torch.from_numpy(np.log(np.concatenate([cells, dustbin]) + 1e-9).astype(np.float32))


def test_scene_probabilities_put_each_cell_class_at_its_pixel():
    logits = torch.full((CELL_CLASSES, 60, 80), -20.0)
    logits[-1] = 0.0
    logits[2 * STRIDE + 3, 10, 20] = 20.0  # class dy=2, dx=3 of cell (row 10, column 20)
    prob = scene_probabilities(logits)
    assert tuple(torch.nonzero(prob > 0.5)[0].tolist()) == (10 * STRIDE + 2, 20 * STRIDE + 3)


@pytest.mark.parametrize("x0, y0", [(100.3, 60.7), (41.5, 170.2), (250.8, 33.4)])
def test_detect_points_recovers_a_subpixel_peak(x0, y0):
    yy, xx = np.mgrid[0:240, 0:320]
    prob = 0.3 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 0.7**2))
    points, scores = detect_points(scene_probabilities(_cell_logits_for(prob)), DecodeConfig())
    assert len(points) == 1
    assert np.hypot(points[0, 0] - x0, points[0, 1] - y0) < 0.25
    assert scores[0] > DecodeConfig().detection_threshold


def test_a_peak_shared_by_two_pixels_gives_one_point_between_them():
    prob = torch.zeros(24, 32)
    prob[10, 10] = prob[10, 11] = 0.5  # a point midway between two pixels of a row
    prob[3, 20] = prob[5, 20] = 0.3  # two pixels apart in a column: one window, one point
    points, _ = detect_points(prob, DecodeConfig())
    assert sorted(points.tolist()) == [[10.5, 10.0], [20.0, 4.0]]


def test_points_closer_than_the_suppression_radius_give_the_stronger_one_only():
    radius = DecodeConfig().nms_radius
    prob = torch.zeros(40, 60)
    prob[10, 10], prob[10, 10 + radius - 1] = 0.4, 0.3  # one blob in the image: only the stronger survives
    prob[30, 10], prob[30, 10 + radius + 1] = 0.4, 0.3  # farther apart than the radius: both
    points, _ = detect_points(prob, DecodeConfig())
    assert sorted(points.tolist()) == [[10.0, 10.0], [10.0, 30.0], [10.0 + radius + 1, 30.0]]
    assert radius >= 4  # neighbouring landmarks 3-5 px apart paired wrongly across views at 3 (docs/network.md)


def test_decode_hands_recovers_subpixel_joints_and_skips_absent_hands():
    rng = np.random.default_rng(0)
    truth = rng.uniform([20, 20], [300, 220], (21, 2))
    gy, gx = np.mgrid[0:60, 0:80]
    logits = np.full((HAND_CHANNELS, 60, 80), -12.0, np.float32)
    for j, (x, y) in enumerate(truth):
        u, v = (x - 1.5) / STRIDE, (y - 1.5) / STRIDE
        logits[21 + j] = -((gx - u) ** 2 + (gy - v) ** 2) / (2 * 0.75**2) + 2.0
    hands = decode_hands(torch.from_numpy(logits), DecodeConfig())
    assert [h.side for h in hands] == ["right"]
    assert np.abs(hands[0].joints_px - truth).max() < 0.3
    assert (hands[0].confidence > 0.8).all()


def test_decoded_joints_are_the_training_losss_soft_argmax():
    torch.manual_seed(0)
    logits = torch.randn(HAND_CHANNELS, 60, 80) * 3
    logits[:, 0, 5] = 12.0  # peaks at the border: windows clipped
    logits[:3, 30, 79] = 13.0
    config = DecodeConfig(presence_threshold=0.0)
    joints = np.concatenate([h.joints_px for h in decode_hands(logits, config)])
    peak = logits.reshape(HAND_CHANNELS, -1).argmax(1)
    centres = torch.stack([peak % 80, peak // 80], 1)
    expected = window_soft_argmax(logits, centres, config.joint_radius).numpy()
    np.testing.assert_allclose(joints, expected, atol=1e-4)


def test_sampled_descriptors_are_unit_vectors():
    descriptors = torch.randn(DESCRIPTOR_DIM, 60, 80)
    points = np.array([[0.0, 0.0], [160.2, 120.7], [319.0, 239.0]], np.float32)
    d = sample_descriptors(descriptors, points, (320, 240))
    assert d.shape == (3, DESCRIPTOR_DIM)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "image, message",
    [
        ([[0, 1], [2, 3]], "numpy uint8 array"),
        (np.zeros((240, 320, 3), np.uint8), "2-D grayscale"),
        (np.zeros((240, 320), np.float32), "dtype uint8"),
        (np.zeros((240, 318), np.uint8), "multiples of 8"),
    ],
)
def test_infer_rejects_bad_images_with_instructions(image, message):
    model = KeypointModel(KeypointNet().eval(), break_even=0.5)
    with pytest.raises(InvalidInputError, match=message) as caught:
        model.infer(image)
    assert isinstance(caught.value, SkipTrackError)


def test_load_default_loads_the_shipped_weights_and_gate(still_hand_images):
    model = load_default()
    assert model.threshold == GateSettings.load().threshold
    result = model.infer(still_hand_images[0])
    assert isinstance(result, Keypoints)
    assert len(result) > 20
    assert result.descriptors.shape == (len(result), DESCRIPTOR_DIM)


def test_load_default_runs_the_gate_block_the_gate_was_tuned_with(still_hand_images):
    block = GateSettings.load().block
    assert block in GATE_BLOCKS
    model = load_default()
    model.infer(still_hand_images[0])
    gated = [layer for layer in model.engine.layers if isinstance(layer, ConvLayer) and not layer.follows_input]
    assert gated and {layer.block_used for layer in gated} == {block}


def test_shipped_network_files_are_small():
    assert WEIGHTS_FILE.stat().st_size + GATE_FILE.stat().st_size <= 10 * 2**20


def test_skip_model_matches_dense_exactly_at_zero_threshold(shipped, still_hand_images):
    skip = KeypointModel(shipped, skip=True, threshold=0.0, break_even=0.5)
    dense = KeypointModel(shipped, skip=False)
    for image in still_hand_images[:4]:
        agreeing, total = agreement(dense.infer(image), skip.infer(image), 1.0)
        assert total > 0 and agreeing == total


def _skip_and_self_agreement(network, images) -> tuple[float, float]:
    """(skip vs dense agreement, dense vs the dense result one frame earlier) over ``images``, at the shipped gate."""
    settings = GateSettings.load()
    skip = KeypointModel(network, skip=True, threshold=settings.threshold, noise_margin=settings.noise_margin,
                         break_even=0.5)  # fmt: skip
    dense = KeypointModel(network, skip=False)
    counts = np.zeros((2, 2))
    previous = None
    for image in images:
        reference = dense.infer(image)
        counts[0] += agreement(reference, skip.infer(image), 1.0)
        if previous is not None:
            counts[1] += agreement(previous, reference, 1.0)
        previous = reference
    return counts[0, 0] / counts[0, 1], counts[1, 0] / counts[1, 1]


def test_skip_model_at_shipped_threshold_agrees_with_dense_when_the_camera_moves(shipped):
    images = [frame.images[0] for frame in open_synthetic("seated", seconds=0.5, seed=HELD_OUT_SEED)]
    skip_agreement, _ = _skip_and_self_agreement(shipped, images)
    assert skip_agreement >= 0.99


def test_skip_model_on_a_still_scene_agrees_with_dense_as_dense_agrees_with_itself(shipped, still_hand_images):
    """Under a still camera the dense keypoints change with the sensor noise from frame to frame; a gate that
    ignores that noise is as close to the dense result as the dense result is to its previous frame."""
    skip_agreement, self_agreement = _skip_and_self_agreement(shipped, still_hand_images)
    assert self_agreement < 0.99
    assert skip_agreement >= self_agreement - 0.02


def test_skip_model_recomputes_little_of_a_still_scene_at_a_coarse_threshold(shipped, still_hand_images):
    skip = KeypointModel(shipped, skip=True, threshold=0.08, break_even=0.5)
    for i, image in enumerate(still_hand_images):
        skip.infer(image)
        stats = skip.stats()
        if i > 0:
            assert stats["macs"] < 0.3 * stats["dense_macs"]


def test_shipped_weights_find_hand_joints_on_a_rendered_frame(shipped):
    frame = open_synthetic("seated", seconds=1.0, seed=HELD_OUT_SEED).frame(30)
    model = KeypointModel(shipped, skip=False)
    correct, total = hand_pck(model.infer(frame.images[0]), frame.truth, 0, tolerance_px=4.0)
    assert total > 10
    assert correct / total >= 0.5


def test_scene_points_on_a_real_image_follow_a_shift_and_survive_a_darker_exposure(shipped, data_dir):
    image = cv2.imread(str(data_dir / "vtest_frames" / "vtest_0000.png"), cv2.IMREAD_GRAYSCALE)
    model = KeypointModel(shipped, skip=False)
    points = model.infer(image).points_px
    shifted = model.infer(np.ascontiguousarray(np.roll(image, (8, 16), axis=(0, 1)))).points_px - [16, 8]
    darker = model.infer(np.clip(image * 0.7 + 10, 0, 255).astype(np.uint8)).points_px

    def interior(p: np.ndarray) -> np.ndarray:  # away from the rolled-in border
        return p[(p[:, 0] > 20) & (p[:, 0] < 300) & (p[:, 1] > 12) & (p[:, 1] < 228)]

    assert len(points) >= 100
    assert point_repeatability(interior(points), interior(shifted)) >= 0.75
    assert point_repeatability(points, darker) >= 0.65


def test_provider_runs_the_cameras_in_parallel_with_the_same_keypoints(still_hand_images):
    from skiptrack_types import Frame
    from tracking.providers import NetworkKeypointProvider

    threads = torch.get_num_threads()
    try:
        images = still_hand_images[:3]
        frames = [Frame(i, i * 10**7, (image, np.fliplr(image).copy())) for i, image in enumerate(images)]
        serial = NetworkKeypointProvider(parallel=False)
        parallel = NetworkKeypointProvider(parallel=True)
        for frame in frames:
            for a, b in zip(serial(frame), parallel(frame), strict=True):
                np.testing.assert_array_equal(a.points_px, b.points_px)
                np.testing.assert_array_equal(a.descriptors, b.descriptors)
                assert [h.side for h in a.hands] == [h.side for h in b.hands]
        with pytest.raises(InvalidInputError, match="2 cameras"):
            parallel(Frame(9, 10**9, frames[0].images[:1]))
    finally:
        torch.set_num_threads(threads)


def test_precision_auto_follows_the_cpu_and_bad_values_are_refused(monkeypatch):
    from tracking.network import api

    monkeypatch.setattr(api, "native_bf16", lambda: True)
    assert api.resolve_precision("auto") == "bf16"
    monkeypatch.setattr(api, "native_bf16", lambda: False)
    assert api.resolve_precision("auto") == "fp32"
    assert api.resolve_precision("bf16") == "bf16"
    with pytest.raises(InvalidInputError, match="precision must be auto, fp32 or bf16"):
        api.resolve_precision("int8")


def test_bf16_network_finds_the_same_keypoints_as_fp32(shipped):
    """The bfloat16 dense pass moves the outputs by about 1 % of their range: the hands' joints by hundredths of
    a pixel, and nearly every scene point stays within a pixel (the rest are the weakest peaks)."""
    fp32 = KeypointModel(shipped, skip=False)
    bf16 = KeypointModel(shipped, skip=False, precision="bf16")
    assert bf16.engine.precision == "bf16"
    images = [frame.images[0] for frame in open_synthetic("seated", seconds=0.2, seed=HELD_OUT_SEED)]
    agreeing = total = 0
    joint_moves = []
    for image in images:
        a, b = fp32.infer(image), bf16.infer(image)
        agreed, count = agreement(a, b, 1.0)
        agreeing, total = agreeing + agreed, total + count
        for ha, hb in zip(a.hands, b.hands, strict=False):
            if ha.side == hb.side:
                joint_moves.append(np.linalg.norm(ha.joints_px - hb.joints_px, axis=1))
    assert agreeing / total >= 0.9
    assert joint_moves and np.median(np.concatenate(joint_moves)) < 0.2


def test_decoding_a_stereo_frame_at_once_equals_decoding_each_image(shipped, still_hand_images):
    model = KeypointModel(shipped, skip=False)
    images = [still_hand_images[0], np.fliplr(still_hand_images[1]).copy()]
    outputs = [tuple(o.clone() for o in model.run(image)) for image in images]
    seen: list = []
    both = decode_many(outputs, (320, 240), model.decode_config, on_hands=seen.append)
    assert seen == [[kp.hands for kp in both]]  # every hand, before the scene points
    for output, kp in zip(outputs, both, strict=True):
        alone = decode(output, (320, 240), model.decode_config)
        np.testing.assert_array_equal(alone.points_px, kp.points_px)
        np.testing.assert_array_equal(alone.scores, kp.scores)
        np.testing.assert_allclose(alone.descriptors, kp.descriptors, atol=1e-6)
        assert [h.side for h in alone.hands] == [h.side for h in kp.hands]
        for a, b in zip(alone.hands, kp.hands, strict=True):
            np.testing.assert_array_equal(a.joints_px, b.joints_px)
            np.testing.assert_array_equal(a.confidence, b.confidence)
    assert sum(len(kp.hands) for kp in both) >= 2
