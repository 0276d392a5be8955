"""The jetson target's GPU step (model.cu): the generated CUDA, built as host C++ (eg_cuda.cuh
without nvcc: every launch a loop over the same per-thread body), trains zoo models through the
protocol and matches PyTorch on every trained tensor (fp32: rtol 1e-4, atol 1e-5, 3 steps);
nvcc -arch=sm_87 compiles it (skipped without nvcc). No GPU here: nothing runs on a device."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from edgegrad.build import build_cuda_emulation
from edgegrad.codegen_cuda import cuda_kernels
from edgegrad.pipeline import CompileConfig, compile_model, frontend_graph
from egtest import FP32_ATOL, FP32_RTOL, export, train_build
from test_zoo_train import _samples
from torch_ref import TorchModel

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
    xs, ys = _samples(name)
    losses, trained, _ = train_build(out, xs, ys)
    g, updates = frontend_graph(e.path, CompileConfig(update=scheme))
    slices = {p: (u.axis, u.rows(g.tensors[p].shape)) for p, u in updates.items() if u.fraction < 1}
    ref_losses, ref = TorchModel(g, list(updates)).train(xs, ys, lr=LR[optimizer], optimizer=optimizer,
                                                         slices=slices)
    np.testing.assert_allclose(losses, ref_losses, rtol=FP32_RTOL, atol=FP32_ATOL)
    for p in updates:
        np.testing.assert_allclose(trained[p], ref[p], rtol=FP32_RTOL, atol=FP32_ATOL, err_msg=p)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_nvcc_compiles_model_cu(tmp_path):
    out = tmp_path / "b"
    compile_model(ZOO["dscnn"].path, out, CompileConfig(target="jetson", update="all", optimizer="adam", quiet=True))
    fw = json.loads((out / "firmware.json").read_text())
    assert fw["cuda"]["object"] == "model_cuda.o" and fw["cuda"]["arch"] == "sm_87"
    assert (out / "model_cuda.o").stat().st_size > 0
    assert (out / "model_jetson").exists()  # the CPU path is built too


def test_op_without_cuda_kernel_keeps_cpu_build(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 3))
    src = export(model, torch.zeros(1, 4), tmp_path / "sig.onnx")
    assert "sigmoid_f32_fw" not in cuda_kernels()
    compile_model(src, tmp_path / "b", CompileConfig(target="jetson", build=False, quiet=True))
    info = json.loads((tmp_path / "b" / "build.json").read_text())
    assert info["cuda"]["skipped"].startswith("no CUDA kernel yet for: sigmoid_f32_bw, sigmoid_f32_fw")
    assert not (tmp_path / "b" / "model.cu").exists() and (tmp_path / "b" / "model.c").exists()


def test_cuda_kernel_set_covers_the_zoo():
    assert {"conv2d_f32_fw", "conv2d_f32_bw_input", "conv2d_f32_bw_weight", "gemm_f32", "add_f32_bcast",
            "maxpool2d_f32_bw", "avgpool2d_f32_bw", "softmax_xent_f32", "adam_f32"} <= cuda_kernels()
