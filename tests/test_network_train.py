"""Training the keypoint network: targets from the synthetic world, deterministic and resumable runs."""

from __future__ import annotations

import functools

import numpy as np
import torch

from tracking.network.data import CROP_SIZE, TrainingData, collate
from tracking.network.model import CELL_CLASSES, STRIDE
from tracking.train import load_real_frames, parse_args, train


def test_training_pairs_are_a_function_of_seed_and_index():
    a1, b1 = TrainingData(3).pair(5)
    a2, b2 = TrainingData(3).pair(5)
    assert np.array_equal(a1.image, a2.image) and np.array_equal(b1.image, b2.image)
    assert not np.array_equal(TrainingData(4).pair(5)[0].image, a1.image)


def test_training_views_are_crops_whose_scene_targets_sit_on_landmark_pixels():
    views = list(TrainingData(0).pair(2))
    batch = collate(views)
    assert batch.images.shape == (2, 1, CROP_SIZE[1], CROP_SIZE[0])
    px = np.round(views[0].points_px).astype(int)
    assert len(px) > 10
    classes = batch.scene_classes[0].numpy()
    hit = classes[px[:, 1] // STRIDE, px[:, 0] // STRIDE] == (px[:, 1] % STRIDE) * STRIDE + px[:, 0] % STRIDE
    assert hit.mean() > 0.8  # the rest share a cell with another point
    assert (classes == CELL_CLASSES - 1).mean() > 0.8


def test_a_confident_heatmap_at_a_hidden_joint_costs_loss():
    """The network is to report only joints the camera sees: a hidden joint's heatmap is trained as a negative."""
    from tracking.network.losses import hand_heatmap_loss

    data = TrainingData(0)
    for index in range(200):
        views = list(data.pair(index))
        hidden = [(v, np.flatnonzero(~v.joints_visible.reshape(-1) & (v.joints_px.reshape(-1, 2) > 8).all(1)
                                      & (v.joints_px.reshape(-1, 2) < np.array(CROP_SIZE) - 8).all(1)))
                  for v in views]  # fmt: skip
        hidden = [(v, channels) for v, channels in hidden if len(channels) and v.joints_visible.any()]
        if hidden:
            break
    view, channels = hidden[0]
    batch = collate([view, view])
    c = int(channels[0])
    u, v = np.round((view.joints_px.reshape(-1, 2)[c] - (STRIDE - 1) / 2) / STRIDE).astype(int)
    assert not batch.hand_peaks[0, c].any()
    quiet = torch.full_like(batch.hand_heat, -6.0)
    firing = quiet.clone()
    firing[:, c, v, u] = 4.0
    assert (
        hand_heatmap_loss(firing, batch.hand_heat, batch.hand_peaks)
        > hand_heatmap_loss(quiet, batch.hand_heat, batch.hand_peaks) + 0.1  # left out of the loss: +0
    )


def test_pairs_match_points_of_the_same_landmark():
    a, b = TrainingData(0).pair(2)
    pa, pb = collate([a, b]).matches[0]
    assert len(pa) == len(pb) > 5


def test_real_frames_ship_for_training(data_dir):
    frames = load_real_frames(data_dir / "vtest_frames")
    assert frames is not None and frames.shape[1:] == (240, 320) and frames.dtype == np.uint8


def test_resumed_training_reproduces_an_uninterrupted_run(tmp_path):
    common = ["--pairs", "1", "--checkpoint-every", "1", "--real-fraction", "0.5"]
    straight, _ = train(parse_args([*common, "--steps", "2", "--work-dir", str(tmp_path / "a")]))
    train(parse_args([*common, "--steps", "1", "--work-dir", str(tmp_path / "b")]))
    resumed, _ = train(parse_args([*common, "--steps", "2", "--work-dir", str(tmp_path / "b"), "--resume"]))
    for (name, x), (_, y) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_gate_tuning_picks_the_fewest_macs_that_keep_the_agreement(monkeypatch):
    from tracking.network import export
    from tracking.network.api import load_weights

    monkeypatch.setattr(export, "THRESHOLD_CANDIDATES", (0.01, 0.05))
    monkeypatch.setattr(export, "NOISE_MARGINS", (0.0, 1.0))
    monkeypatch.setattr(export, "GATE_BLOCKS", (2,))
    monkeypatch.setattr(export, "DEEP_SCALES", (1.0,))
    monkeypatch.setattr(export, "CONTEXT_SCALES", (1.0,))
    monkeypatch.setattr(export, "DECODER_SCALES", (1.0,))
    monkeypatch.setattr(export, "TUNING_SEQUENCES", (("still_hand", 100, True),))
    # the camera's noise as it is: the deadband (tracking.network.deadband) holds most of it back before the gate
    monkeypatch.setattr(export, "KeypointModel", functools.partial(export.KeypointModel, deadband=0))
    chosen, trials = export.tune_gate(load_weights())
    assert [(t.threshold, t.noise_margin) for t in trials] == [(0.01, 0.0), (0.05, 0.0), (0.01, 1.0), (0.05, 1.0)]
    passing = [t for t in trials if t.agreement_margin >= 0.0]
    assert passing, trials
    fewest = min(t.mac_ratio for t in passing)
    assert chosen in passing and chosen.mac_ratio <= fewest + export.MAC_TIE
    assert chosen.threshold == max(t.threshold for t in passing if t.mac_ratio <= fewest + export.MAC_TIE)
    # A floor that ignores sensor noise executes fewer MACs on a still scene than none at the same ε.
    assert trials[2].mac_ratio < trials[0].mac_ratio


def test_gate_tuning_keeps_the_hands_where_the_scene_points_rule_would_let_them_go(monkeypatch):
    """On a still camera the scene points may disagree with the dense network as much as sensor noise makes it
    disagree with itself; the hand joints may not. The scene points do not depend on the decoder: at ε 0.16 there
    they keep their rule on still_hand, while a sixth of the hand joints move by more than half a pixel."""
    from tracking.network import export
    from tracking.network.api import load_weights

    monkeypatch.setattr(export, "THRESHOLD_CANDIDATES", (0.01,))
    monkeypatch.setattr(export, "NOISE_MARGINS", (1.0,))
    monkeypatch.setattr(export, "GATE_BLOCKS", (2,))
    monkeypatch.setattr(export, "DEEP_SCALES", (2.0,))
    monkeypatch.setattr(export, "CONTEXT_SCALES", (16.0,))
    monkeypatch.setattr(export, "DECODER_SCALES", (4.0, 16.0))
    monkeypatch.setattr(export, "TUNING_SEQUENCES", (("still_hand", 100, True),))
    chosen = {}
    # 0.87: between the ~0.83 of the hand joints within 0.5 px at the decoder's ε x 16 and the ~0.90 at x 4 (on
    # this sequence alone the shipped rule's 0.9 is at the edge of the latter)
    for required in (0.0, 0.87):
        monkeypatch.setattr(export, "REQUIRED_HAND_AGREEMENT", required)
        chosen[required] = export.tune_gate(load_weights())[0].decoder_scale
    assert chosen == {0.0: 16.0, 0.87: 4.0}


def test_gate_tuning_chooses_the_gate_block_and_records_it(monkeypatch, tmp_path):
    """A larger gate block holds back change spread thin over a block's field: on a still camera with a moving hand
    it executes fewer MACs at the same ε. The grid runs at the first block, the other blocks with its choice."""
    import json

    from tracking.network import export
    from tracking.network.api import GateSettings, load_weights

    monkeypatch.setattr(export, "THRESHOLD_CANDIDATES", (0.01, 0.05))
    monkeypatch.setattr(export, "NOISE_MARGINS", (1.0,))
    monkeypatch.setattr(export, "GATE_BLOCKS", (2, 8))
    monkeypatch.setattr(export, "DEEP_SCALES", (2.0,))
    monkeypatch.setattr(export, "CONTEXT_SCALES", (16.0,))
    monkeypatch.setattr(export, "DECODER_SCALES", (4.0,))
    monkeypatch.setattr(export, "TUNING_SEQUENCES", (("still_hand", 100, True),))
    monkeypatch.setattr(export, "REQUIRED_HAND_AGREEMENT", 0.0)  # the MACs alone decide here
    gate = export.save_gate(load_weights(), tmp_path / "gate.json", None)
    trials = gate["trials"]
    assert [(t["block"], t["threshold"]) for t in trials[:2]] == [(2, 0.01), (2, 0.05)]
    first = export._fewest_macs([export.GateTrial(**t) for t in trials[:2]])
    assert [(t["block"], t["threshold"]) for t in trials[2:]] == [(8, first.threshold)]
    assert trials[2]["mac_ratio"] < trials[trials.index(first.__dict__)]["mac_ratio"]
    passing = [t for t in trials if t["agreement_margin"] >= 0.0]
    assert passing
    assert gate["block"] == min(passing, key=lambda t: t["mac_ratio"])["block"]
    saved = GateSettings.load(tmp_path / "gate.json")
    assert saved.block == gate["block"] and json.loads((tmp_path / "gate.json").read_text())["block"] == saved.block


def test_retuning_rewrites_the_gate_and_the_cards_gate_sections_only(monkeypatch, tmp_path):
    import json
    import shutil

    from tracking.network import export
    from tracking.network.api import GATE_FILE, WEIGHTS_FILE

    monkeypatch.setattr(export, "THRESHOLD_CANDIDATES", (0.01, 0.05))
    monkeypatch.setattr(export, "NOISE_MARGINS", (1.0,))
    monkeypatch.setattr(export, "GATE_BLOCKS", (2,))
    monkeypatch.setattr(export, "DEEP_SCALES", (1.0, 3.0))
    monkeypatch.setattr(export, "CONTEXT_SCALES", (8.0,))
    monkeypatch.setattr(export, "DECODER_SCALES", (4.0,))
    monkeypatch.setattr(export, "TUNING_SEQUENCES", (("still_hand", 100, True),))
    monkeypatch.setattr(export, "TUNING_SECONDS", 0.5)
    monkeypatch.setattr(export, "EVALUATION_RUNS", (("synthetic:still_hand", 7),))
    shutil.copy(WEIGHTS_FILE, tmp_path / WEIGHTS_FILE.name)
    (tmp_path / "README.md").write_text("# card\n\n## Training\nkept as it was\n\n## Skip gate\nold gate\n")
    gate = export.retune(tmp_path)
    saved = json.loads((tmp_path / GATE_FILE.name).read_text())
    assert saved["threshold"] == gate["threshold"] in (0.0, 0.01, 0.05)
    assert [(t["deep_scale"], t["threshold"]) for t in saved["trials"]] == [(1.0, 0.01), (1.0, 0.05), (3.0, 0.01),
                                                                             (3.0, 0.05)]  # fmt: skip
    assert saved["deep_scale"] in (1.0, 3.0)
    assert saved["block"] == (None if saved["threshold"] == 0.0 else 2)
    exact = saved["threshold"] == 0.0
    assert saved["module_scales"] == ({} if exact else {"down8": 8.0, "ctx8a": 8.0, "ctx8b": 8.0, "fuse4": 4.0,
                                                        "dec4": 4.0})  # fmt: skip
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("# card\n\n## Training\nkept as it was\n\n## Skip gate\n")
    assert "old gate" not in card and f"ε = {gate['threshold']} at the layer reading the camera" in card
    assert "| synthetic:still_hand | 7 |" in card
