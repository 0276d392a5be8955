"""Named tests for the failure modes of sparse-update engines (TTE's among them) that edgegrad must
not share. Each small model is exported from torch, compiled, trained for 3 batch-1 SGD steps by
the generated C, and compared with PyTorch (tests/torch_ref.py: autograd + torch.optim on the same
graph, the frozen share of a sub-tensor update masked out of the gradient) on every element of
every trained tensor: fp32 rtol 1e-4 / atol 1e-5 (egtest). Besides matching, each case checks that
the selected slice really moved and that everything outside it is bit-identical to the input model.

- fan-out: a tensor read by two consumers (residual add; squeeze-excite's gate and product) gets
  the gradient of both;
- depthwise weights are trainable, whole and as a leading share of their channels;
- any class count (3, 37) and odd feature-map sizes;
- the sub-tensor forms (a number: output channels; {"in": f}: input channels) train the same
  tensors on the emulated mcu as on the host.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from edgegrad.inspect import saved_activations
from edgegrad.pipeline import CompileConfig, compile_model, frontend_graph
from egtest import FP32_ATOL, FP32_RTOL, compile_host, export, train_build
from torch import nn
from torch_ref import TorchModel

LR = 0.05


class Residual(nn.Module):
    """h = relu(c0(x)) feeds both c1 and the residual add: dh = (path through c1) + dy_add."""

    def __init__(self, n_cls: int = 10):
        super().__init__()
        self.c0 = nn.Conv2d(3, 8, 3, padding=1)
        self.c1 = nn.Conv2d(8, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, n_cls)

    def forward(self, x):
        h = F.relu(self.c0(x))
        y = F.relu(self.c2(F.relu(self.c1(h))) + h)
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


class SqueezeExcite(nn.Module):
    """h feeds the gate (pool -> 1x1 -> relu -> 1x1 -> sigmoid) and the product h * gate."""

    def __init__(self, n_cls: int = 10):
        super().__init__()
        self.c0 = nn.Conv2d(3, 8, 3, padding=1)
        self.se1 = nn.Conv2d(8, 4, 1)
        self.se2 = nn.Conv2d(4, 8, 1)
        self.fc = nn.Linear(8, n_cls)

    def forward(self, x):
        h = F.relu(self.c0(x))
        s = torch.sigmoid(self.se2(F.relu(self.se1(F.adaptive_avg_pool2d(h, 1)))))
        return self.fc(F.adaptive_avg_pool2d(h * s, 1).flatten(1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand + ReLU6, 3x3 depthwise + ReLU6, 1x1 project, residual add."""

    def __init__(self, n_cls: int = 10, stride: int = 1):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.pw1 = nn.Conv2d(4, 16, 1)
        self.dw = nn.Conv2d(16, 16, 3, stride=stride, padding=1, groups=16)
        self.pw2 = nn.Conv2d(16, 4, 1)
        self.fc = nn.Linear(4, n_cls)
        self.stride = stride

    def forward(self, x):
        h = F.relu6(self.stem(x))
        y = self.pw2(F.relu6(self.dw(F.relu6(self.pw1(h)))))
        if self.stride == 1:
            y = y + h
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


def _scheme(tmp_path: Path, scheme) -> str:
    if isinstance(scheme, str):
        return scheme
    p = tmp_path / "scheme.json"
    p.write_text(json.dumps(scheme))
    return str(p)


def _model(tmp_path: Path, module: nn.Module, shape: tuple[int, ...]) -> Path:
    torch.manual_seed(0)
    for p in module.parameters():  # larger than default init so every path carries gradient
        nn.init.normal_(p, 0.0, 0.4)
    return export(module, torch.zeros(shape), tmp_path / "m.onnx")


