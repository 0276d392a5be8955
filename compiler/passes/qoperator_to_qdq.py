"""qoperator_to_qdq: an operator-format quantized ONNX model (QLinearConv, QLinearMatMul, and the
com.microsoft QGemm / QLinearAdd / QLinearGlobalAveragePool that onnxruntime writes with
QuantFormat.QOperator) rewritten to the equivalent QDQ form, which passes/quantize_lower reads.

Assumes: every quantized op's scales and zero points are initializers; int8 activations.
Guarantees: the same arithmetic, spelled DequantizeLinear -> float op -> QuantizeLinear; int8 ops
that ORT runs directly on int8 tensors (MaxPool, Flatten, Reshape, ...) get the same pair with the
input's own quantization parameters; a QLinearMatMul with a constant [K, N] weight becomes a Gemm
(transB=1) over the transposed int8 weight; tensor names of weights and activations are kept.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import UnsupportedModelError

QOPS = {"QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearGlobalAveragePool"}
PASSTHROUGH = {"MaxPool", "Flatten", "Reshape", "Relu", "Clip", "Squeeze", "Unsqueeze", "Transpose", "Identity"}


def is_qoperator(model: onnx.ModelProto) -> bool:
    return any(n.op_type in QOPS for n in model.graph.node)


def qoperator_to_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    qparams: dict[str, tuple[str, str]] = {}  # int8 activation -> (scale, zero point) initializer names
    nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    counter = [0]

    def uniq(base: str) -> str:
        counter[0] += 1
        return f"{base}__qdq{counter[0]}"

    def arr(name: str) -> np.ndarray:
        if name not in inits:
            raise UnsupportedModelError(f"quantization parameter {name!r} is not an initializer")
        return numpy_helper.to_array(inits[name])

    def dq(x: str, s: str, z: str, axis: int | None = None) -> str:
        out = uniq(f"{x}_dq")
        kw = {"axis": axis} if axis is not None else {}
        nodes.append(helper.make_node("DequantizeLinear", [x, s, z], [out], name=uniq("dq"), **kw))
        return out

    def q(x: str, y: str, s: str, z: str) -> None:
        nodes.append(helper.make_node("QuantizeLinear", [x, s, z], [y], name=uniq("q")))
        qparams[y] = (s, z)

    def bias(b: str, xs: str, ws: str) -> str:
        scale = (arr(xs).astype(np.float64) * arr(ws).astype(np.float64)).astype(np.float32).reshape(-1)
        sname, zname = uniq(f"{b}_scale"), uniq(f"{b}_zero_point")
        new_inits.append(numpy_helper.from_array(scale, sname))
        new_inits.append(numpy_helper.from_array(np.zeros(scale.size, np.int32), zname))
        return dq(b, sname, zname, axis=0)

    for n in g.node:
        t, i, o = n.op_type, list(n.input), list(n.output)
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if t == "QuantizeLinear":
            nodes.append(n)
            qparams[o[0]] = (i[1], i[2])
        elif t == "QLinearConv":
            x = dq(i[0], i[1], i[2])
            w = dq(i[3], i[4], i[5], axis=0)
            ins = [x, w] + ([bias(i[8], i[1], i[4])] if len(i) > 8 and i[8] else [])
            y = uniq(f"{o[0]}_f")
            nodes.append(helper.make_node("Conv", ins, [y], name=n.name, **attrs))
            q(y, o[0], i[6], i[7])
        elif t == "QLinearMatMul":
            if i[3] not in inits or arr(i[3]).ndim != 2:
                raise UnsupportedModelError(f"{n.name}: QLinearMatMul needs a constant 2-D weight")
            wt_name = uniq(f"{i[3]}_t")
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(arr(i[3]).T), wt_name))
            x = dq(i[0], i[1], i[2])
            w = dq(wt_name, i[4], i[5], axis=0)
            y = uniq(f"{o[0]}_f")
            nodes.append(helper.make_node("Gemm", [x, w], [y], name=n.name, transB=1))
            q(y, o[0], i[6], i[7])
        elif t == "QGemm" and n.domain == "com.microsoft":
            if len(i) < 9 or not i[7]:
                raise UnsupportedModelError(f"{n.name}: QGemm with a float output")
            x = dq(i[0], i[1], i[2])
            w = dq(i[3], i[4], i[5], axis=0 if attrs.get("transB", 0) else 1)
            ins = [x, w] + ([bias(i[6], i[1], i[4])] if i[6] else [])
            y = uniq(f"{o[0]}_f")
            nodes.append(helper.make_node("Gemm", ins, [y], name=n.name, **attrs))
            q(y, o[0], i[7], i[8])
        elif t == "QLinearAdd" and n.domain == "com.microsoft":
            a, b = dq(i[0], i[1], i[2]), dq(i[3], i[4], i[5])
            y = uniq(f"{o[0]}_f")
            nodes.append(helper.make_node("Add", [a, b], [y], name=n.name))
            q(y, o[0], i[6], i[7])
        elif t == "QLinearGlobalAveragePool" and n.domain == "com.microsoft":
            if attrs.get("channels_last", 0):
                raise UnsupportedModelError(f"{n.name}: channels_last QLinearGlobalAveragePool")
            y = uniq(f"{o[0]}_f")
            nodes.append(helper.make_node("GlobalAveragePool", [dq(i[0], i[1], i[2])], [y], name=n.name))
            q(y, o[0], i[3], i[4])
        elif t in PASSTHROUGH and i and i[0] in qparams:
            s, z = qparams[i[0]]
            y = uniq(f"{o[0]}_f")
            nodes.append(helper.make_node(t, [dq(i[0], s, z)] + i[1:], [y], name=n.name, **attrs))
            q(y, o[0], s, z)
        elif n.domain not in ("", "ai.onnx"):
            raise UnsupportedModelError(f"{n.domain}.{t} ({n.name}) in an operator-format quantized model")
        else:
            nodes.append(n)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(new_inits)
    keep = [op for op in out.opset_import if op.domain not in ("com.microsoft",)]
    del out.opset_import[:]
    out.opset_import.extend(keep)
    return out
