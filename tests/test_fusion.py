"""Fusions of passes/fuse_eltwise.py and passes/fuse.py beyond SGD into the implicit weight gradient
(test_fuse.py) and the depthwise ReLU6 (test_fuse_eltwise.py): conv + bias + ReLU/ReLU6 into the
forward store (act), ReluGrad/ClipGrad into the input gradient's store (mask), momentum into the
implicit weight gradient, and a bias gradient (row sums) into its SGD/momentum/Adam update.

Graph level: the fused nodes exist where expected, and not where the pre-activation or the unmasked
gradient has another reader (ResNet's Add fan-out). Builds (host, 3 steps):
- the activation and mask fusions, and the bias update, compute the same expressions as the separate
  kernels: fused vs unfused builds agree bit for bit (losses, every trained element, the output);
- momentum into the weight gradient adds dW's parts to mu * v one by one (as the SGD fusion adds
  them to w): rtol 1e-5, atol 1e-6 on every element after 3 steps;
- the fused Adam build trains like PyTorch (test_zoo_train's fp32 tolerance); test_zoo_train.py
  checks the default (fused) builds of every zoo model against PyTorch for SGD and momentum.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from edgegrad.kernels_wgrad import host_has_avx512
from edgegrad.passes import fuse_eltwise
from edgegrad.pipeline import CompileConfig, compile_model
from egtest import compile_host, export, train_build
from test_zoo_train import assert_trains_like_torch
from torch import nn

from models import ZOO

FAST = ("-O1",)


def _graph(model, tmp_path, **cfg):
    return compile_model(model, tmp_path / "g", CompileConfig(build=False, quiet=True, **cfg)).graph


def test_resnet8_fuses_around_the_residual_adds(tmp_path):
    g = _graph(ZOO["resnet8"].path, tmp_path, update="all")
    prod = g.producers()
    act = [n for n in g.nodes if n.op == "Conv" and n.attrs.get("act")]
    # the stem's ReLU and each block's inner ReLU; the ReLU after each block's Add stays a pass
    assert len(act) == 4 and {n.attrs["act"] for n in act} == {"relu"}
    relus = [n for n in g.nodes if n.op == "Relu"]
    assert len(relus) == 3 and all(prod[n.inputs[0]].op == "Add" for n in relus)
    # the inner ReLUs' gradients come from the next conv's input gradient: masked in its store (implicit,
    # tiled and Winograd kernels have a _mask variant); the others' dy sums two
    # branches (next block + skip): produced by an Add, kept as ReluGrad (the last block's: the pooling's)
    masked = [n for n in g.nodes if n.op == "ConvBwInput" and n.attrs.get("mask")]
    assert all(n.attrs["mask"] == ("relu", 0.0, 0.0) and n.attrs["kernel"] in fuse_eltwise.FUSE_MASK_KERNELS
               for n in masked)
    for n in masked:  # the third input is the ReLU output the fused forward conv writes
        assert prod[n.inputs[2]] in act
    grads = [n for n in g.nodes if n.op == "ReluGrad"]
    assert len(grads) + len(masked) == 7
    kept = sorted(prod[n.inputs[0]].op for n in grads if prod[n.inputs[0]].op != "ConvBwInput")
    assert kept == ["Add", "Add", "Add", "AveragePoolGrad"]
    assert all(prod[n.inputs[0]].attrs["kernel"] not in fuse_eltwise.FUSE_MASK_KERNELS
               for n in grads if prod[n.inputs[0]].op == "ConvBwInput")
    # every conv bias gradient goes straight into its update; the weights into the fused SGD
    assert sum(n.op == "ReduceSumUpdate" for n in g.nodes) == 9 and not any(n.op == "ReduceSumTo" for n in g.nodes)
    assert sum(n.op == "ConvBwWeightSGD" for n in g.nodes) == 9
    g.verify()
    plain = _graph(ZOO["resnet8"].path, tmp_path, update="all", fuse=False)
    assert not any(n.attrs.get("act") or n.attrs.get("mask") for n in plain.nodes)
    assert sum(n.op == "Relu" for n in plain.nodes) == 7 and len(plain.tensors) > len(g.tensors)


def test_mobilenetv2_relu6_and_clipgrad(tmp_path):
    g = _graph(ZOO["mobilenetv2_w035_96"].path, tmp_path, update="all")
    acts = [n for n in g.nodes if n.op == "Conv" and n.attrs.get("act")]
    assert acts and {n.attrs["act"] for n in acts} == {"relu6"}
    clip = [n for n in g.nodes if n.op == "ConvBwInput" and n.attrs.get("mask")]
    assert len(clip) == 34 and all(n.attrs["mask"] == ("clip", 0.0, 6.0) for n in clip)
    # the depthwise layers' input gradients (their dy is the expansion's ReLU6 gradient) too
    assert any(n.attrs["group"] > 1 for n in clip)
    assert sum(n.op == "ClipGrad" for n in g.nodes) == 1
    g.verify()


class TwoReaders(nn.Module):
    """conv1's output feeds its ReLU and the skip Add (pre-activation needed): no act fusion there."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        a = self.c1(x)
        y = torch.relu(self.c2(torch.relu(a))) + a
        return self.fc(y.mean((2, 3)))


