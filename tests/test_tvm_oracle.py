"""TVM as a second gradient oracle: our generated C's parameter gradients (host build) against Relax's
relax.transform.Gradient (apache-tvm, tools/peers/tvm_grad.py in build/venv-tvm), every element, for zoo models
and single-op graphs. Skipped without TVM (`bash tools/setup_bench.sh tvm`).

Our gradient: one SGD step with lr = 1 from the model's initial parameters, g = p0 - p1 in float64 (exact up to
one ulp of the parameter). Tolerance: |ours - tvm| <= 1e-5 + 1e-4 |tvm| per element (fp32 sums in a different
order; the ulp of p0 is below 1e-7 for these parameters), and the losses to 1e-5 relative.
Not in the set: a dilated convolution (TVM 0.27's Gradient emits a conv2d_transpose with output padding >= stride,
which it then rejects).
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from edgegrad.pipeline import CompileConfig, frontend_graph
from edgegrad.tvm_backend import ROOT, tvm_python, tvm_version
from egtest import compile_host, export, train_build
from torch import nn

from models import ZOO

pytestmark = pytest.mark.skipif(tvm_version() is None, reason="TVM not installed (bash tools/setup_bench.sh tvm)")
RTOL, ATOL = 1e-4, 1e-5
ZOO_CASES = ["mlp_har", "cnn_fashion", "dscnn", "resnet8"]


class Flat(nn.Module):
    def __init__(self, *layers):
        super().__init__()
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return torch.flatten(self.body(x), 1)


def single_ops() -> dict[str, tuple[nn.Module, tuple]]:
    torch.manual_seed(0)
    return {
        "gemm": (nn.Linear(12, 5), (1, 12)),
        "gemm_tanh_gemm": (nn.Sequential(nn.Linear(12, 7), nn.Tanh(), nn.Linear(7, 4)), (1, 12)),
        "conv_stride_pad": (Flat(nn.Conv2d(3, 4, 3, stride=2, padding=1)), (1, 3, 7, 7)),
        "conv_depthwise": (Flat(nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.ReLU()), (1, 4, 5, 5)),
        "conv_grouped_pool": (Flat(nn.Conv2d(4, 6, 1, groups=2), nn.Sigmoid(), nn.AvgPool2d(2)), (1, 4, 6, 6)),
        "conv_maxpool": (Flat(nn.Conv2d(2, 3, 3), nn.MaxPool2d(2)), (1, 2, 8, 8)),
    }


def _cases(tmp_path) -> list[dict]:
    rng = np.random.default_rng(1)
    cases = []
    for name in ZOO_CASES:
        e = ZOO[name]
        x = rng.standard_normal(e.input_shape).astype(np.float32)
        cases.append({"name": name, "model": str(e.path), "x": x, "label": int(rng.integers(e.num_classes))})
    for name, (module, shape) in single_ops().items():
        x = rng.standard_normal(shape).astype(np.float32)
        path = export(module, torch.from_numpy(x), tmp_path / f"{name}.onnx")
        n_out = module(torch.from_numpy(x)).shape[1]
        cases.append({"name": name, "model": str(path), "x": x, "label": int(rng.integers(n_out))})
    return cases


def test_gradients_match_tvm(tmp_path):
    cases = _cases(tmp_path)
    job = []
    ours = {}
    for c in cases:
        build = compile_host(c["model"], tmp_path / c["name"], update="all", lr=1.0, extra_cflags=("-O0",))
        losses, trained, _ = train_build(build, [c["x"]], [c["label"]])
        g, _ = frontend_graph(c["model"], CompileConfig())
        ours[c["name"]] = (losses[0], {p: g.tensors[p].data.astype(np.float64) - v.astype(np.float64)
                                       for p, v in trained.items()})
        np.save(tmp_path / f"{c['name']}_x.npy", c["x"])
        job.append({"model": c["model"], "input": str(tmp_path / f"{c['name']}_x.npy"), "label": c["label"],
                    "trained": sorted(trained), "out": str(tmp_path / f"{c['name']}_tvm.npz")})
    (tmp_path / "job.json").write_text(json.dumps({"cases": job}))
    proc = subprocess.run([str(tvm_python()), str(ROOT / "tools" / "peers" / "tvm_grad.py"), str(tmp_path / "job.json")],
                          check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for c, j in zip(cases, job):
        ref = np.load(j["out"])
        loss, grads = ours[c["name"]]
        np.testing.assert_allclose(loss, float(ref["loss"]), rtol=1e-5, err_msg=c["name"])
        assert set(grads) == set(j["trained"]) and grads, c["name"]
        for p, gr in grads.items():
            assert gr.shape == ref[p].shape, (c["name"], p)
            np.testing.assert_allclose(gr, ref[p], rtol=RTOL, atol=ATOL, err_msg=f"{c['name']}: {p}")
