"""`edgegrad compile --target rpi|jetson` + `edgegrad run` under qemu-aarch64 with the same
--export contract as the host; the threaded NEON kernels give the same trained tensors as one
thread; bad board options fail with one clear error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from edgegrad.errors import EdgegradError
from edgegrad.pipeline import CompileConfig, compile_model, frontend_graph
from egtest import FP32_ATOL, FP32_RTOL, cli, compile_host, train_build
from onnx import numpy_helper
from torch_ref import TorchModel

from models import ZOO

needs_aarch64 = pytest.mark.skipif(not (shutil.which("qemu-aarch64") and shutil.which("aarch64-linux-gnu-gcc")),
                                   reason="qemu-aarch64 / aarch64-linux-gnu-gcc missing: run tools/setup.sh")


@pytest.mark.qemu
@needs_aarch64
@pytest.mark.parametrize("target,board", [("rpi", "pi5"), ("jetson", None)])
def test_cli_compile_run_export(target, board, tmp_path):
    src = ZOO["cnn_fashion"].path
    out = tmp_path / "build"
    p = cli("compile", src, "--target", target, *(["--board", board] if board else []), "--update", "last:2",
            "--optimizer", "momentum", "--lr", "0.02", "-o", out)
    assert p.returncode == 0, p.stderr
    fw = json.loads((out / "firmware.json").read_text())
    assert fw["target"] == target and fw["board"] == (board or "orin")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 1, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 3)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    p = cli("run", out, "--inputs", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--epochs", "2",
            "--export", tmp_path / "trained.onnx")
    assert p.returncode == 0, p.stderr
    losses = [float(ln.split()[-1]) for ln in p.stdout.splitlines() if ln.startswith("epoch")]
    g, updates = frontend_graph(src, CompileConfig(update="last:2"))
    ref_losses, ref = TorchModel(g, list(updates)).train(list(x) * 2, list(y) * 2, lr=0.02, optimizer="momentum")
    np.testing.assert_allclose(losses, ref_losses, rtol=FP32_RTOL, atol=FP32_ATOL)
    trained, orig = onnx.load(tmp_path / "trained.onnx"), onnx.load(src)
    assert [n.op_type for n in trained.graph.node] == [n.op_type for n in orig.graph.node]
    for init in trained.graph.initializer:
        new = numpy_helper.to_array(init)
        old = numpy_helper.to_array(next(i for i in orig.graph.initializer if i.name == init.name))
        if init.name in updates:
            np.testing.assert_allclose(new, ref[init.name], rtol=FP32_RTOL, atol=FP32_ATOL, err_msg=init.name)
        else:  # frozen tensors are bit-identical
            assert new.tobytes() == old.tobytes(), init.name


@pytest.mark.qemu
@needs_aarch64
@pytest.mark.parametrize("name,scheme", [("resnet8", "all")])
def test_threads_equal_one_thread(name, scheme, tmp_path):
    """Each output element is summed in the same order whatever thread computes it: bit-identical."""
    e = ZOO[name]
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal(e.input_shape).astype(np.float32) for _ in range(2)]
    ys = [int(rng.integers(e.num_classes)) for _ in range(2)]
    results = {}
    for threads in (1, 4):
        build = compile_host(e.path, tmp_path / f"t{threads}", update=scheme, lr=0.05, target="rpi", threads=threads)
        assert json.loads((build / "firmware.json").read_text())["threads"] == threads
        results[threads] = train_build(build, xs, ys)
    (l1, p1, o1), (l4, p4, o4) = results[1], results[4]
    assert l1 == l4
    for p in p1:
        assert p1[p].tobytes() == p4[p].tobytes(), p
    assert o1[0].tobytes() == o4[0].tobytes()


@pytest.mark.parametrize("target,kw,msg", [
    ("rpi", {"board": "pi9"}, "unknown board 'pi9' for target rpi (known: pi4, pi5)"),
    ("host", {"board": "pi4"}, "--board/--threads apply to the rpi and jetson targets, not host"),
    ("rpi", {"threads": 0}, "--threads must be at least 1"),
])
def test_bad_board_options(target, kw, msg, tmp_path):
    with pytest.raises(EdgegradError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        compile_model(ZOO["mlp_har"].path, tmp_path / "b", CompileConfig(target=target, quiet=True, **kw))
    assert not (tmp_path / "b").exists()


def test_cli_bad_board_one_line(tmp_path):
    p = cli("compile", ZOO["mlp_har"].path, "--target", "jetson", "--board", "pi4", "-o", tmp_path / "b")
    assert p.returncode != 0
    assert p.stderr.strip().splitlines() == ["edgegrad: error: unknown board 'pi4' for target jetson (known: orin)"]


@pytest.mark.qemu
@needs_aarch64
def test_run_command_override(tmp_path, monkeypatch):
    """EDGEGRAD_AARCH64_RUN (the real-board path: `ssh pi@host ./model_rpi`) replaces the qemu command."""
    e = ZOO["mlp_har"]
    build = compile_host(e.path, tmp_path / "b", update="last:2", target="rpi")
    marker = tmp_path / "used"
    monkeypatch.setenv("EDGEGRAD_AARCH64_RUN",
                       f"sh -c 'touch {marker}; exec qemu-aarch64 -cpu cortex-a72 {build / 'model_rpi'}'")
    rng = np.random.default_rng(0)
    losses, _, _ = train_build(build, [rng.standard_normal(e.input_shape).astype(np.float32)], [1])
    assert marker.exists() and np.isfinite(losses[0])
