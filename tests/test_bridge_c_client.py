"""The C client (bridge/clients/c): compiled with gcc against libzmq, it must decode the test vectors exactly as
the Python decoder does and receive live poses from the Python publisher."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from bridge.demo import hand_pose, head_pose
from bridge.protocol import Message, decode, encode
from bridge.publisher import Publisher
from skiptrack_types import HandPose

REPO = Path(__file__).resolve().parents[1]
CLIENT_DIR = REPO / "bridge" / "clients" / "c"
VECTORS = json.loads((Path(__file__).parent / "data" / "protocol_vectors_v1.json").read_text())


def _zmq_header_present() -> bool:
    return any(Path(d, "zmq.h").is_file() for d in ("/usr/include", "/usr/local/include"))


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (CI installs it: apt-get install gcc libzmq3-dev)")
    if not _zmq_header_present():
        pytest.skip("zmq.h is not installed (CI installs it: apt-get install libzmq3-dev)")
    binary = tmp_path_factory.mktemp("c_client") / "skiptrack_listen"
    subprocess.run(
        ["gcc", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-o", str(binary),
         str(CLIENT_DIR / "skiptrack_listen.c"), "-lzmq", "-lm"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return binary


def _decode_with_c(client: Path, frames: list[bytes]) -> list[dict[str, str]]:
    out = subprocess.run(
        [str(client), "--decode"], input="".join(f.hex() + "\n" for f in frames), capture_output=True, text=True,
        check=True, timeout=30,
    ).stdout  # fmt: skip
    return [dict(item.split("=", 1) for item in line.split(" ") if "=" in item) for line in out.splitlines()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def test_c_client_decodes_every_valid_vector_to_its_fields(client):
    decoded = _decode_with_c(client, [bytes.fromhex(v["hex"]) for v in VECTORS["valid"]])
    assert len(decoded) == len(VECTORS["valid"])
    for got, vector in zip(decoded, VECTORS["valid"], strict=True):
        fields = vector["fields"]
        assert "error" not in got, (vector["name"], got)
        assert got["topic"] == fields["topic"]
        assert int(got["msg_seq"]) == fields["msg_seq"] and int(got["publish_t_ns"]) == fields["publish_t_ns"]
        assert bool(int(got["repeat"])) == fields["repeat"]
        if fields["topic"] == "status":
            assert float(got["head_rate_hz"]) == fields["head_rate_hz"]
            assert (int(got["messages_sent"]), int(got["messages_dropped"])) == (
                fields["messages_sent"], fields["messages_dropped"],
            )  # fmt: skip
            continue
        for name in ("seq", "t_ns", "display_t_ns", "tracking_flags", "exit_stage"):
            assert int(got[name]) == fields[name], (vector["name"], name)
        assert np.float32(got["active_fraction"]) == np.float32(fields["active_fraction"])
        for name in ("linear_velocity", "angular_velocity", "position", "orientation"):
            assert _floats(got[name]) == fields[name], (vector["name"], name)
        if "joints" in fields:
            c_joints = np.array([_floats(got[f"joint{j}"]) for j in range(26)])
            # The client prints float32 values with 9 significant digits: exact once read back as float32.
            np.testing.assert_array_equal(c_joints.astype(np.float32), np.array(fields["joints"], np.float32))


def test_c_client_rejects_every_invalid_vector(client):
    decoded = _decode_with_c(client, [bytes.fromhex(v["hex"]) for v in VECTORS["invalid"]])
    assert len(decoded) == len(VECTORS["invalid"])
    accepted = [v["name"] for got, v in zip(decoded, VECTORS["invalid"], strict=True) if "error" not in got]
    assert accepted == []


def test_c_client_receives_live_poses_from_the_python_publisher(client):
    with Publisher("tcp://127.0.0.1:*") as pub:
        proc = subprocess.Popen(
            [str(client), "--endpoint", pub.endpoint, "--topic", "head", "--topic", "hand/left", "--count", "4",
             "--timeout-ms", "20000"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        sent = {}
        seq = 0
        while proc.poll() is None and seq < 4000:
            t = time.monotonic_ns()
            sent[seq] = (head_pose(seq, t), hand_pose("left", seq, t))
            pub.publish_head(sent[seq][0])
            pub.publish_hand(sent[seq][1])
            seq += 1
            time.sleep(0.005)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    lines = [dict(item.split("=", 1) for item in line.split(" ")) for line in out.splitlines()]
    assert len(lines) == 4 and {line["topic"] for line in lines} <= {"head", "hand/left"}
    for line in lines:
        head, hand = sent[int(line["seq"])]
        if line["topic"] == "head":
            assert _floats(line["position"]) == list(head.position)
            assert _floats(line["orientation"]) == list(head.orientation)
        else:
            joints = np.array([_floats(line[f"joint{j}"])[:3] for j in range(26)])
            np.testing.assert_allclose(joints, hand.joint_positions, atol=1e-6)


def test_c_and_python_decoders_agree_on_a_fresh_hand_frame(client):
    frame = encode(Message(hand_pose("right", 3, 123_456_789), 5, 123_999_999))
    got = _decode_with_c(client, [frame])[0]
    python = decode(frame).payload
    assert isinstance(python, HandPose)
    c_joints = np.array([_floats(got[f"joint{j}"]) for j in range(26)])
    np.testing.assert_array_equal(c_joints[:, :3].astype(np.float32), python.joint_positions.astype(np.float32))
    np.testing.assert_array_equal(c_joints[:, 7].astype(np.float32), python.joint_radii.astype(np.float32))
