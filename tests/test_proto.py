"""Serial protocol, board support, build helper and runners, end to end with a hand-written model.

tests/fixtures/tiny_model.c is a 4->3 linear layer (input scaled by a frozen vector) with softmax
cross-entropy and SGD (lr 0.1); the reference below recomputes it in numpy (float64).
Tolerance: rtol 1e-5, atol 1e-7 on trained params (float32 device arithmetic, 3 steps).
The mcu tests boot the firmware in QEMU and skip when qemu-system-riscv32 is missing.
"""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import proto
from edgegrad.build import BudgetError, build, read_elf_sections
from runner import open_device, qemu_available

FIXTURES = REPO / "tests" / "fixtures"
SOURCES = [FIXTURES / "tiny_model.c"]
LR = 0.1
SCALE = np.array([1.0, 0.5, 2.0, -1.0])
X = np.array([0.5, -1.25, 0.75, 2.0], dtype=np.float32)
LABEL = 2
W_START = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5) * np.float32(0.05)

needs_qemu = pytest.mark.skipif(not qemu_available(), reason="qemu-system-riscv32 not installed (tools/setup.sh)")
TARGETS = ["host", pytest.param("mcu", marks=needs_qemu)]


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("builds")
    out = {
        "host": build("host", root / "host", SOURCES, [FIXTURES]).parent,
        "asan": build("host", root / "asan", SOURCES, [FIXTURES], sanitize=True).parent,
        "mcu": build("mcu", root / "mcu", SOURCES, [FIXTURES]).parent,
    }
    return out


def sgd_reference(w, b, x, label, steps):
    """numpy replay of tiny_model.c: returns (W, b, losses) after `steps` SGD steps."""
    w, b = w.astype(np.float64), b.astype(np.float64)
    z = x.astype(np.float64) * SCALE
    losses = []
    for _ in range(steps):
        logits = w @ z + b
        e = np.exp(logits - logits.max())
        p = e / e.sum()
        losses.append(-np.log(p[label]))
        g = p - np.eye(3)[label]
        w = w - LR * np.outer(g, z)
        b = b - LR * g
    return w, b, losses


def train_three_steps(dev: proto.Device):
    """The flow every end-to-end test runs: load W, input and label, 3 TRAINs, read back."""
    b0 = np.frombuffer(dev.read_buffer(dev.index("b")), dtype=np.float32).copy()
    dev.write_buffer(dev.index("W"), W_START.tobytes())
    dev.write_buffer(dev.index("x"), X.tobytes())
    dev.write_buffer(dev.index("label"), struct.pack("<i", LABEL))
    losses = [dev.train_step() for _ in range(3)]
    w = np.frombuffer(dev.read_buffer(dev.index("W")), dtype=np.float32).reshape(3, 4)
    b = np.frombuffer(dev.read_buffer(dev.index("b")), dtype=np.float32)
    return b0, w, b, losses


