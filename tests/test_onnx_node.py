"""ONNX's own operator test cases, run forward through the generated C.

The onnx wheel ships the generators of its node tests (`onnx.backend.test.case.node`), not
their data: `collect_testcases()` rebuilds every case offline as (model, inputs, outputs).
For each case of an op edgegrad supports, the model is made compilable and its output 0 is
compared with ONNX's expected output after one `eg_infer` of the host binary:

- edgegrad compiles static float32 graphs with one input (the host runner feeds exactly one):
  the first float32 input stays a graph input; every other input (shapes, pads, axes, second
  operands, BN statistics) becomes an initializer holding the case's value. Clip's scalar
  bounds become Constant nodes instead: the frontend treats float initializers as weights and
  rejects trainable Clip bounds, while scalar Constants are plain constants.
- The generators stamp each case with the op's newest opset (22 and 25 only widen type lists);
  cases above 21 are restamped to 21 after checking that the op's attributes, inputs and
  outputs are the same there.
- Compiling needs a trainable parameter: `update="all"` when the graph has one, otherwise a
  probe `x * ones` (named "probe") in front of the graph, trained by the scheme {"probe": 1}.
  The forward value is unchanged: x * 1.0 == x exactly.
- Builds use -O0 (CompileConfig.extra_cflags): compile time dominates this suite.

Every collected case of a supported op passes, or is listed in SKIP with the reason; a skipped
case must still be rejected (by the compiler, or for a non-tensor type by this harness), so a
newly supported case cannot hide in SKIP. `python tests/test_onnx_node.py` prints the cases and
skips per op.

Tolerances (fp32): rtol 1e-5, atol 1e-6 by default; exceptions in TOLERANCE with their reason.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import onnx.defs
import pytest
from edgegrad.errors import EdgegradError
from edgegrad.frontend import import_onnx
from edgegrad.pipeline import CompileConfig, compile_model
from edgegrad.run import Session
from edgegrad.scheme import trainable_params
from onnx import helper, numpy_helper

SUPPORTED_OPS = {
    "Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid",
    "HardSigmoid", "HardSwish", "Tanh", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "Flatten",
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Pad", "Softmax", "BatchNormalization",
    "Identity", "Dropout",
}
MAX_OPSET = 21
RTOL, ATOL = 1e-5, 1e-6
# case name -> (rtol, atol, why)
TOLERANCE = {
    "test_averagepool_2d_ceil_last_window_starts_on_pad":
        (1e-5, 1e-4, "the expected output is written in the generator rounded to 4 decimals"),
}

_SKIP_GROUPS: dict[str, list[str]] = {
    "integer tensors (edgegrad compiles float32 graphs)": [
        "test_add_int8", "test_add_int16", "test_add_uint8", "test_add_uint16", "test_add_uint32",
        "test_add_uint64", "test_sub_int8", "test_sub_int16", "test_sub_uint8", "test_sub_uint16",
        "test_sub_uint32", "test_sub_uint64", "test_mul_int8", "test_mul_int16", "test_mul_uint8",
        "test_mul_uint16", "test_mul_uint32", "test_mul_uint64", "test_div_int8", "test_div_int16",
        "test_div_uint8", "test_div_uint16", "test_div_uint32", "test_div_uint64", "test_div_int32_trunc",
        "test_maxpool_2d_uint8", "test_clip_default_int8_min", "test_clip_default_int8_max",
        "test_clip_default_int8_inbounds", "test_clip_default_int8_min_expanded",
        "test_clip_default_int8_max_expanded", "test_clip_default_int8_inbounds_expanded"
    ],
    "Pad modes edge/reflect/wrap (only constant), here on int32 tensors": [
        "test_edge_pad", "test_reflect_pad", "test_wrap_pad"
    ],
    "sequence / optional input types (tensors only)": [
        "test_identity_sequence", "test_identity_opt"
    ],
    "MatMul with partially broadcast batch dims": [
        "test_matmul_bcast"
    ],
    "3-D pooling (only 1-D and 2-D)": [
        "test_maxpool_3d_default", "test_maxpool_3d_dilations", "test_maxpool_3d_dilations_use_ref_impl",
        "test_maxpool_3d_dilations_use_ref_impl_large", "test_averagepool_3d_default",
        "test_averagepool_3d_dilations_small",
        "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_True",
        "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_False",
        "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True",
        "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_False"
    ],
    "AveragePool with dilations": [
        "test_averagepool_2d_dilations"
    ],
    "MaxPool with an Indices output": [
        "test_maxpool_with_argmax_2d_precomputed_pads"
    ],
    "MaxPool storage_order=1 (Indices output)": [
        "test_maxpool_with_argmax_2d_precomputed_strides"
    ],
    "BatchNormalization in training mode": [
        "test_batchnorm_example_training_mode", "test_batchnorm_epsilon_training_mode"
    ],
    "Dropout's mask output (bool) as a graph output": [
        "test_dropout_default_mask", "test_dropout_default_mask_ratio",
        "test_training_dropout_zero_ratio_mask"
    ],
    "Dropout in training mode with a non-zero ratio (random masks)": [
        "test_training_dropout_default", "test_training_dropout", "test_training_dropout_default_mask",
        "test_training_dropout_mask"
    ],
    "0-sized dimension (empty tensor)": [
        "test_reshape_allowzero_reordered"
    ],
    "function expansion uses ops outside the supported set (CastLike, Less, Where, Max, Min, ReduceMax, Exp)": [
        "test_relu_expanded_ver18", "test_clip_example_expanded", "test_clip_expanded",
        "test_clip_inbounds_expanded", "test_clip_outbounds_expanded", "test_clip_splitbounds_expanded",
        "test_clip_min_greater_than_max_expanded", "test_clip_default_min_expanded",
        "test_clip_default_max_expanded", "test_leakyrelu_example_expanded", "test_leakyrelu_expanded",
        "test_leakyrelu_default_expanded", "test_prelu_example_expanded", "test_prelu_broadcast_expanded",
        "test_hardsigmoid_example_expanded_ver18", "test_hardsigmoid_expanded_ver18",
        "test_hardsigmoid_default_expanded_ver18", "test_softmax_example_expanded",
        "test_softmax_example_expanded_ver18", "test_softmax_large_number_expanded",
        "test_softmax_large_number_expanded_ver18", "test_softmax_axis_0_expanded",
        "test_softmax_axis_0_expanded_ver18", "test_softmax_axis_1_expanded",
        "test_softmax_axis_1_expanded_ver18", "test_softmax_axis_2_expanded",
        "test_softmax_axis_2_expanded_ver18", "test_softmax_negative_axis_expanded",
        "test_softmax_negative_axis_expanded_ver18", "test_softmax_default_axis_expanded",
        "test_softmax_default_axis_expanded_ver18"
    ],
}
SKIP = {name: reason for reason, names in _SKIP_GROUPS.items() for name in names}


# ----------------------------------------------------------------------------- collection


@lru_cache(maxsize=1)
def node_cases() -> dict[str, tuple[str, object]]:
    """{case name: (op, TestCase)} for every collected case of a supported op, the function
    expansions (`*_expanded*`) included under the op they expand."""
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some generators of other ops overflow casts on purpose
        everything = collect_testcases()
    op_of = {}
    for case in everything:
        nodes = case.model.graph.node
        if "_expanded" not in case.name and len(nodes) == 1 and nodes[0].op_type in SUPPORTED_OPS:
            op_of[case.name] = nodes[0].op_type
    out = {}
    for case in everything:
        op = op_of.get(case.name.split("_expanded")[0])
        if op:
            out[case.name] = (op, case)
    return out


def _opset(model: onnx.ModelProto) -> int:
    return next(i.version for i in model.opset_import if i.domain in ("", "ai.onnx"))


def _signature(schema) -> tuple:
    return (sorted((k, str(a.default_value)) for k, a in schema.attributes.items()),
            [i.name for i in schema.inputs], [o.name for o in schema.outputs])


def restamp_opset(model: onnx.ModelProto) -> None:
    """Lower an opset above MAX_OPSET to MAX_OPSET when every op means the same there."""
    opset = _opset(model)
    if opset <= MAX_OPSET:
        return
    for n in model.graph.node:
        new, old = onnx.defs.get_schema(n.op_type, MAX_OPSET), onnx.defs.get_schema(n.op_type, opset)
        assert _signature(new) == _signature(old), f"{n.op_type} changed between opset {MAX_OPSET} and {opset}"
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = MAX_OPSET


def compilable(case) -> tuple[onnx.ModelProto, str, np.ndarray, np.ndarray]:
    """(model, update scheme, the one input, expected output 0); the scheme is "all" or "probe"."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    g = model.graph
    inputs, outputs = case.data_sets[0]
    values = {}
    for vi, v in zip(g.input, inputs):
        if not isinstance(v, (np.ndarray, np.generic)):
            raise TypeError(f"input {vi.name!r} is a {type(v).__name__}, not a tensor")
        values[vi.name] = np.asarray(v)
    floats = [n for n, v in values.items() if v.dtype == np.float32]
    keep = floats[0] if floats else g.input[0].name
    clip_bounds = {i for n in g.node if n.op_type == "Clip" for i in n.input[1:]}
    consts = []
    for vi in list(g.input):
        if vi.name == keep:
            continue
        if vi.name in clip_bounds:
            consts.append(helper.make_node("Constant", [], [vi.name], value=numpy_helper.from_array(values[vi.name])))
        else:
            g.initializer.append(numpy_helper.from_array(values[vi.name], vi.name))
        g.input.remove(vi)
    for i, n in enumerate(consts):
        g.node.insert(i, n)
    restamp_opset(model)
    if trainable_params(import_onnx(model)):
        return model, "all", values[keep], outputs[0]
    for n in g.node:
        for k, name in enumerate(n.input):
            if name == keep:
                n.input[k] = "probe_x"
    g.node.insert(0, helper.make_node("Mul", [keep, "probe"], ["probe_x"], name="probe_mul"))
    g.initializer.append(numpy_helper.from_array(np.ones_like(values[keep]), "probe"))
    return model, "probe", values[keep], outputs[0]


