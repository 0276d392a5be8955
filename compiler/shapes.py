"""Shape rules. Explicit for the ops whose numpy reference is expensive (convolutions, pools,
products); every other op's shape is found by running its numpy reference on zeros of the
input shapes, which for data-movement and elementwise ops costs nothing."""

from __future__ import annotations

import numpy as np

from .ir import NP_TO_DTYPE, Graph, Node
from .ops import conv_out, run_ref


def _conv(node: Node, s: list[tuple]) -> list[tuple]:
    x, w = s[0], s[1]
    a = node.attrs
    H, W = (1, x[2]) if len(x) == 3 else x[2:]
    KH, KW = (1, w[2]) if len(w) == 3 else w[2:]
    pt, pl, pb, pr = a["pads"]
    oh = conv_out(H, KH, a["strides"][0], a["dilations"][0], pt, pb)
    ow = conv_out(W, KW, a["strides"][1], a["dilations"][1], pl, pr)
    if x[1] != w[1] * a["group"] or w[0] % a["group"]:
        raise ValueError(f"Conv {node.name}: {x[1]} input channels do not match weight {list(w)} with group {a['group']}")
    return [(x[0], w[0], ow) if len(x) == 3 else (x[0], w[0], oh, ow)]


def _gemm(node: Node, s: list[tuple]) -> list[tuple]:
    a = node.attrs
    m = s[0][1] if a.get("transA") else s[0][0]
    n = s[1][0] if a.get("transB") else s[1][1]
    return [(m, n)]


def _matmul_t(node: Node, s: list[tuple]) -> list[tuple]:
    a, b = s
    m = a[-1] if node.attrs["transA"] else a[-2]
    n = b[-2] if node.attrs["transB"] else b[-1]
    batch = np.broadcast_shapes(a[:-2], b[:-2])
    return [tuple(batch) + (m, n)]


def _matmul(node: Node, s: list[tuple]) -> list[tuple]:
    a, b = s
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ValueError(f"MatMul {node.name}: inner dimensions {list(a)} x {list(b)} differ")
    out = list(np.broadcast_shapes(a2[:-2], b2[:-2])) + [a2[-2], b2[-1]]
    if len(a) == 1:
        out.pop(-2)
    if len(b) == 1:
        out.pop(-1)
    return [tuple(out)]


def _same(node: Node, s: list[tuple]) -> list[tuple]:
    return [s[0]]


def _bcast(node: Node, s: list[tuple]) -> list[tuple]:
    return [tuple(np.broadcast_shapes(*s))]


RULES = {
    "Conv": _conv,
    "ConvBwInput": lambda n, s: [tuple(n.attrs["x_shape"])],
    "ConvBwWeight": lambda n, s: [(n.attrs["m_upd"], n.attrs["cg_upd"]) + tuple(n.attrs["w_shape"][2:])],
    "Gemm": _gemm,
    "MatMul": _matmul,
    "MatMulT": _matmul_t,
    "MaxPool": lambda n, s: [tuple(n.attrs["y_shape"])],
    "AveragePool": lambda n, s: [tuple(n.attrs["y_shape"])],
    "MaxPoolGrad": lambda n, s: [s[1]],
    "AveragePoolGrad": lambda n, s: [tuple(n.attrs["x_shape"])],
    "BatchNormGradScale": lambda n, s: [(s[1][1],)],
    "SoftmaxCrossEntropy": lambda n, s: [(1,), s[0]],
    "MSELoss": lambda n, s: [(1,), s[0]],
    "ReduceSumTo": lambda n, s: [tuple(n.attrs["shape"])],
    "BroadcastTo": lambda n, s: [tuple(n.attrs["shape"])],
    "Reshape": lambda n, s: [tuple(n.attrs["shape"])],
    "Add": _bcast, "Sub": _bcast, "Mul": _bcast, "Div": _bcast,
    "PRelu": lambda n, s: [s[0]], "PReluGradInput": lambda n, s: [s[0]],
    "BatchNormalization": _same, "BatchNormGradInput": _same,
}
for _op, _d in list(__import__("edgegrad.ops", fromlist=["OPS"]).OPS.items()):
    if _d.inplace and _op not in RULES:
        RULES[_op] = _same


def infer_shapes(node: Node, g: Graph) -> list[tuple[tuple[int, ...], str]]:
    shapes = [g.tensors[i].shape if i else None for i in node.inputs]
    rule = RULES.get(node.op)
    if rule is not None:
        return [(tuple(int(d) for d in sh), "f32") for sh in rule(node, shapes)]
    arrays = [np.zeros(sh, np.float32) if i and g.tensors[i].role not in ("const",) else
              (g.tensors[i].data if i else None) for i, sh in zip(node.inputs, shapes)]
    return [(v.shape, NP_TO_DTYPE.get(np.asarray(v).dtype, "f32")) for v in run_ref(node, arrays)]
