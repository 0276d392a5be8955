"""The user-facing contracts: compile -> run -> export on the host through the CLI; a sanitized
build trains cleanly; the exported model is the input model with trained values only."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from edgegrad.pipeline import CompileConfig, frontend_graph
from egtest import FP32_ATOL, FP32_RTOL, cli, compile_host, train_build
from onnx import numpy_helper
from torch_ref import TorchModel

from models import ZOO


def test_compile_run_export_roundtrip(tmp_path):
    src = ZOO["cnn_fashion"].path
    out = tmp_path / "build"
    p = cli("compile", src, "--update", "last:2", "--optimizer", "momentum", "--lr", "0.02", "-o", out)
    assert p.returncode == 0, p.stderr
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 1, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    p = cli("run", out, "--inputs", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--epochs", "2",
            "--export", tmp_path / "trained.onnx")
    assert p.returncode == 0, p.stderr
    step_lines = [ln for ln in p.stdout.splitlines() if ln.startswith("epoch")]
    assert len(step_lines) == 8 and "loss" in step_lines[0]
    trained, orig = onnx.load(tmp_path / "trained.onnx"), onnx.load(src)
    # same graph, same names
    assert [n.op_type for n in trained.graph.node] == [n.op_type for n in orig.graph.node]
    assert [i.name for i in trained.graph.initializer] == [i.name for i in orig.graph.initializer]
    g, updates = frontend_graph(src, CompileConfig(update="last:2"))
    ref_losses, ref = TorchModel(g, list(updates)).train(list(x) * 2, list(y) * 2, lr=0.02, optimizer="momentum")
    for init in trained.graph.initializer:
        new = numpy_helper.to_array(init)
        old = numpy_helper.to_array(next(i for i in orig.graph.initializer if i.name == init.name))
        if init.name in updates:
            np.testing.assert_allclose(new, ref[init.name], rtol=FP32_RTOL, atol=FP32_ATOL)
            assert not np.array_equal(new, old)
        else:  # frozen tensors are bit-identical
            assert new.tobytes() == old.tobytes(), init.name
    # the exported model runs in onnxruntime
    s = ort.InferenceSession(str(tmp_path / "trained.onnx"))
    assert s.run(None, {"input": x[0]})[0].shape == (1, 10)
    losses = [float(ln.split()[-1]) for ln in step_lines]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4, atol=1e-5)


def test_sanitized_build_trains_cleanly(tmp_path):
    """AddressSanitizer + UBSan over every kernel the zoo uses, forward, backward and update."""
    for name, scheme in [("resnet8_bn", "all"), ("dscnn_pad", "weights:last:2@0.5"), ("mlp_har", "all")]:
        e = ZOO[name]
        build = compile_host(e.path, tmp_path / name, update=scheme, optimizer="adam", lr=0.001, sanitize=True)
        rng = np.random.default_rng(0)
        xs = [rng.standard_normal(e.input_shape).astype(np.float32) for _ in range(2)]
        losses, _, _ = train_build(build, xs, [1, 2])  # the runner fails if the process reports an error
        assert all(np.isfinite(losses))


def test_adam_matches_torch(tmp_path):
    e = ZOO["mlp_har"]
    build = compile_host(e.path, tmp_path / "b", update="all", optimizer="adam", lr=0.001)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(e.input_shape).astype(np.float32) for _ in range(3)]
    ys = [0, 3, 5]
    losses, trained, _ = train_build(build, xs, ys)
    g, updates = frontend_graph(e.path, CompileConfig(update="all"))
    ref_losses, ref = TorchModel(g, list(updates)).train(xs, ys, lr=0.001, optimizer="adam")
    np.testing.assert_allclose(losses, ref_losses, rtol=FP32_RTOL, atol=FP32_ATOL)
    for p in updates:
        np.testing.assert_allclose(trained[p], ref[p], rtol=FP32_RTOL, atol=FP32_ATOL, err_msg=p)


def test_inspect_model_and_build(tmp_path):
    p = cli("inspect", ZOO["resnet8"].path, "--update", "last:2")
    assert p.returncode == 0, p.stderr
    assert "MACs" in p.stdout and "kept for backward" in p.stdout and "lower bound" in p.stdout
    out = tmp_path / "b"
    assert cli("compile", ZOO["dscnn"].path, "-o", out, "--no-build").returncode == 0
    p = cli("inspect", out)
    assert p.returncode == 0 and "arena" in p.stdout, p.stderr


def test_help_has_examples():
    for sub in ("compile", "run", "inspect"):
        p = cli(sub, "--help")
        assert p.returncode == 0 and "example" in p.stdout