def _compile(case, out: Path, build: bool):
    model, update, x, y = compilable(case)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "model.onnx"))
    if update == "probe":
        update = str(out / "scheme.json")
        Path(update).write_text(json.dumps({"probe": 1.0}))
    cfg = CompileConfig(target="host", update=update, loss="mse", quiet=True, build=build, extra_cflags=("-O0",))
    return compile_model(out / "model.onnx", out / "build", cfg), x, y


# ----------------------------------------------------------------------------- tests


CASE_IDS = sorted(node_cases(), key=lambda n: (node_cases()[n][0], n))


def test_skip_list_names_collected_cases() -> None:
    stale = sorted(set(SKIP) - set(node_cases()))
    assert not stale, f"SKIP names cases that onnx no longer generates: {stale}"
    assert not set(SKIP) & set(TOLERANCE)


@pytest.mark.parametrize("name", CASE_IDS, ids=[f"{node_cases()[n][0]}:{n}" for n in CASE_IDS])
def test_node_case(name: str, tmp_path: Path) -> None:
    op, case = node_cases()[name]
    if name in SKIP:
        try:
            _compile(case, tmp_path, build=False)
        except (EdgegradError, TypeError) as e:  # the compiler's rejection; TypeError: a non-tensor input
            pytest.skip(f"{SKIP[name]} [{type(e).__name__}: {str(e).splitlines()[0][:160]}]")
        pytest.fail(f"{name} is in SKIP ({SKIP[name]}) but compiles now: remove it from SKIP")
    from edgegrad.tools.runner import open_device
    compiled, x, y = _compile(case, tmp_path, build=True)
    with open_device(compiled.binary, "host") as dev:
        got = Session(dev, compiled.info).infer(x)
    rtol, atol, _ = TOLERANCE.get(name, (RTOL, ATOL, ""))
    np.testing.assert_allclose(got, y.astype(np.float32), rtol=rtol, atol=atol, err_msg=f"{op} {name}")


# ----------------------------------------------------------------------------- summary


def summary() -> str:
    cases = node_cases()
    total, skipped = Counter(op for op, _ in cases.values()), Counter(cases[n][0] for n in SKIP if n in cases)
    reasons = defaultdict(Counter)
    for n, reason in SKIP.items():
        if n in cases:
            reasons[cases[n][0]][reason] += 1
    lines = [f"{'op':20s} {'cases':>5s} {'run':>5s} {'skip':>5s}"]
    for op in sorted(total):
        lines.append(f"{op:20s} {total[op]:5d} {total[op] - skipped[op]:5d} {skipped[op]:5d}")
        lines += [f"{'':22s}{k} x {r}" for r, k in reasons[op].items()]
    n_all, n_skip = sum(total.values()), sum(skipped.values())
    lines.append(f"{'total':20s} {n_all:5d} {n_all - n_skip:5d} {n_skip:5d}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary())
