"""Persistent training state on the QEMU board: checkpoints in flash survive power cuts.

One logical training run of mlp_har (update last:2, momentum: parameters *and* optimizer state
are checkpointed) is cut by SIGKILLing QEMU at 20 seeded random points: during a step, during
the checkpoint that follows a step, or while a sample is being uploaded. After every restart
the board must have restored the newest *completed* checkpoint: at least the last one the host
saw acknowledged, never a step it did not send, and its parameters and optimizer state must be
bit-identical to an uninterrupted run of the same firmware (a second board) at that step.
NaN/Inf parameters are never written.
"""

from __future__ import annotations

import random
import shutil
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import flash
import proto
from edgegrad.pipeline import CompileConfig, compile_model

pytestmark = pytest.mark.qemu
EVERY = 3
TRIALS = 20


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    res = compile_model(REPO / "models" / "onnx" / "mlp_har.onnx", root / "build",
                        CompileConfig(target="mcu", update="last:2", optimizer="momentum", lr=0.05, quiet=True))
    boot = flash.build_bootloader(root / "boot")
    with flash.open_board(root / "a", boot_elf=boot) as (_board, dev):
        flash.flash_image(dev, flash.elf_image(res.binary), flash.model_hash(res.out_dir), progress=False)
    shutil.copy(root / "a" / "pflash.bin", root / "pristine.bin")  # the image, no checkpoint yet
    (root / "ref").mkdir()
    shutil.copy(root / "pristine.bin", root / "ref" / "pflash.bin")
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((200, 1, 6, 128)).astype(np.float32)
    ys = rng.integers(0, 6, 200).astype(np.int32)
    return {"root": root, "boot": boot, "xs": xs, "ys": ys, "build": res.out_dir}


def state_bytes(dev) -> bytes:
    """Every PARAM and STATE buffer, in buffer order: what a checkpoint holds."""
    return b"".join(dev.read_buffer(b["index"]) for b in dev.buffers() if b["kind_name"] in ("param", "state"))


def load_sample(dev, setup, step: int) -> None:
    """Step k (1-based) of the run trains on sample k-1."""
    dev.write_buffer(dev.index("input"), setup["xs"][step - 1].tobytes())
    dev.write_buffer(dev.index("target"), struct.pack("<i", int(setup["ys"][step - 1])))


class Reference:
    """An uninterrupted run of the same firmware on a second board; state after each step."""

    def __init__(self, setup):
        self.setup = setup
        self.cm = flash.open_board(setup["root"] / "ref", boot_elf=setup["boot"])
        _, self.dev = self.cm.__enter__()
        flash.attach(self.dev, "app")
        flash.set_checkpoint_every(self.dev, 1)  # never changes the state; times a step + checkpoint
        self.step = 0
        self.states = {0: state_bytes(self.dev)}
        self.step_seconds = []

    def at(self, step: int) -> bytes:
        while self.step < step:
            self.step += 1
            load_sample(self.dev, self.setup, self.step)
            t0 = time.monotonic()
            assert np.isfinite(self.dev.train_step())
            self.step_seconds.append(time.monotonic() - t0)
            if self.step % EVERY == 0:
                self.states[self.step] = state_bytes(self.dev)
        return self.states[step]

    def close(self):
        self.cm.__exit__(None, None, None)


