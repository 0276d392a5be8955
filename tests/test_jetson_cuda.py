"""The jetson target's GPU step (model.cu): the generated CUDA, built as host C++ (eg_cuda.cuh
without nvcc: every launch a loop over the same per-thread body), trains zoo models through the
protocol and matches PyTorch on every trained tensor (fp32: rtol 1e-4, atol 1e-5, 3 steps);
every op the C backend lowers has a CUDA kernel, checked op by op (the gradient cases of
test_ops_grad) and on every zoo model against the host C build of the same model (every
trained tensor, the losses and the outputs of a final inference; fp32 rtol 1e-4, atol 1e-5:
the two builds sum in different orders); nvcc -arch=sm_87 compiles it (skipped without nvcc).
No GPU here: nothing runs on a device."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from edgegrad.build import build_cuda_emulation
from edgegrad.codegen_cuda import cuda_kernels
from edgegrad.pipeline import RUNTIME, CompileConfig, compile_model, frontend_graph
from egtest import FP32_ATOL, FP32_RTOL, export, train_build
from test_ops_grad import CASES, DELTA_RTOL, build_model, compile_case, kernel_objects  # noqa: F401 (a fixture)
from test_zoo_train import _samples, assert_trains_like_torch

from models import ZOO

LR = {"sgd": 0.05, "momentum": 0.02, "adam": 0.01}


@pytest.mark.parametrize("name,scheme,optimizer", [
    ("mlp_har", "all", "adam"),
    ("cnn_fashion", "all", "sgd"),                      # maxpool, im2col-free direct conv kernels
    ("resnet8", "last:2", "momentum"),
    ("dscnn", "weights:last:1@0.5", "sgd"),             # avgpool, depthwise, partial weight update
    ("mobilenetv2_w035_96", "bias:all", "sgd"),         # clip (ReLU6), bias gradients through every layer
])
def test_cuda_step_matches_torch(name, scheme, optimizer, tmp_path):
    e = ZOO[name]
    out = tmp_path / "b"
    compile_model(e.path, out, CompileConfig(target="jetson", update=scheme, optimizer=optimizer, lr=LR[optimizer],
                                             build=False, quiet=True))
    info = json.loads((out / "build.json").read_text())
    assert info["cuda"] == {"source": "model.cu", "arch": "sm_87"}
    info["binary"] = build_cuda_emulation(out).name
    info["config"]["target"] = "host"  # the emulation is a host process on pipes
    (out / "build.json").write_text(json.dumps(info))
    assert_trains_like_torch(name, out, scheme, optimizer, LR[optimizer])


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_nvcc_compiles_model_cu(tmp_path):
    out = tmp_path / "b"
    compile_model(ZOO["dscnn"].path, out, CompileConfig(target="jetson", update="all", optimizer="adam", quiet=True))
    fw = json.loads((out / "firmware.json").read_text())
    assert fw["cuda"]["object"] == "model_cuda.o" and fw["cuda"]["arch"] == "sm_87"
    assert (out / "model_cuda.o").stat().st_size > 0
    assert (out / "model_jetson").exists()  # the CPU path is built too


def _cuda_emulation(src: Path, out: Path, **cfg) -> Path:
    """Compile for jetson and build model.cu as a host process (the emulation) in out."""
    compile_model(src, out, CompileConfig(target="jetson", build=False, quiet=True, **cfg))
    info = json.loads((out / "build.json").read_text())
    assert info["cuda"] == {"source": "model.cu", "arch": "sm_87"}, info["cuda"]
    info["binary"] = build_cuda_emulation(out).name
    info["config"]["target"] = "host"
    (out / "build.json").write_text(json.dumps(info))
    return out


def _same_training(cuda: Path, host: Path, xs, ys) -> None:
    """Losses, trained tensors, their updates (trained - initial, to DELTA_RTOL of the largest
    update: a wrong gradient cannot hide under the size of the weight) and a final inference."""
    g, _ = frontend_graph(host / "model.onnx", CompileConfig(update=json.loads((host / "build.json").read_text())
                                                             ["config"]["update"]))
    c_losses, c_trained, c_out = train_build(cuda, xs, ys)
    h_losses, h_trained, h_out = train_build(host, xs, ys)
    np.testing.assert_allclose(c_losses, h_losses, rtol=FP32_RTOL, atol=FP32_ATOL, err_msg="losses")
    assert set(c_trained) == set(h_trained) and c_trained
    for p in h_trained:
        np.testing.assert_allclose(c_trained[p], h_trained[p], rtol=FP32_RTOL, atol=FP32_ATOL, err_msg=p)
        w0 = g.tensors[p].data.astype(np.float64).reshape(h_trained[p].shape)
        dc, dh = c_trained[p] - w0, h_trained[p] - w0
        tol = DELTA_RTOL * np.abs(dh).max() + 4 * np.finfo(np.float32).eps * np.abs(w0).max()
        np.testing.assert_allclose(dc, dh, rtol=0, atol=tol, err_msg=f"update of {p}")
    np.testing.assert_allclose(c_out[0], h_out[0], rtol=FP32_RTOL, atol=FP32_ATOL, err_msg="infer after training")


# One gradient case of test_ops_grad per kernel family (each op's forward and backward kernels,
# broadcasts, strided copies, partial updates, every optimizer and both losses).
CUDA_CASES = [
    "conv_stride2_asym_pads", "conv_depthwise_mult2", "conv_grouped", "conv_1d_same_upper",
    "gemm_transAB_bias_scalar", "matmul_batched", "matmul_1d_lhs_batched_rhs",
    "add_bias_1c11", "sub_param_minus_input", "div_both_broadcast", "squeeze_excite",
    "relu", "clip_relu6_constants", "leaky_relu", "prelu_per_channel", "prelu_2d_input", "sigmoid", "hard_sigmoid",
    "hard_swish", "tanh",
    "maxpool_dilation", "avgpool_ceil_pads_include", "global_avg_pool", "reducemean_axes_0_2_op13",
    "transpose_3d_rotate", "reshape_transpose_chain", "squeeze_op13", "unsqueeze_op11_attr", "concat_last_axis_three", "pad_constant_asym", "pad_axes_op21",
    "softmax_middle_axis", "softmax_2d_op11", "batch2_bn_softmax", "bn_trainable_scale_bias", "bn_only_scale_trained",
    "ce_conv_gap_flatten", "adam_gemm_ce", "momentum_conv",
    "partial_conv_in_quarter", "partial_gemm_transB_in_quarter_momentum", "partial_prelu_half",
    "partial_bn_scale_half",
]


@pytest.mark.parametrize("name", CUDA_CASES)
def test_cuda_op_gradients_match_host_c(name, tmp_path, kernel_objects):  # noqa: F811 (the fixture)
    c = CASES[name]
    rng = np.random.default_rng(0)
    src = tmp_path / "case.onnx"
    onnx.save(build_model(c, rng), str(src))
    scheme = c.scheme
    if isinstance(scheme, dict):
        (tmp_path / "scheme.json").write_text(json.dumps(scheme))
        scheme = str(tmp_path / "scheme.json")
    cfg = {"update": scheme, "optimizer": c.optimizer, "lr": c.lr,
           "loss": "mse" if c.loss == "mse" else "cross_entropy"}
    g, _ = frontend_graph(src, CompileConfig(update=scheme))
    out_shape = g.tensors[g.outputs[0]].shape
    xs = [(rng.standard_normal(c.x_shape) * c.x_scale).astype(np.float32) for _ in range(c.steps)]
    ys = ([rng.standard_normal(out_shape).astype(np.float32) for _ in range(c.steps)] if c.loss == "mse"
          else [int(rng.integers(int(np.prod(out_shape)))) for _ in range(c.steps)])
    host = compile_case(src, tmp_path / "host", kernel_objects, **cfg)
    _same_training(_cuda_emulation(src, tmp_path / "cuda", **cfg), host, xs, ys)


def test_cuda_cases_cover_every_op():
    """Every ONNX op of the gradient cases appears in a CUDA case."""
    ops = {nd.op_type for c in CASES.values() for nd in c.nodes}
    covered = {nd.op_type for n in CUDA_CASES for nd in CASES[n].nodes}
    assert ops - covered == set()


@pytest.mark.parametrize("name,scheme,optimizer", [
    ("mlp_har_pre", "all", "sgd"),
    ("cnn_fashion_pre", "all", "momentum"),
    ("cnn_fashion_dynamo", "all", "sgd"),
    ("resnet8_bn", "all", "sgd"),                        # batch norm forward and backward (scale, bias, input)
    ("resnet8_constants", "all", "sgd"),
    ("dscnn_pad", "all", "adam"),                        # Pad: copy_strided
    ("mobilenetv2_w035_128", "bias:all", "sgd"),
    ("mobilenetv2_w035_128_pre", "last:2", "sgd"),        # pretrained on Fashion-MNIST (BN folded at export)
])
def test_cuda_step_matches_host_c_on_the_zoo(name, scheme, optimizer, tmp_path, kernel_objects):  # noqa: F811
    """The zoo models test_cuda_step_matches_torch does not train, against the host C build."""
    src = ZOO[name].path
    cfg = {"update": scheme, "optimizer": optimizer, "lr": LR[optimizer]}
    host = compile_case(src, tmp_path / "host", kernel_objects, **cfg)
    xs, ys = _samples(name)
    _same_training(_cuda_emulation(src, tmp_path / "cuda", **cfg), host, xs, ys)


def test_every_zoo_model_and_reference_kernel_has_cuda():
    """Each fp32 reference kernel (runtime_c/eg_*.h) has a _cuda launcher, and every zoo model
    compiles for jetson with its GPU step."""
    declared = set()
    for h in ("eg_conv.h", "eg_gemm.h", "eg_eltwise.h", "eg_pool.h", "eg_norm.h", "eg_shape.h", "eg_softmax.h",
              "eg_optim.h"):
        declared |= set(re.findall(r"^void (\w+_f32\w*)\(", (RUNTIME / h).read_text(), re.MULTILINE))
    # reduce_rows_*: a bias gradient fused into its update by passes/fuse.py, which runs on host only
    fused_host_only = {n for n in declared if n.startswith("reduce_rows_")}
    assert len(declared) > 40 and declared - fused_host_only - cuda_kernels() == set()
    assert set(ZOO) - {"mlp_har", "cnn_fashion", "resnet8", "dscnn", "mobilenetv2_w035_96", "mlp_har_pre",
                       "cnn_fashion_pre", "cnn_fashion_dynamo", "resnet8_bn", "resnet8_constants", "dscnn_pad",
                       "mobilenetv2_w035_128", "mobilenetv2_w035_128_pre"} == set(), "a new zoo model: add it to a CUDA training test"


def test_op_without_cuda_kernel_keeps_cpu_build(tmp_path, monkeypatch):
    """A kernel with no _cuda launcher: the compile names it and keeps the CPU build."""
    import edgegrad.codegen_cuda as cg
    have = cg.cuda_kernels()
    monkeypatch.setattr(cg, "cuda_kernels", lambda: have - {"sigmoid_f32_fw", "sigmoid_f32_bw"})
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 3))
    src = export(model, torch.zeros(1, 4), tmp_path / "sig.onnx")
    compile_model(src, tmp_path / "b", CompileConfig(target="jetson", build=False, quiet=True))
    info = json.loads((tmp_path / "b" / "build.json").read_text())
    assert info["cuda"]["skipped"].startswith("no CUDA kernel yet for: sigmoid_f32_bw, sigmoid_f32_fw")
    assert not (tmp_path / "b" / "model.cu").exists() and (tmp_path / "b" / "model.c").exists()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_nvcc_compiles_every_activation(tmp_path):
    """nvcc -arch=sm_87 compiles the activation, softmax and PReLU kernels (the zoo has none)."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 8), torch.nn.Tanh(),
                                torch.nn.Linear(8, 8), torch.nn.LeakyReLU(0.1), torch.nn.Linear(8, 8),
                                torch.nn.Hardswish(), torch.nn.Linear(8, 8), torch.nn.Hardsigmoid(),
                                torch.nn.Linear(8, 8), torch.nn.PReLU(8), torch.nn.Linear(8, 3), torch.nn.Softmax(1))
    src = export(model, torch.zeros(1, 4), tmp_path / "act.onnx")
    compile_model(src, tmp_path / "b", CompileConfig(target="jetson", build=False, quiet=True, loss="mse"))
    from edgegrad.build import check_cuda
    assert check_cuda(tmp_path / "b", {"nvcc": "nvcc", "arch": "sm_87"})["object"] == "model_cuda.o"
    text = (tmp_path / "b" / "model.cu").read_text()
    for k in ("sigmoid_f32_bw_cuda", "tanh_f32_bw_cuda", "leakyrelu_f32_bw_cuda", "hardswish_f32_bw_cuda",
              "hardsigmoid_f32_bw_cuda", "prelu_f32_bw_input_cuda", "softmax_f32_bw_cuda"):
        assert k in text, k


def test_cuda_kernel_set_covers_the_zoo():
    assert {"conv2d_f32_fw", "conv2d_f32_bw_input", "conv2d_f32_bw_weight", "gemm_f32", "add_f32_bcast",
            "maxpool2d_f32_bw", "avgpool2d_f32_bw", "softmax_xent_f32", "adam_f32"} <= cuda_kernels()