def test_keeps_a_preactivation_or_gradient_something_else_reads(tmp_path):
    model = export(TwoReaders(), torch.zeros(1, 3, 8, 8), tmp_path / "two.onnx")
    g = _graph(model, tmp_path, update="all")
    cons = g.consumers()
    convs = [n for n in g.nodes if n.op == "Conv"]
    c1 = next(n for n in convs if n.inputs[0] == g.inputs[0])
    c2 = next(n for n in convs if n is not c1)
    assert "act" not in c1.attrs and c2.attrs.get("act") == "relu"
    relu = next(n for n in g.nodes if n.op == "Relu")
    assert relu.inputs[0] == c1.outputs[0] and len(cons[c1.outputs[0]]) == 2
    # c2's input gradient is masked by relu(a); a's gradient (the sum with the skip) is an Add
    bw = next(n for n in g.nodes if n.op == "ConvBwInput" and n.inputs[1] == c2.inputs[1])
    assert bw.attrs["mask"][0] == "relu" and bw.inputs[2] == relu.outputs[0]
    # a gradient someone asked for keeps its unmasked producer
    plain = _graph(model, tmp_path, update="all", fuse=False)
    pprod = plain.producers()
    grad = next(n for n in plain.nodes if n.op == "ReluGrad" and pprod[n.inputs[0]].op == "ConvBwInput")
    plain.outputs.append(grad.inputs[0])
    out = fuse_eltwise.fuse_eltwise(plain, "host")
    assert grad in out.nodes and not any(n.attrs.get("mask") for n in out.nodes)


def _samples(name, n=3):
    e = ZOO[name]
    rng = np.random.default_rng(0)
    return ([rng.standard_normal(e.input_shape).astype(np.float32) for _ in range(n)],
            [int(rng.integers(e.num_classes)) for _ in range(n)])


def _pair(name, tmp_path, optimizer, lr, monkeypatch=None):
    """(fused, reference) runs; the reference is the fully unfused build, or with monkeypatch the
    build without the act/mask fusions only (fuse.py's SGD fusion on in both: same sums)."""
    xs, ys = _samples(name)
    cfg = {"update": "all", "optimizer": optimizer, "lr": lr, "extra_cflags": FAST}
    fused = compile_host(ZOO[name].path, tmp_path / "f", **cfg)
    if monkeypatch is None:
        ref = compile_host(ZOO[name].path, tmp_path / "u", fuse=False, **cfg)
    else:
        monkeypatch.setattr(fuse_eltwise, "_fuse_act", lambda g, c: set())
        monkeypatch.setattr(fuse_eltwise, "_fuse_mask", lambda g, c: set())
        ref = compile_host(ZOO[name].path, tmp_path / "u", **cfg)
    text, ref_text = (fused / "model.c").read_text(), (ref / "model.c").read_text()
    return fused, train_build(fused, xs, ys), train_build(ref, xs, ys), text, ref_text


@pytest.mark.parametrize("name", ["resnet8", "mobilenetv2_w035_96", "dscnn", "mlp_har"])
def test_act_and_mask_fusions_are_bit_exact(name, tmp_path, monkeypatch):
    # ResNet-8: Winograd input gradients (conv2d_f32_bw_input_winograd_mask); mlp_har: gemm_f32_gemv_{act,mask}
    _, (lf, tf, of), (lu, tu, ou), text, ref_text = _pair(name, tmp_path, "sgd", 0.05, monkeypatch)
    assert "_act(" in text and "_mask(" in text and "_act(" not in ref_text and "_mask(" not in ref_text
    if name == "resnet8":
        assert "conv2d_f32_bw_input_winograd_mask(" in text
    np.testing.assert_array_equal(lf, lu)
    assert tf.keys() == tu.keys() and tf
    for p in tf:
        np.testing.assert_array_equal(tf[p], tu[p], err_msg=p)
    np.testing.assert_array_equal(of[0], ou[0])