def test_power_cuts_resume_from_the_last_good_checkpoint(setup):
    rng = random.Random(7)
    ref = Reference(setup)
    acked = sent = 0  # newest checkpoint step the host saw acknowledged; steps sent to the device
    restored_from, torn = [], 0
    ref.at(EVERY)
    ckpt_time = min(ref.step_seconds)  # one TRAIN that writes a checkpoint: the window to aim the cuts at
    flash.set_checkpoint_every(ref.dev, 0)
    try:
        for trial in range(TRIALS):
            with flash.open_board(setup["root"] / "a", boot_elf=setup["boot"]) as (board, dev):
                info = flash.attach(dev, "app")
                status = flash.checkpoint_status(dev)
                s = status["restored_steps"] or 0
                if status["restored_steps"] is None:
                    assert acked == 0, f"trial {trial}: no checkpoint restored, but step {acked} was acknowledged"
                assert acked <= s <= sent and s % EVERY == 0, (trial, acked, s, sent)
                assert state_bytes(dev) == ref.at(s), f"trial {trial}: restored state differs from step {s}"
                restored_from.append(s)
                torn += sum(r["state"] == "invalid" for r in info["regions"][2:])
                flash.set_checkpoint_every(dev, EVERY)
                # ... and s + 1 is not a multiple of EVERY, so the next trial must find s + 1 (see above)
                n_more = rng.randint(1, 2 * EVERY)
                for k in range(s + 1, s + n_more):
                    load_sample(dev, setup, k)
                    dev.train_step()
                    sent = k
                    if k % EVERY == 0:
                        acked = k  # TRAIN answers after the checkpoint it triggers is written
                last = s + n_more
                mode = rng.choice(["train", "train", "upload"])
                if mode == "upload":  # cut while the sample is on the wire
                    killer = threading.Timer(rng.uniform(0.0, 0.1), board.kill)
                    killer.start()
                    try:
                        load_sample(dev, setup, last)
                        frame = proto.encode_frame(proto.TRAIN, dev.seq + 1)
                        dev.transport.write(frame)
                        sent = last
                    except (proto.ProtocolError, OSError):
                        pass
                    killer.join()
                else:  # cut during the step and the checkpoint it may trigger
                    load_sample(dev, setup, last)
                    dev.transport.write(proto.encode_frame(proto.TRAIN, dev.seq + 1))
                    sent = last
                    time.sleep(rng.uniform(0.0, 1.5 * ckpt_time))
                    board.kill()
    finally:
        ref.close()
    print(f"restored steps {restored_from}; torn checkpoint slots seen {torn}; step+checkpoint {ckpt_time:.3f} s")
    assert len(set(restored_from)) > 3  # the run did move on between cuts


def test_nan_parameters_are_never_checkpointed(setup, tmp_path):
    shutil.copy(setup["root"] / "pristine.bin", tmp_path / "pflash.bin")
    with flash.open_board(tmp_path, boot_elf=setup["boot"]) as (_board, dev):
        flash.attach(dev, "app")
        good = flash.checkpoint_status(dev, save=True)
        assert good["last_seq"] >= 1
        saved = state_bytes(dev)
        params = [b for b in dev.buffers() if b["kind_name"] == "param"]
        w = bytearray(dev.read_buffer(params[0]["index"]))
        w[0:4] = struct.pack("<f", float("nan"))
        dev.write_buffer(params[0]["index"], bytes(w))
        with pytest.raises(proto.DeviceError, match="NaN/Inf"):
            flash.checkpoint_status(dev, save=True)
        flash.set_checkpoint_every(dev, 1)
        load_sample(dev, setup, 1)
        dev.train_step()  # the automatic checkpoint after this step is refused too
        st = flash.checkpoint_status(dev)
        assert st["refused_nonfinite"] == 2 and st["last_seq"] == good["last_seq"]
    with flash.open_board(tmp_path, boot_elf=setup["boot"]) as (_board, dev):
        flash.attach(dev, "app")
        assert flash.checkpoint_status(dev)["restored_steps"] == 0
        assert state_bytes(dev) == saved


