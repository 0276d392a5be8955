"""passes/fuse.py: which chains it fuses (graph level), and that a fused host build trains exactly
like the unfused one (every trained element after 3 SGD steps, resnet8, full and partial schemes).
The zoo tests (test_zoo_train.py) compare the fused builds, the default, with PyTorch.

Tolerance: the fused kernel adds lr * dW to w in parts (per image and k block), the unfused one
adds lr * dW once, so weights may differ by fp32 rounding of w: rtol 1e-5, atol 1e-6 after 3 steps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgegrad.passes.fuse import SGD_KERNELS, fuse
from edgegrad.pipeline import CompileConfig, compile_model
from egtest import compile_host, train_build

from models import ZOO


def _graph(name: str, tmp_path, **cfg):
    return compile_model(ZOO[name].path, tmp_path / "g", CompileConfig(build=False, quiet=True, **cfg)).graph


def test_fuses_each_implicit_weight_gradient_with_its_sgd_step(tmp_path):
    fused = _graph("resnet8", tmp_path, update="all")
    plain = _graph("resnet8", tmp_path, update="all", fuse=False)
    n_conv = sum(n.op == "Conv" for n in plain.nodes)
    implicit = [n for n in plain.nodes if n.op == "ConvBwWeight" and n.attrs["kernel"] in SGD_KERNELS]
    assert len(implicit) == n_conv == 9  # every resnet8 weight gradient runs the implicit or Winograd kernel
    nodes = [n for n in fused.nodes if n.op == "ConvBwWeightSGD"]
    assert len(nodes) == 9 and not any(n.op == "ConvBwWeight" for n in fused.nodes)
    for n in implicit:  # the gradient tensors are gone from the graph (and the arena)
        assert n.outputs[0] not in fused.tensors
    # the fused node sits where the update was: after the input gradient that reads the old weights
    order = {id(n): i for i, n in enumerate(fused.nodes)}
    for f in nodes:
        w = f.inputs[2]
        readers = [n for n in fused.nodes if n.op == "ConvBwInput" and n.inputs[1] == w]
        assert all(order[id(r)] < order[id(f)] for r in readers)
    fused.verify()


@pytest.mark.parametrize("cfg", [{"target": "mcu", "update": "last:2"}, {"optimizer": "adam"},
                                 {"target": "rpi"}])
def test_leaves_other_targets_and_optimizers_alone(cfg, tmp_path):
    g = _graph("resnet8", tmp_path, **cfg)
    assert not any(n.op == "ConvBwWeightSGD" for n in g.nodes)
    assert any(n.op == "ConvBwWeight" for n in g.nodes)


def test_keeps_a_gradient_something_else_reads(tmp_path):
    g = _graph("resnet8", tmp_path, update="all", fuse=False)
    conv = next(n for n in g.nodes if n.op == "ConvBwWeight")
    g.outputs.append(conv.outputs[0])  # e.g. a gradient the caller asked for
    g = fuse(g, "host")
    assert conv in g.nodes and conv.outputs[0] in g.tensors
    assert sum(n.op == "ConvBwWeightSGD" for n in g.nodes) == 8


def _scheme(tmp_path) -> str:
    """Partial blocks: leading output rows of one conv, a leading input-channel share of another."""
    path = tmp_path / "scheme.json"
    path.write_text(json.dumps({"stacks.1.conv1.weight": 0.5, "stacks.2.conv2.weight": {"in": 0.25},
                                "stacks.0.conv1.weight": 1.0}))
    return str(path)


@pytest.mark.parametrize("scheme", ["all", "partial"])
def test_fused_build_trains_like_unfused(scheme, tmp_path):
    e = ZOO["resnet8"]
    update = _scheme(tmp_path) if scheme == "partial" else scheme
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(e.input_shape).astype(np.float32) for _ in range(3)]
    ys = [int(rng.integers(e.num_classes)) for _ in range(3)]
    runs = {}
    for fz in (True, False):
        build = compile_host(e.path, tmp_path / f"fuse{fz}", update=update, lr=0.05, fuse=fz,
                             extra_cflags=("-O1",))
        text = (build / "model.c").read_text()
        assert ("conv2d_f32_bw_weight_sgd_implicit(" in text) == fz
        runs[fz] = train_build(build, xs, ys)
    (loss_f, trained_f, _), (loss_u, trained_u, _) = runs[True], runs[False]
    np.testing.assert_allclose(loss_f, loss_u, rtol=1e-5, atol=1e-6)
    assert trained_f.keys() == trained_u.keys() and trained_f
    for p in trained_f:
        np.testing.assert_allclose(trained_f[p], trained_u[p], rtol=1e-5, atol=1e-6, err_msg=p)
