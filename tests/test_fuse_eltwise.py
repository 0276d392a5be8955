"""passes/fuse_eltwise.py: a depthwise convolution and the ReLU6 (Clip) after it become one kernel
call on the host. The fused build must train exactly as the unfused one: same losses, same
trained tensors, same inference output, every element bit for bit (the channel-block depthwise
kernel computes the same sums either way; the clamp moves from a separate pass into its epilogue),
for whole-tensor and sub-tensor updates of the depthwise layer, stride 1 and 2. The zoo-shaped
InvertedResidual cases of test_sparse_cases.py check the fused build against PyTorch too.
Also here: select_kernels' choice of the gemv variant for batch-1 linear layers (host).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from edgegrad import pipeline
from edgegrad.pipeline import CompileConfig, compile_model
from egtest import compile_host, export, train_build
from torch import nn


class DwBlock(nn.Module):
    """1x1 expand + ReLU6, 3x3 depthwise (24 channels: a full and a partial channel block) + ReLU6,
    1x1 project, pool, linear."""

    def __init__(self, stride: int):
        super().__init__()
        self.pw1 = nn.Conv2d(2, 24, 1)
        self.dw = nn.Conv2d(24, 24, 3, stride=stride, padding=1, groups=24)
        self.pw2 = nn.Conv2d(24, 6, 1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        y = self.pw2(F.relu6(self.dw(F.relu6(self.pw1(x)))))
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


def _model(tmp_path, stride: int):
    torch.manual_seed(0)
    m = DwBlock(stride)
    for p in m.parameters():  # large enough that many values land on both sides of 0 and 6
        nn.init.normal_(p, 0.0, 1.5)
    return export(m, torch.zeros(1, 2, 9, 9), tmp_path / "dw.onnx")


@pytest.mark.parametrize("stride,update", [(1, "all"), (2, "all"), (1, "dw.weight,dw.bias")])
def test_fused_trains_exactly_as_unfused(tmp_path, monkeypatch, stride, update):
    model = _model(tmp_path, stride)
    if update != "all":
        (tmp_path / "s.json").write_text('{"dw.weight": 0.5, "dw.bias": 1.0}')
        update = str(tmp_path / "s.json")
    fused = compile_host(model, tmp_path / "fused", update=update, lr=0.05)
    text = (fused / "model.c").read_text()
    # eg_infer and eg_train_step each: one fused call, and pw1's ReLU6 in pw1's store (act 2)
    assert text.count("depthwise2d_f32_fw_clip(") == 2 and text.count(" clip_f32_fw(") == 0
    assert text.count("conv2d_f32_fw_tiled_act(") == 2
    monkeypatch.setattr(pipeline, "fuse_eltwise", lambda g, target: g)
    plain = compile_host(model, tmp_path / "plain", update=update, lr=0.05)
    assert "depthwise2d_f32_fw_clip(" not in (plain / "model.c").read_text()
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((1, 2, 9, 9)).astype(np.float32) for _ in range(3)]
    ys = [int(rng.integers(5)) for _ in range(3)]
    lf, tf, of = train_build(fused, xs, ys)
    lp, tp, op = train_build(plain, xs, ys)
    np.testing.assert_array_equal(lf, lp)
    assert tf.keys() == tp.keys() and "dw.weight" in tf
    for k in tf:
        np.testing.assert_array_equal(tf[k], tp[k], err_msg=k)
    np.testing.assert_array_equal(of[0], op[0])


def test_fusion_rules(tmp_path):
    """Host only; the clip bounds travel; the pre-clip tensor is gone; n_forward counts one node less."""
    model = _model(tmp_path, 1)
    host = compile_model(model, tmp_path / "h", CompileConfig(update="all", build=False, quiet=True)).graph
    fused = [n for n in host.nodes if "clip" in n.attrs]
    assert [n.attrs["kernel"] for n in fused] == ["dwclip"] and fused[0].attrs["clip"] == (0.0, 6.0)
    assert sum(n.op == "Clip" for n in host.nodes) == 0  # pw1's ReLU6: act "relu6" (test_fusion.py)
    assert [n.attrs.get("act") for n in host.nodes if n.op == "Conv" and "act" in n.attrs] == ["relu6"]
    assert host.meta["n_forward"] == sum(1 for n in host.nodes[:host.meta["n_forward"]])
    host.verify()
    for target in ("mcu", "rpi"):
        g = compile_model(model, tmp_path / target, CompileConfig(target=target, update="all", build=False,
                                                                  quiet=True)).graph
        # (the mcu build also recomputes a ReLU6 in the backward: 3 Clips there)
        assert not any("clip" in n.attrs for n in g.nodes) and sum(n.op == "Clip" for n in g.nodes) >= 2


def test_gemv_selected_for_batch1_linear_layers(tmp_path):
    """select_kernels: the batch-1 Gemms of an MLP (forward M == 1, input gradient M == 1, weight
    gradient K == 1) take the gemv variant on host; the GEMMs of a batch-4 MLP keep the tiled one."""
    from models import ZOO
    g = compile_model(ZOO["mlp_har"].path, tmp_path / "m", CompileConfig(update="all", build=False, quiet=True)).graph
    gemms = [n for n in g.nodes if n.op in ("Gemm", "MatMul", "MatMulT")]
    assert gemms and all(n.attrs["kernel"] == "gemv" for n in gemms)
    m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    model = export(m, torch.zeros(4, 6), tmp_path / "b4.onnx")
    g = compile_model(model, tmp_path / "b4", CompileConfig(update="all", build=False, quiet=True)).graph
    kinds = {n.attrs["kernel"] for n in g.nodes if n.op in ("Gemm", "MatMul", "MatMulT")}
    assert "tiled" in kinds