def _train_and_check(tmp_path: Path, module: nn.Module, shape, scheme, n_cls: int, target: str = "host",
                     **cfg) -> dict[str, np.ndarray]:
    model = _model(tmp_path, module, shape)
    update = _scheme(tmp_path, scheme)
    build = compile_host(model, tmp_path / f"b_{target}", update=update, lr=LR, target=target, **cfg)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
    ys = [int(rng.integers(n_cls)) for _ in range(3)]
    losses, trained, _ = train_build(build, xs, ys)
    g, updates = frontend_graph(model, CompileConfig(update=update))
    assert updates, "the scheme selects nothing"
    slices = {p: (u.axis, u.rows(g.tensors[p].shape)) for p, u in updates.items()}
    ref_losses, ref = TorchModel(g, list(updates)).train(xs, ys, lr=LR, slices=slices)
    np.testing.assert_allclose(losses, ref_losses, rtol=FP32_RTOL, atol=FP32_ATOL)
    for p, (axis, k) in slices.items():
        np.testing.assert_allclose(trained[p], ref[p], rtol=FP32_RTOL, atol=FP32_ATOL, err_msg=p)
        init = g.tensors[p].data
        sel = [slice(None)] * init.ndim
        rest = [slice(None)] * init.ndim
        if init.ndim:
            sel[axis], rest[axis] = slice(0, k), slice(k, None)
        assert np.any(trained[p][tuple(sel)] != init[tuple(sel)]), f"{p}: the selected slice did not move"
        np.testing.assert_array_equal(trained[p][tuple(rest)], init[tuple(rest)], err_msg=f"{p}: frozen part moved")
    return trained


# ---- fan-out -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", [{"c0.weight": 1.0, "c0.bias": 1.0},
                                    {"c0.weight": 0.5, "c1.weight": {"in": 0.25}, "fc.bias": 1.0},
                                    "all"])
def test_fanout_residual_add(tmp_path, scheme):
    _train_and_check(tmp_path, Residual(), (1, 3, 6, 6), scheme, 10)


@pytest.mark.parametrize("scheme", [{"c0.weight": 1.0}, {"c0.bias": 1.0, "se1.weight": {"in": 0.5}}, "all"])
def test_fanout_squeeze_excite(tmp_path, scheme):
    _train_and_check(tmp_path, SqueezeExcite(), (1, 3, 5, 5), scheme, 10)


# ---- depthwise -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", [{"dw.weight": 1.0, "dw.bias": 1.0},
                                    {"dw.weight": 0.25},
                                    {"pw1.weight": {"in": 0.5}, "dw.weight": 0.5, "pw2.weight": {"in": 0.25}},
                                    "bias:all"])
def test_depthwise_trainable(tmp_path, scheme):
    _train_and_check(tmp_path, InvertedResidual(), (1, 1, 7, 7), scheme, 10)


def test_clip_backward_keeps_no_clip_input(tmp_path):
    """ReLU6's gradient mask is read from its output: no Clip input is kept for the backward."""
    model = _model(tmp_path, InvertedResidual(), (1, 1, 7, 7))
    # unfused: on host every ReLU6 here folds into its conv (test_fusion.py), leaving no Clip node
    res = compile_model(model, tmp_path / "b", CompileConfig(update="all", build=False, quiet=True, fuse=False))
    g = res.graph
    clip_inputs = {n.inputs[0] for n in g.nodes[:g.meta["n_forward"]] if n.op == "Clip"}
    assert clip_inputs and not clip_inputs & set(saved_activations(g))


# ---- class counts and feature-map sizes ----------------------------------------------------------


@pytest.mark.parametrize("n_cls,shape,stride", [(3, (1, 1, 13, 11), 2), (37, (1, 1, 9, 5), 1)])
def test_any_class_count_and_map_size(tmp_path, n_cls, shape, stride):
    _train_and_check(tmp_path, InvertedResidual(n_cls, stride), shape,
                     {"dw.weight": 0.5, "pw2.weight": {"in": 0.5}, "fc.weight": 1.0, "fc.bias": 1.0}, n_cls)


# ---- host and mcu train the same tensors ---------------------------------------------------------


@pytest.mark.qemu
def test_sub_tensor_forms_host_equals_mcu(tmp_path):
    scheme = {"pw1.weight": {"in": 0.5}, "dw.weight": 0.25, "pw2.weight": 0.5, "fc.weight": {"in": 0.5},
              "fc.bias": 1.0}
    host = _train_and_check(tmp_path, InvertedResidual(), (1, 1, 7, 7), scheme, 10)
    mcu = _train_and_check(tmp_path, InvertedResidual(), (1, 1, 7, 7), scheme, 10, target="mcu")
    for p in host:  # reference kernels on the mcu, tiled ones on the host: rounding only
        np.testing.assert_allclose(mcu[p], host[p], rtol=FP32_RTOL, atol=FP32_ATOL, err_msg=p)