def test_monitor_and_pull_cli(setup, tmp_path, capsys):
    """edgegrad monitor / pull against a running board (wait=off: it boots by itself, like hardware)."""
    import onnx
    from edgegrad.cli import main
    from edgegrad.run import Session, load_build
    from onnx import numpy_helper
    shutil.copy(setup["root"] / "pristine.bin", tmp_path / "pflash.bin")
    board = flash.Board(tmp_path, boot_elf=setup["boot"], wait=False)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                ctx = flash.connect(board.url)
                dev = ctx.__enter__()
                break
            except flash.FlashError:
                assert time.monotonic() < deadline, "board did not open its serial port"
                time.sleep(0.1)
        try:
            flash.attach(dev, "app")
            s = Session(dev, load_build(setup["build"]))
            losses = []
            for k in range(1, 5):
                load_sample(dev, setup, k)
                losses.append(dev.train_step())
                dev.infer()
                flash.score(dev, int(setup["ys"][k - 1]))
            trained = s.trained()
        finally:
            ctx.__exit__(None, None, None)
        assert main(["monitor", "--port", board.url, "--count", "1"]) == 0
        out = capsys.readouterr().out
        assert f"step      4  loss {losses[-1]:.4f} (mean of last 4: {np.mean(np.float32(losses)):.4f})" in out, out
        assert "accuracy (last 4 scored)" in out
        export = tmp_path / "pulled.onnx"
        assert main(["pull", "--port", board.url, "--export", str(export), "--search", str(setup["root"])]) == 0
        pulled = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(export)).graph.initializer}
        for name, value in trained.items():
            assert np.array_equal(pulled[name].reshape(value.shape), value), name
    finally:
        board.kill()


@pytest.mark.parametrize("kind", ["adam", "int8"])
def test_checkpoint_round_trip_adam_and_int8(setup, tmp_path, kind):
    """Adam's bias-correction powers are optimizer state (a checkpoint carries them, so a resumed run
    continues bit-exactly), and int8 weights are checkpointed whatever their bit patterns: the NaN/Inf
    guard only scans float32 buffers (eg_buffer_t.dtype)."""
    if kind == "adam":
        model, cfg = REPO / "models" / "onnx" / "mlp_har.onnx", CompileConfig(
            target="mcu", update="last:2", optimizer="adam", lr=0.01, quiet=True)
    else:
        from edgegrad.quantize import quantize_model
        rng = np.random.default_rng(1)
        calib = tmp_path / "calib.npz"
        np.savez(calib, rng.standard_normal((16, 1, 6, 128)).astype(np.float32))
        model = tmp_path / "q.onnx"
        quantize_model(REPO / "models" / "onnx" / "mlp_har.onnx", calib, model)
        cfg = CompileConfig(target="mcu", update="last:2", optimizer="momentum", lr=0.01, dtype="int8",
                            int8_master="none", quiet=True)
    xs, ys = setup["xs"], setup["ys"]
    res = compile_model(model, tmp_path / "build", cfg)
    board_dir = tmp_path / "board"
    board_dir.mkdir()
    shutil.copy(setup["root"] / "pristine.bin", board_dir / "pflash.bin")

    from edgegrad.run import Session, load_build
    info = load_build(res.out_dir)

    def step(dev, k):  # Session quantizes the input for the int8 build, as `edgegrad run` does
        return Session(dev, info).train(xs[k], ys[k])

    with flash.open_board(board_dir, boot_elf=setup["boot"]) as (_board, dev):
        flash.flash_image(dev, flash.elf_image(res.binary), flash.model_hash(res.out_dir), progress=False)
        flash.attach(dev, "app")
        names = [b["name"] for b in dev.buffers() if b["kind_name"] == "state"]
        if kind == "adam":
            assert "adam.bias_correction" in names
        flash.set_checkpoint_every(dev, 3)
        for k in range(3):
            step(dev, k)
        saved = state_bytes(dev)
        next_loss = step(dev, 3)  # not checkpointed: lost at the power cut
        after = state_bytes(dev)
    with flash.open_board(board_dir, boot_elf=setup["boot"]) as (_board, dev):
        flash.attach(dev, "app")
        assert flash.checkpoint_status(dev)["restored_steps"] == 3
        assert state_bytes(dev) == saved
        assert step(dev, 3) == next_loss and state_bytes(dev) == after  # resumes bit-exactly
