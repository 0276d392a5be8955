"""fuse: merge kernels whose intermediate only exists to be consumed once, per target, at compile time.

Assumes: the final training schedule after select_kernels (kernel variants chosen, scratch attached).
Guarantees: the graph computes the same step; a fused node replaces a chain only where the target
has a kernel for it; tensors that only carried values between the fused nodes are gone from the
graph (and so from the arena). Other graphs are returned unchanged.

Fusions:
- ``ConvBwWeightSGD``: a weight gradient computed by the ``implicit`` or ``winograd`` kernel (host) whose only reader is
  one f32 ``SGDUpdate`` of the same block becomes one node, inputs (dy, x, w), at the update's place
  in the schedule (where w was updated before, so every earlier reader of w still sees the old
  weights): conv2d_f32_bw_weight_sgd_<kernel> writes w -= lr * dW from the GEMM's registers, and
  the gradient buffer disappears.
"""

from __future__ import annotations

from ..ir import Graph, Node

# weight-gradient kernels with a fused SGD form conv2d_f32_bw_weight_sgd_<kernel> (same scratch)
SGD_KERNELS = ("implicit", "winograd")


def _conv_sgd(g: Graph, conv: Node, upd: Node) -> Node | None:
    """The fused node for this weight gradient and its update, or None where they do not fit."""
    a, u = conv.attrs, upd.attrs
    w, grad = upd.inputs[0], upd.inputs[1]
    ws = a["w_shape"]
    taps = ws[2] * (ws[3] if len(ws) == 4 else 1)
    if a.get("kernel") not in SGD_KERNELS or g.tensors[w].dtype != "f32" or g.tensors[grad].dtype != "f32":
        return None
    # the update's block must be the gradient's compact layout: m_upd rows of cg_upd * taps
    if (u["rows"], u["inner"], u["stride"]) != (a["m_upd"], a["cg_upd"] * taps, ws[1] * taps):
        return None
    attrs = {k: v for k, v in a.items()}
    attrs.update(lr=u["lr"], w_stride=u["stride"], rows=u["rows"], inner=u["inner"], stride=u["stride"])
    return Node("ConvBwWeightSGD", [conv.inputs[0], conv.inputs[1], w], conv.outputs[1:], attrs,
                f"{upd.name}/fused")


def fuse(g: Graph, target: str) -> Graph:
    if target != "host":
        return g
    producers, consumers = g.producers(), g.consumers()
    replace: dict[int, Node] = {}
    drop: set[int] = set()
    for upd in g.nodes:
        if upd.op != "SGDUpdate":
            continue
        grad = upd.inputs[1]
        conv = producers.get(grad)
        if conv is None or conv.op != "ConvBwWeight" or grad in g.outputs or len(consumers.get(grad, [])) != 1:
            continue
        fused = _conv_sgd(g, conv, upd)
        if fused is None:
            continue
        replace[id(upd)] = fused
        drop.add(id(conv))
        del g.tensors[grad]
    g.nodes = [replace.get(id(n), n) for n in g.nodes if id(n) not in drop]
    return g