def check_trained(b0, w, b, losses):
    w_ref, b_ref, loss_ref = sgd_reference(W_START, b0, X, LABEL, 3)
    np.testing.assert_allclose(w, w_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b, b_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(losses, loss_ref, rtol=1e-5)


# ---- fault injection -------------------------------------------------------------------------


class FlakyTransport:
    """Flips one bit in a share of the frames written and of the reads, seeded."""

    def __init__(self, inner, seed: int, tx_rate: float, rx_rate: float):
        self.inner, self.rng = inner, random.Random(seed)
        self.tx_rate, self.rx_rate = tx_rate, rx_rate
        self.tx_flips = self.rx_flips = 0

    def _flip(self, data: bytes) -> bytes:
        buf = bytearray(data)
        buf[self.rng.randrange(len(buf))] ^= 1 << self.rng.randrange(8)
        return bytes(buf)

    def write(self, data: bytes) -> None:
        if data[:1] == bytes([proto.MAGIC]) and self.rng.random() < self.tx_rate:  # frames, not the zero flush
            data = self._flip(data)
            self.tx_flips += 1
        self.inner.write(data)

    def read(self, n: int, timeout: float) -> bytes:
        data = self.inner.read(n, timeout)
        if data and self.rng.random() < self.rx_rate:
            data = self._flip(data)
            self.rx_flips += 1
        return data

    def close(self) -> None:
        self.inner.close()


class DamageTrainResponses:
    """Corrupts the first response byte read after every fresh TRAIN request."""

    def __init__(self, inner):
        self.inner, self.armed, self.damaged = inner, False, 0
        self.sent = set()

    def write(self, data: bytes) -> None:
        if data[:2] == bytes([proto.MAGIC, proto.TRAIN]) and data not in self.sent:
            self.sent.add(data)
            self.armed = True
        self.inner.write(data)

    def read(self, n: int, timeout: float) -> bytes:
        data = self.inner.read(n, timeout)
        if self.armed and n >= 4 and data:  # the header after the magic: break its CRC
            data = bytes([data[0] ^ 0x40]) + data[1:]
            self.armed = False
            self.damaged += 1
        return data

    def close(self) -> None:
        self.inner.close()


class TruncateFirstTrain:
    """Sends only the first 7 bytes of the first TRAIN frame, as if the line dropped the rest."""

    def __init__(self, inner):
        self.inner, self.done = inner, False

    def write(self, data: bytes) -> None:
        if not self.done and data[:2] == bytes([proto.MAGIC, proto.TRAIN]):
            self.done = True
            data = data[:7]
        self.inner.write(data)

    def read(self, n: int, timeout: float) -> bytes:
        return self.inner.read(n, timeout)

    def close(self) -> None:
        self.inner.close()


# ---- tests -----------------------------------------------------------------------------------


def test_frame_codec_and_crc():
    assert proto.crc32(b"123456789") == 0xCBF43926  # the IEEE check value
    frame = proto.encode_frame(proto.TRAIN, 7)
    assert frame[:5] == bytes([0xEB, 0x06, 0x07, 0x00, 0x00])
    assert struct.unpack("<I", frame[5:])[0] == proto.crc32(frame[1:5])
    with pytest.raises(ValueError):
        proto.encode_frame(proto.WRITE, 1, bytes(proto.MAX_PAYLOAD + 1))


@pytest.mark.parametrize("target", TARGETS)
def test_train_matches_numpy(builds, target):
    with open_device(builds[target], target) as dev:
        hello = dev.hello()
        assert hello["model_hash"] == 0x7E57AB1E and hello["buffers"] == 7
        kinds = {b["name"]: b["kind_name"] for b in dev.buffers()}
        assert kinds == {"x": "input", "logits": "output", "scale": "frozen", "W": "param", "b": "param",
                         "steps": "state", "label": "target"}
        check_trained(*train_three_steps(dev))
        stats = dev.stats()
        assert stats["train_steps"] == 3
        assert struct.unpack("<f", dev.read_buffer(dev.index("steps")))[0] == 3.0
        dev.reset()  # eg_init() clears the optimizer state
        assert struct.unpack("<f", dev.read_buffer(dev.index("steps")))[0] == 0.0
        dev.infer()
        logits = np.frombuffer(dev.read_buffer(dev.index("logits")), dtype=np.float32)
        w = np.frombuffer(dev.read_buffer(dev.index("W")), dtype=np.float32).reshape(3, 4)
        b = np.frombuffer(dev.read_buffer(dev.index("b")), dtype=np.float32)
        np.testing.assert_allclose(logits, w @ (X * SCALE) + b, rtol=1e-5, atol=1e-6)
        if target == "mcu":  # minstret under -icount shift=0, painted stack
            assert stats["instret"] > 0 and dev.last_instret == stats["instret"]
            assert 0 < stats["stack_free"] < 8192
        dev.exit(0)


@pytest.mark.parametrize("target", TARGETS)
def test_device_refuses_bad_requests(builds, target):
    with open_device(builds[target], target) as dev:
        frozen = dev.index("scale")
        with pytest.raises(proto.DeviceError) as err:
            dev.write_buffer(frozen, bytes(4))
        assert err.value.code == proto.ERR_FROZEN
        with pytest.raises(proto.DeviceError) as err:
            dev.write_buffer(99, bytes(4))
        assert err.value.code == proto.ERR_RANGE
        with pytest.raises(proto.DeviceError) as err:
            dev.read_buffer(dev.index("W"), offset=40, nbytes=16)
        assert err.value.code == proto.ERR_RANGE
        with pytest.raises(proto.DeviceError) as err:
            dev.request(0x42)
        assert err.value.code == proto.ERR_UNKNOWN_TYPE
        assert np.frombuffer(dev.read_buffer(frozen), dtype=np.float32).tolist() == SCALE.tolist()
        check_trained(*train_three_steps(dev))  # still serving


@pytest.mark.parametrize("target", TARGETS)
def test_random_corruption_both_directions(builds, target):
    flaky = {}

    def wrap(t):
        flaky["t"] = FlakyTransport(t, seed=1234, tx_rate=0.3, rx_rate=0.15)
        return flaky["t"]

    with open_device(builds[target], target, timeout=0.3, retries=30, wrap=wrap) as dev:
        check_trained(*train_three_steps(dev))
        flaky["t"].tx_rate = flaky["t"].rx_rate = 0.0
        assert dev.stats()["train_steps"] == 3  # never applied twice
    assert flaky["t"].tx_flips > 0 and flaky["t"].rx_flips > 0
    assert dev.link.resends > 0 and dev.link.naks > 0 and dev.link.bad_frames > 0


@pytest.mark.parametrize("target", TARGETS)
def test_damaged_train_response_is_replayed_not_rerun(builds, target):
    damage = {}

    def wrap(t):
        damage["t"] = DamageTrainResponses(t)
        return damage["t"]

    with open_device(builds[target], target, timeout=0.5, wrap=wrap) as dev:
        check_trained(*train_three_steps(dev))
        assert dev.stats()["train_steps"] == 3
    assert damage["t"].damaged == 3 and dev.link.resends >= 3


@pytest.mark.parametrize("target", TARGETS)
def test_truncated_request_times_out_and_is_retried(builds, target):
    with open_device(builds[target], target, timeout=0.3, wrap=TruncateFirstTrain) as dev:
        check_trained(*train_three_steps(dev))
        assert dev.stats()["train_steps"] == 3
    assert dev.link.timeouts >= 1 and dev.link.resends >= 1


def test_sanitized_host_build_runs_clean(builds):
    # runner raises if the process exits non-zero (ASan/UBSan abort with -fno-sanitize-recover)
    with open_device(builds["asan"], "host") as dev:
        check_trained(*train_three_steps(dev))
        with pytest.raises(proto.DeviceError):
            dev.read_buffer(dev.index("x"), offset=17, nbytes=1)
        dev.read_buffer(dev.index("scale"))
        dev.infer()
    with open_device(builds["asan"], "host", timeout=0.2, wrap=TruncateFirstTrain) as dev:
        check_trained(*train_three_steps(dev))


def test_mcu_sizes_and_linker_script(builds):
    info = (builds["mcu"] / "firmware.json").read_text()
    assert '"sram_budget": 262144' in info and '"flash_budget": 1048576' in info
    sections = read_elf_sections(builds["mcu"] / "fw.elf")
    assert sections[".stack"] == 8192 and sections[".text"] > 0
    script = (builds["mcu"] / "link.ld").read_text()
    assert "ASSERT(__sram_used <= 262144" in script and "ASSERT(__flash_used <= 1048576" in script


def test_sram_budget_overflow_raises_with_numbers(tmp_path):
    with pytest.raises(BudgetError) as err:
        build("mcu", tmp_path, SOURCES, [FIXTURES], sram_budget=16 * 1024,
              extra_cflags=["-DEG_FIXTURE_BIG_BYTES=65536"])
    msg = str(err.value)
    assert "SRAM needs" in msg and "budget 16384" in msg and ".bss" in msg and "stack 8192" in msg
    assert not (tmp_path / "fw.elf").exists()


def test_flash_budget_overflow_raises_with_numbers(tmp_path):
    with pytest.raises(BudgetError, match=r"flash needs \d+ bytes > budget 4096 \(.text \d+"):
        build("mcu", tmp_path, SOURCES, [FIXTURES], flash_budget=4096)


@needs_qemu
def test_mcu_store_to_flash_traps_and_reports(tmp_path):
    build("mcu", tmp_path, SOURCES, [FIXTURES], extra_cflags=["-DEG_FIXTURE_STORE_TO_FLASH"])
    with (pytest.raises(proto.ProtocolError, match="QEMU exited with status 3"),
          open_device(tmp_path, "mcu", timeout=0.3, retries=1) as dev):
        assert dev.hello()["buffers"] == 7
        try:
            dev.infer()
        finally:
            assert "EG_TRAP mcause=0x00000007" in bytes(dev.noise).decode(errors="replace")  # store fault