@pytest.mark.parametrize("name", ["mlp_har", "cnn_fashion", "resnet8", "dscnn"])
def test_interpreter_runs_the_fused_graph(name, monkeypatch):
    """`edgegrad plan --data` interprets the fused host graph (plan.training_graph): the numpy references apply
    act / mask as the kernels do (ops._fused_epilogue), so its gradients equal the unfused graph's exactly
    (before, a fused conv's ReLU was skipped: cnn_fashion's scores off by 0.66; a masked node did not run)."""
    from edgegrad.autodiff import TrainConfig
    from edgegrad.pipeline import frontend_graph
    from edgegrad.plan import gradient_scores
    e = ZOO[name]
    g0, _ = frontend_graph(e.path, CompileConfig(update="all"))
    xs, ys = _samples(name, 2)
    fused = gradient_scores(g0, list(zip(xs, ys)), TrainConfig())
    monkeypatch.setattr(fuse_eltwise, "_fuse_act", lambda g, c: set())
    monkeypatch.setattr(fuse_eltwise, "_fuse_mask", lambda g, c: set())
    plain = gradient_scores(g0, list(zip(xs, ys)), TrainConfig())
    assert fused.keys() == plain.keys() and fused
    for p in fused:
        np.testing.assert_array_equal(fused[p], plain[p], err_msg=p)


class StridedAfterRelu(nn.Module):
    """A stride-2 conv reading a ReLU: its input gradient runs the implicit phase kernel, masked as the
    phases are zipped into dx rows (conv2d_f32_bw_input_implicit_mask with stride 2)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 24, 3, stride=2, padding=1)
        self.fc = nn.Linear(24, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.c2(torch.relu(self.c1(x)))).mean((2, 3)))


def test_strided_implicit_mask_is_bit_exact(tmp_path, monkeypatch):
    model = export(StridedAfterRelu(), torch.zeros(1, 3, 32, 32), tmp_path / "strided.onnx")
    g = _graph(model, tmp_path, update="all")
    bw = next(n for n in g.nodes if n.op == "ConvBwInput")
    assert bw.attrs["kernel"] == "implicit" and bw.attrs["strides"] == [2, 2] and bw.attrs["mask"][0] == "relu"
    rng = np.random.default_rng(1)
    xs, ys = list(rng.standard_normal((3, 1, 3, 32, 32)).astype(np.float32)), [0, 3, 1]
    cfg = {"update": "all", "optimizer": "sgd", "lr": 0.05, "extra_cflags": FAST}
    fused = compile_host(model, tmp_path / "f", **cfg)
    monkeypatch.setattr(fuse_eltwise, "_fuse_mask", lambda g, c: set())
    ref = compile_host(model, tmp_path / "u", **cfg)
    assert "conv2d_f32_bw_input_implicit_mask(" in (fused / "model.c").read_text()
    assert "_mask(" not in (ref / "model.c").read_text()
    (lf, tf, of), (lu, tu, ou) = train_build(fused, xs, ys), train_build(ref, xs, ys)
    np.testing.assert_array_equal(lf, lu)
    assert tf.keys() == tu.keys() and tf
    for p in tf:
        np.testing.assert_array_equal(tf[p], tu[p], err_msg=p)
    np.testing.assert_array_equal(of[0], ou[0])


@pytest.mark.parametrize("name,optimizer,exact", [("resnet8", "momentum", False), ("cnn_fashion", "adam", True)])
def test_optimizer_fusions_train_like_unfused(name, optimizer, exact, tmp_path):
    lr = {"momentum": 0.02, "adam": 0.001}[optimizer]
    build, (lf, tf, _), (lu, tu, _), text, ref_text = _pair(name, tmp_path, optimizer, lr)
    assert f"reduce_rows_{optimizer}_f32(" in text and "reduce_sum_f32(" not in text
    assert "reduce_rows_" not in ref_text
    assert ("conv2d_f32_bw_weight_momentum_implicit(" in text) == (optimizer == "momentum")
    # the Winograd weight gradient (AVX-512 hosts) takes momentum too: ResNet-8's 3x3 stride-1 layers
    assert ("conv2d_f32_bw_weight_momentum_winograd(" in text) == (optimizer == "momentum" and host_has_avx512())
    fused = json.loads((build / "build.json").read_text())["fused"]  # what `edgegrad inspect BUILD` prints
    assert fused[f"bias_grad+{optimizer}"] > 0 and fused["conv+relu"] > 0
    tol = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(lf, lu, **tol)
    assert tf.keys() == tu.keys() and tf
    for p in tf:
        np.testing.assert_allclose(tf[p], tu[p], err_msg=p, **tol)
    assert_trains_like_torch(name, build, "all", optimizer, lr)
