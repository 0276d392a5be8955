"""Snapshot tests of emitted C (a change in generated code shows in review) and memory-planner
properties (no overlap, arena vs lower bound, in-place and views)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from edgegrad.autodiff import TrainConfig, build_training_graph
from edgegrad.passes.fold_frozen import fold_frozen
from edgegrad.passes.plan_memory import check_plan, plan_memory
from edgegrad.pipeline import CompileConfig, compile_model, frontend_graph
from onnx import TensorProto, helper, numpy_helper

from models import ZOO

GOLDEN = Path(__file__).parent / "golden"


def tiny_cnn(path: Path) -> Path:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, n) for n, s in
             [("conv.w", (4, 1, 3, 3)), ("conv.b", (4,)), ("fc.w", (3, 36)), ("fc.b", (3,))]]
    nodes = [helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("scheme,optimizer", [("all", "sgd"), ("last:1", "momentum"), ("bias:all", "adam")])
def test_golden_c(tmp_path, scheme, optimizer):
    model = tiny_cnn(tmp_path / "tiny_cnn.onnx")
    compile_model(model, tmp_path / "b", CompileConfig(target="mcu", update=scheme, optimizer=optimizer, build=False, quiet=True))
    text = (tmp_path / "b" / "model.c").read_text()
    golden = GOLDEN / f"tiny_cnn_{scheme.replace(':', '_')}_{optimizer}.c"
    if os.environ.get("EG_UPDATE_GOLDEN") or not golden.exists():
        golden.write_text(text)
        if not os.environ.get("EG_UPDATE_GOLDEN"):
            pytest.fail(f"golden file {golden.name} was missing and has been written; commit it")
    assert text == golden.read_text(), f"generated C changed: rerun with EG_UPDATE_GOLDEN=1 and review {golden}"


@pytest.mark.parametrize("name", ["mlp_har", "cnn_fashion", "resnet8", "dscnn", "mobilenetv2_w035_96"])
@pytest.mark.parametrize("scheme", ["all", "last:2", "bias:all"])
def test_plan_is_sound_and_near_the_lower_bound(name, scheme):
    g, updates = frontend_graph(ZOO[name].path, CompileConfig(update=scheme))
    tg = build_training_graph(fold_frozen(g, set(updates)), updates, TrainConfig())
    plan = plan_memory(tg)
    check_plan(plan)  # no two live buffers overlap
    assert plan.lower_bound <= plan.arena_bytes <= 1.10 * plan.lower_bound
    # every arena tensor has an offset and fits inside the arena
    for t, off in plan.tensor_offset.items():
        assert 0 <= off and off + tg.tensors[t].nbytes <= plan.arena_bytes


def test_checker_catches_overlap():
    g, updates = frontend_graph(ZOO["cnn_fashion"].path, CompileConfig(update="all"))
    tg = build_training_graph(fold_frozen(g, set(updates)), updates, TrainConfig())
    plan = plan_memory(tg)
    a, b = sorted(plan.buffers, key=lambda b: b.start)[:2]
    b.offset = a.offset  # both alive at the start of the step
    with pytest.raises(AssertionError, match="overlap"):
        check_plan(plan)


def test_read_before_write_is_an_internal_error(tmp_path):
    """The bug class of a fused mask reading a recomputed activation before its recompute: the planner
    would overlap the buffer and the step read garbage. plan_memory refuses, naming tensor and both nodes."""
    from edgegrad.errors import EdgegradError
    g = compile_model(ZOO["mlp_har"].path, tmp_path, CompileConfig(build=False, quiet=True)).graph
    reader = next(n for n in g.nodes if n.attrs.get("mask"))  # masked by y, the hidden layer's ReLU output
    y = reader.inputs[-1]
    writer = g.producers()[y]
    plan_memory(g)
    g.nodes.remove(writer)  # y written after its reader, as a misplaced recompute would
    g.nodes.insert(g.nodes.index(reader) + 1, writer)
    first = next(n for n in g.nodes if y in n.inputs)  # (the forward's next layer reads y first now)
    with pytest.raises(EdgegradError, match=re.escape(f"internal error: memory plan: {first.name} ({first.op}) at "
                                                      f"step {g.nodes.index(first)} reads '{y}' before it is written "
                                                      f"(written by {writer.name} ({writer.op}) at step")):
        plan_memory(g)


def test_views_and_inplace_share_buffers():
    g, updates = frontend_graph(ZOO["cnn_fashion"].path, CompileConfig(update="all"))
    tg = build_training_graph(fold_frozen(g, set(updates)), updates, TrainConfig())
    plan = plan_memory(tg)
    reshape = next(n for n in tg.nodes if n.op == "Reshape")
    assert plan.tensor_offset[reshape.inputs[0]] == plan.tensor_offset[reshape.outputs[0]]
    relu_grads = [n for n in tg.nodes if n.op == "ReluGrad"]
    assert any(plan.tensor_offset[n.inputs[0]] == plan.tensor_offset[n.outputs[0]] for n in relu_grads)


def test_frozen_layers_keep_no_activation():
    """Backward stops at the earliest updated tensor: with only the head trained, no conv
    gradient node exists and the only kept activation is the head's input."""
    from edgegrad.inspect import saved_activations
    g, updates = frontend_graph(ZOO["cnn_fashion"].path, CompileConfig(update="last:1"))
    tg = build_training_graph(fold_frozen(g, set(updates)), updates, TrainConfig())
    ops = {n.op for n in tg.nodes[tg.meta["n_forward"]:]}
    assert not ops & {"ConvBwInput", "ConvBwWeight", "MaxPoolGrad", "ReluGrad"}
    saved = saved_activations(tg)
    assert len(saved) <= 2  # the head's input (and the logits for the loss)
