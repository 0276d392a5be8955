"""Bad input gets one clear line and a non-zero exit, never a traceback; nothing half-written."""

from __future__ import annotations

import json
import subprocess

import egtest
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from models import ZOO

CNN = ZOO["cnn_fashion"].path


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return egtest.cli(*args, cwd=cwd, timeout=300)


def one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode != 0, p.stdout
    assert "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("edgegrad: error:")]
    assert len(lines) == 1, p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_truncated_file(tmp_path):
    bad = tmp_path / "trunc.onnx"
    bad.write_bytes(CNN.read_bytes()[:3000])
    one_line_error(cli("compile", bad, "-o", tmp_path / "out"), "trunc.onnx")
    assert not (tmp_path / "out").exists()


def test_garbage_and_missing_file(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x00\xff" * 100)
    one_line_error(cli("compile", bad, "-o", tmp_path / "o1"), "garbage.onnx")
    one_line_error(cli("compile", tmp_path / "nope.onnx"), "no such file")


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_unknown_ops_are_all_listed(tmp_path):
    w = onnx.numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    m = _model([helper.make_node("MatMul", ["x", "w"], ["a"], name="mm"),
                helper.make_node("Erf", ["a"], ["b"], name="my_erf"),
                helper.make_node("Celu", ["b"], ["y"], name="my_celu")],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    p = tmp_path / "u.onnx"
    onnx.save(m, p)
    one_line_error(cli("compile", p, "-o", tmp_path / "o"), "Erf (my_erf)", "Celu (my_celu)")


def test_dynamic_shape_that_cannot_be_fixed(tmp_path):
    w = onnx.numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 4])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "T", 4])], [w])
    p = tmp_path / "dyn.onnx"
    onnx.save(m, p)
    one_line_error(cli("compile", p, "-o", tmp_path / "o"), "'T'", "--input-shape")
    ok = cli("compile", p, "-o", tmp_path / "o2", "--input-shape", "x=1,3,4", "--loss", "mse")
    assert ok.returncode == 0, ok.stderr


def test_unsupported_opset(tmp_path):
    m = onnx.load(CNN)
    m.opset_import[0].version = 9
    p = tmp_path / "old.onnx"
    onnx.save(m, p)
    one_line_error(cli("compile", p, "-o", tmp_path / "o"), "opset 9")


def test_bad_schemes(tmp_path):
    one_line_error(cli("compile", CNN, "--update", "lats:2", "-o", tmp_path / "o"), "lats:2")
    s = tmp_path / "s.json"
    s.write_text(json.dumps({"no.such.tensor": 1.0}))
    one_line_error(cli("compile", CNN, "--update", s, "-o", tmp_path / "o"), "no.such.tensor")
    s.write_text(json.dumps({"fc.weight": 1.5}))
    one_line_error(cli("compile", CNN, "--update", s, "-o", tmp_path / "o"))
    one_line_error(cli("compile", CNN, "--update", "none", "-o", tmp_path / "o"), "trains nothing")


def test_over_budget_fails_at_compile_time_with_numbers(tmp_path):
    p = cli("compile", ZOO["mobilenetv2_w035_128"].path, "--target", "mcu", "-o", tmp_path / "o")
    line = one_line_error(p, "SRAM needs", "budget 256.0 KiB", "arena", "trainable params", "FLASH needs",
                          "--update")
    assert "MiB" in line
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def cnn_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn") / "b"
    p = cli("compile", CNN, "--update", "last:1", "-o", out)
    assert p.returncode == 0, p.stderr
    return out


def test_wrong_label_range(cnn_build, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 1, 28, 28), np.float32))
    np.save(tmp_path / "y.npy", np.array([3, 12]))
    one_line_error(cli("run", cnn_build, "--inputs", tmp_path / "x.npy", "--labels", tmp_path / "y.npy"),
                   "label 12", "[0, 10)")


def test_wrong_sample_shape_and_counts(cnn_build, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 28, 28), np.float32))
    np.save(tmp_path / "y.npy", np.array([3, 1]))
    one_line_error(cli("run", cnn_build, "--inputs", tmp_path / "x.npy", "--labels", tmp_path / "y.npy"),
                   "[1, 1, 28, 28]")
    np.save(tmp_path / "x.npy", np.zeros((3, 1, 28, 28), np.float32))
    one_line_error(cli("run", cnn_build, "--inputs", tmp_path / "x.npy", "--labels", tmp_path / "y.npy"),
                   "2 labels for 3 samples")


def test_run_on_a_folder_that_is_not_a_build(tmp_path):
    one_line_error(cli("run", tmp_path, "--inputs", "x.npy", "--labels", "y.npy"), "not an edgegrad build")
