"""Multiply-accumulate counts per node (forward and backward), for inspect and the benchmarks."""

from __future__ import annotations

import numpy as np

from .ir import Graph, Node


def node_macs(n: Node, g: Graph) -> int:
    sh = lambda name: g.tensors[name].shape
    prod = lambda s: int(np.prod(s, dtype=np.int64))
    if n.op in ("Conv", "QConv"):
        w = sh(n.inputs[1])
        return prod(sh(n.outputs[0])) * prod(w[1:])
    if n.op == "QConvPwDw":  # the 1x1 expansion over the full plane, then the depthwise
        mid = n.attrs["mid_shape"]
        return prod(mid) * sh(n.inputs[0])[1] + prod(sh(n.outputs[0])) * prod(sh(n.inputs[5])[1:])
    if n.op in ("ConvBwInput", "ConvBwInputS8W"):
        w = sh(n.inputs[1])
        return prod(sh(n.inputs[0])) * prod(w[1:])
    if n.op in ("ConvBwWeight", "ConvBwWeightSGD", "ConvBwWeightMomentum"):  # the fused node has no gradient tensor: its block
        dy, a = sh(n.inputs[0]), n.attrs
        return a["m_upd"] * a["cg_upd"] * prod(a["w_shape"][2:]) * prod(dy[2:]) * dy[0]
    if n.op in ("QGemm", "GemmS8W"):
        return prod(sh(n.outputs[0])) * sh(n.inputs[0])[-1]
    if n.op in ("Gemm", "MatMul", "MatMulT"):
        a = sh(n.inputs[0])
        k = a[0] if n.attrs.get("transA") else a[-1]
        return prod(sh(n.outputs[0])) * k
    return 0


def graph_macs(g: Graph, nodes=None) -> int:
    return sum(node_macs(n, g) for n in (g.nodes if nodes is None else nodes))
