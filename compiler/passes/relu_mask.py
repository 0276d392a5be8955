"""relu_mask: keep a 1-bit mask instead of a ReLU's (or Clip's) fp32 output where the backward
needs only which elements passed.

Assumes: the training graph of build_training_graph (forward nodes first, ``meta["n_forward"]``
of them), fp32 or int8 (before quantize_qas), before recompute and select_kernels. Guarantees: the same numbers reach every
backward node (the mask holds exactly the predicate relu_f32_bw / clip_f32_bw test, so the
gradients are bit-identical), and a ReLU output y is replaced in the backward only when every
backward reader of y (or of a view of y) is the ReluGrad/ClipGrad that reads it as its mask,
i.e. when nothing else needs y's values: the next layer is frozen or bias-only (its weight
gradient would read y), y is not a graph output, not itself a gradient input. Then:

    forward:  y = Relu(x); m = ReluMask(y)           (m: u8[(n+7)/8], bit i%8 of byte i/8)
    backward: dx = MaskGrad(dy, m)                   (was ReluGrad(dy, y))

so y dies after its forward readers and the backward keeps n/8 bytes instead of 4n (32x less).
int8 alike: an int8 layer's output y (s8) that the backward reads only for QSatGrad's saturation
mask (act_min < y < act_max) becomes a mask (n/8 bytes instead of n) read by MaskGrad.
ReluMask is a training-only forward node (``save``: the inference entry point skips it, as it
skips activation cuts). E.g. a bias-only MobileNetV2 keeps every ReLU6 output of the network for
its gradient mask; with masks it keeps 1/32 of those bytes (and the recompute pass, which runs
after, has less to recompute). The mcu target runs it by default (CompileConfig.relu_mask).
"""

from __future__ import annotations

from ..ir import Graph, Node
from ..ops import OPS

MASK_GRADS = {"ReluGrad": "Relu", "ClipGrad": "Clip"}  # fp32: the grad reading y's sign, and y's producer
# int8 (--dtype int8): QConv/QGemm/QClamp/QAdd saturate to [act_min, act_max]; their backward reads the
# int8 output only for QSatGrad's mask act_min < y < act_max (1 byte -> 1 bit per element).


def _aliases(g: Graph, t: str) -> set[str]:
    """t and every view of it (Reshape, Flatten, ...), transitively: they share t's bytes."""
    out, todo = {t}, [t]
    while todo:
        x = todo.pop()
        for n in g.nodes:
            d = OPS.get(n.op)
            if d is not None and d.view and n.inputs and n.inputs[0] == x and n.outputs[0] not in out:
                out.add(n.outputs[0])
                todo.append(n.outputs[0])
    return out


def relu_mask(g: Graph) -> Graph:
    n_fwd = g.meta.get("n_forward")
    if n_fwd is None:
        return g
    fwd, bwd = g.nodes[:n_fwd], g.nodes[n_fwd:]
    readers: dict[str, list[Node]] = {}
    for n in bwd:
        for i in n.inputs:
            if i:
                readers.setdefault(i, []).append(n)
    out: list[Node] = []
    masked: list[str] = []
    for n in fwd:
        out.append(n)
        if n.attrs.get("save") or len(n.outputs) != 1:
            continue
        y = n.outputs[0]
        t = g.tensors[y]
        users = readers.get(y, [])
        grad = "QSatGrad" if t.dtype == "s8" else next((k for k, v in MASK_GRADS.items() if v == n.op), None)
        if grad is None or not users or y in g.outputs or t.dtype not in ("f32", "s8") or t.role != "activation":
            continue
        if any(r.op != grad or r.inputs[1] != y or r.inputs[0] == y for r in users):
            continue  # y's values are read by the backward (a weight gradient, ...): keep y
        if any(readers.get(a) for a in _aliases(g, y) - {y}):
            continue
        if any(r.attrs != users[0].attrs for r in users):
            continue  # two Clip readers with different bounds: one mask cannot serve both
        m = g.unique(f"{y}/mask")
        g.add(m, ((t.size + 7) // 8,), "u8", role="activation")
        attrs = {"lo": users[0].attrs.get("lo", 0.0), "save": True}
        if grad != "ReluGrad":
            attrs["hi"] = users[0].attrs["hi"]
        out.append(Node("ReluMask", [y], [m], attrs, f"{n.name}/mask"))
        for r in users:
            r.op, r.inputs, r.attrs = "MaskGrad", [r.inputs[0], m], {}
        masked.append(y)
    if masked:
        g.nodes = out + bwd
        g.meta["n_forward"] = len(out)
        g.meta["relu_masks"] = list(g.meta.get("relu_masks", [])) + masked
    return g
