"""1-bit ReLU masks (compiler/passes/relu_mask.py): where the backward of a ReLU/Clip needs only
which elements passed (the next layer is frozen or bias-only), the training graph keeps a
bit-packed mask instead of the fp32 output. The gradients do not move at all: training through
the generated C with masks equals the unmasked build bit for bit on every trained element (and
PyTorch within fp32 rtol 1e-4 / atol 1e-5), and the mcu arena shrinks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from edgegrad.autodiff import TrainConfig
from edgegrad.interp import Interpreter
from edgegrad.ops import run_ref
from edgegrad.passes.plan_memory import plan_memory
from edgegrad.passes.relu_mask import _aliases, relu_mask
from edgegrad.pipeline import CompileConfig, compile_model, frontend_graph, training_steps
from egtest import FP32_ATOL, FP32_RTOL, train_build
from torch_ref import TorchModel

from models import ZOO


def _graph(name: str, scheme: str, mask: bool):
    g, ups = frontend_graph(ZOO[name].path, CompileConfig(update=scheme))
    for _, step in training_steps(ups, TrainConfig(lr=0.05), CompileConfig(relu_mask=mask, recompute=False)):
        g = step(g)
    return g


def test_mask_kernel_reference_round_trip():
    """ReluMask packs bit i%8 of byte i/8; MaskGrad passes dy exactly where ReluGrad/ClipGrad do
    (zeros, negative zero, the clip bounds themselves, a length that is not a multiple of 8)."""
    from edgegrad.ir import Node
    rng = np.random.default_rng(0)
    y = rng.standard_normal(37).astype(np.float32)
    y[[0, 5, 9]] = [0.0, -0.0, 6.0]
    dy = rng.standard_normal(37).astype(np.float32)
    for op, attrs in (("ReluGrad", {}), ("ClipGrad", {"lo": 0.0, "hi": 6.0})):
        m = run_ref(Node("ReluMask", ["y"], ["m"], dict(attrs, lo=0.0)), [y])[0]
        assert m.dtype == np.uint8 and m.shape == (5,)
        want = run_ref(Node(op, ["dy", "y"], ["dx"], attrs), [dy, y])[0]
        got = run_ref(Node("MaskGrad", ["dy", "m"], ["dx"], {}), [dy, m])[0]
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name,scheme", [("resnet8", "bias:all"), ("dscnn", "last:2"), ("mobilenetv2_w035_96", "bias:all")])
def test_masks_only_where_nothing_else_reads_the_output(name, scheme):
    g = _graph(name, scheme, True)
    masks = g.meta.get("relu_masks", [])
    assert masks
    n_fwd = g.meta["n_forward"]
    for y in masks:
        assert not any(y in n.inputs for n in g.nodes[n_fwd:])  # the backward reads the mask only
        m = next(n for n in g.nodes[:n_fwd] if n.op == "ReluMask" and n.inputs == [y])
        assert g.tensors[m.outputs[0]].nbytes == (g.tensors[y].size + 7) // 8 and m.attrs["save"]
    g.verify()
    plain = _graph(name, scheme, False)
    assert plan_memory(g).arena_bytes < plan_memory(plain).arena_bytes
    # every ReLU output still kept in fp32 is read by another backward node too (a weight gradient)
    for n in g.nodes[:n_fwd]:
        y = n.outputs[0]
        bwd = [b for b in g.nodes[n_fwd:] if any(a in b.inputs for a in _aliases(g, y))]
        if n.op in ("Relu", "Clip") and y not in masks and bwd:
            assert any(b.op not in ("ReluGrad", "ClipGrad") for b in bwd), y


@pytest.mark.parametrize("name,scheme", [("resnet8", "bias:all"), ("dscnn", "last:2")])
def test_masked_numpy_step_is_bit_identical(name, scheme):
    """The numpy interpreter runs one step of each graph: every parameter gradient equal."""
    g, plain = _graph(name, scheme, True), _graph(name, scheme, False)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(ZOO[name].input_shape).astype(np.float32), np.array([3])
    a, b = Interpreter(g), Interpreter(plain)
    assert a.train_step([x], y) == b.train_step([x], y)
    grads = [n.inputs[1] for n in plain.nodes if n.op == "SGDUpdate"]
    for gn in grads:
        np.testing.assert_array_equal(a.values[gn], b.values[gn], err_msg=gn)


def test_masked_training_matches_unmasked_build_and_torch(tmp_path):
    name, scheme = "resnet8", "bias:all"
    e = ZOO[name]
    builds = {}
    for mask in (True, False):
        builds[mask] = compile_model(e.path, tmp_path / f"b{int(mask)}", CompileConfig(
            update=scheme, lr=0.05, relu_mask=mask, recompute=False, quiet=True, extra_cflags=("-O1",)))
    assert builds[True].graph.meta["relu_masks"] and "relu_masks" not in builds[False].graph.meta
    assert builds[True].info["arena_bytes"] < builds[False].info["arena_bytes"]
    assert "mask_f32_bw(" in (builds[True].out_dir / "model.c").read_text()
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(e.input_shape).astype(np.float32) for _ in range(3)]
    ys = [int(rng.integers(e.num_classes)) for _ in range(3)]
    runs = {m: train_build(b.out_dir, xs, ys) for m, b in builds.items()}
    assert runs[True][0] == runs[False][0]  # losses
    g, updates = frontend_graph(e.path, CompileConfig(update=scheme))
    ref_losses, ref = TorchModel(g, list(updates)).train(xs, ys, lr=0.05)
    np.testing.assert_allclose(runs[True][0], ref_losses, rtol=FP32_RTOL, atol=FP32_ATOL)
    for p in updates:
        np.testing.assert_array_equal(runs[True][1][p], runs[False][1][p], err_msg=p)
        np.testing.assert_allclose(runs[True][1][p], ref[p], rtol=FP32_RTOL, atol=FP32_ATOL, err_msg=p)
    np.testing.assert_array_equal(runs[True][2][0], runs[False][2][0])  # inference skips the masks


def test_mcu_masks_by_default_shrink_sram(tmp_path):
    e = ZOO["resnet8"]
    cfg = {"target": "mcu", "update": "bias:all", "build": False, "quiet": True, "sram_budget": 1 << 30}
    on = compile_model(e.path, tmp_path / "m", CompileConfig(**cfg))
    off = compile_model(e.path, tmp_path / "o", CompileConfig(**cfg, relu_mask=False))
    assert on.graph.meta["relu_masks"]
    assert off.info["predicted"]["sram_total"] - on.info["predicted"]["sram_total"] >= 48 * 1024
    assert relu_mask(copy.deepcopy(on.graph)).meta["relu_masks"] == on.graph.meta["relu_masks"]  # idempotent


def test_timeline_and_inspect_show_the_masks(capsys):
    """inspect --memory's timeline has a ``mask`` kind: at the turn from forward to backward all 7 masks of a
    bias-only ResNet-8 are live (9216 B, 1/32 of the 294912 B of fp32 outputs they replace)."""
    from edgegrad.cli import main
    from edgegrad.timeline import model_timeline
    g, _plan, tl = model_timeline(ZOO["resnet8"].path, "bias:all")
    masks = [n.outputs[0] for n in g.nodes if n.op == "ReluMask"]
    assert len(masks) == 7
    assert max(r["mask"] for r in tl["rows"]) == sum(g.tensors[m].nbytes for m in masks) == 9216
    assert main(["inspect", str(ZOO["resnet8"].path), "--update", "bias:all", "--memory"]) == 0
    assert "masks" in capsys.readouterr().out


def test_int8_saturation_masks_match_the_unmasked_build(tmp_path):
    """--dtype int8: an int8 layer output read by the backward only for QSatGrad's saturation mask is
    kept as 1 bit per element (clip_mask_s8); 3 momentum steps of a bias-only quantized MLP give the
    same int32 biases as the unmasked build, bit for bit."""
    from edgegrad.quantize import quantize_model
    e = ZOO["mlp_har"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16,) + tuple(e.input_shape[1:])).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    q = tmp_path / "q.onnx"
    quantize_model(e.path, tmp_path / "x.npy", q)
    builds = {m: compile_model(q, tmp_path / f"b{int(m)}", CompileConfig(
        dtype="int8", update="bias:all", optimizer="momentum", lr=0.05, relu_mask=m, quiet=True,
        extra_cflags=("-O1",))) for m in (True, False)}
    assert builds[True].graph.meta["relu_masks"] and "clip_mask_s8(" in (builds[True].out_dir / "model.c").read_text()
    assert builds[True].info["arena_bytes"] <= builds[False].info["arena_bytes"]
    xs, ys = [x[i][None] for i in range(3)], [1, 4, 2]
    runs = {m: train_build(b.out_dir, xs, ys) for m, b in builds.items()}
    assert runs[True][0] == runs[False][0]
    for p in runs[False][1]:
        np.testing.assert_array_equal(runs[True][1][p], runs[False][1][p], err_msg=p)
