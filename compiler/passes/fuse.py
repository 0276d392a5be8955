"""fuse: merge kernels whose intermediate only exists to be consumed once, per target, at compile time.

Assumes: the final training schedule after select_kernels (kernel variants chosen, scratch attached).
Guarantees: the graph computes the same step; a fused node replaces a chain only where the target
has a kernel for it; tensors that only carried values between the fused nodes are gone from the
graph (and so from the arena). Other graphs are returned unchanged.

Fusions:
- ``ConvBwWeightSGD``: a weight gradient computed by the ``implicit`` or ``winograd`` kernel (host), or by the
  ``tiled`` one on a pointwise layer over fewer than NT_PIXELS pixels (its strided GEMM), whose only reader is
  one f32 ``SGDUpdate`` of the same block becomes one node, inputs (dy, x, w), at the update's place
  in the schedule (where w was updated before, so every earlier reader of w still sees the old
  weights): conv2d_f32_bw_weight_sgd_<kernel> writes w -= lr * dW from the GEMM's registers, and
  the gradient buffer disappears.
- ``ConvBwWeightMomentum``: the same for an f32 ``MomentumUpdate`` (inputs (dy, x, w, v)): momentum
  is linear in dW as well, so conv2d_f32_bw_weight_momentum_{implicit,winograd} scales v by mu, adds the
  GEMM's parts of dW to v, then w -= lr * v. (Adam squares the whole gradient: it keeps its buffer.)
- ``ReduceSumUpdate``: a bias gradient (``ReduceSumTo`` of a conv/Gemm output gradient over its
  pixels, batch 1: row sums of contiguous rows) whose only reader is one f32 SGD/momentum/Adam
  update becomes one node, inputs (dy, w, state...): reduce_rows_{sgd,momentum,adam}_f32 sums each
  row in a register and updates the bias from it (the reduce_sum_f32 call, the sgd_f32 /
  momentum_f32 / adam_f32 call and the gradient buffer disappear; same results bit for bit).
"""

from __future__ import annotations

from ..ir import Graph, Node

# weight-gradient kernels with a fused SGD form conv2d_f32_bw_weight_sgd_<kernel> (same scratch); "tiled": pointwise
# layers only (_sgd_shape_fits)
SGD_KERNELS = ("implicit", "winograd", "tiled")
MOMENTUM_KERNELS = ("implicit", "winograd")  # conv2d_f32_bw_weight_momentum_{kernel}
FUSED_UPDATES = {"SGDUpdate": "sgd", "MomentumUpdate": "momentum", "AdamUpdate": "adam"}


def _sgd_shape_fits(g: Graph, conv: Node) -> bool:
    """conv2d_f32_bw_weight_sgd_tiled takes pointwise layers whose tiled weight gradient is the strided GEMM
    (below NT_PIXELS pixels: the dot-product kernel above has no fused form); the other kernels take every shape."""
    if conv.attrs.get("kernel") != "tiled":
        return True
    from ..kernels_tiled import NT_PIXELS, is_pointwise
    from .select_kernels import conv_sizes
    d = conv_sizes(g, conv)
    return is_pointwise(d["H"], d["W"], d["OH"], d["OW"], d["KH"], d["KW"], d["sh"], d["sw"], d["pt"], d["pl"]) \
        and d["OH"] * d["OW"] < NT_PIXELS


def _conv_sgd(g: Graph, conv: Node, upd: Node) -> Node | None:
    """The fused node for this weight gradient and its update, or None where they do not fit."""
    a, u = conv.attrs, upd.attrs
    w, grad = upd.inputs[0], upd.inputs[1]
    ws = a["w_shape"]
    taps = ws[2] * (ws[3] if len(ws) == 4 else 1)
    if a.get("kernel") not in SGD_KERNELS or g.tensors[w].dtype != "f32" or g.tensors[grad].dtype != "f32" \
            or not _sgd_shape_fits(g, conv):
        return None
    # the update's block must be the gradient's compact layout: m_upd rows of cg_upd * taps
    if (u["rows"], u["inner"], u["stride"]) != (a["m_upd"], a["cg_upd"] * taps, ws[1] * taps):
        return None
    attrs = {k: v for k, v in a.items()}
    attrs.update(lr=u["lr"], w_stride=u["stride"], rows=u["rows"], inner=u["inner"], stride=u["stride"])
    if upd.op == "MomentumUpdate":
        if a.get("kernel") not in MOMENTUM_KERNELS:  # kernels with a _momentum_ form
            return None
        attrs["mu"] = u["mu"]
        return Node("ConvBwWeightMomentum", [conv.inputs[0], conv.inputs[1], w, upd.inputs[2]], conv.outputs[1:],
                    attrs, f"{upd.name}/fused")
    return Node("ConvBwWeightSGD", [conv.inputs[0], conv.inputs[1], w], conv.outputs[1:], attrs,
                f"{upd.name}/fused")


def _row_sums(g: Graph, red: Node) -> int | None:
    """n when the ReduceSumTo sums contiguous runs of n elements (y[k] = sum x[k*n .. k*n + n)),
    the row-sum case of reduce_sum_f32 (leading size-1 dims, kept dims, then reduced dims), else None."""
    xs = g.tensors[red.inputs[0]].shape
    out = tuple(red.attrs["shape"])
    full = (1,) * (len(xs) - len(out)) + out
    if len(full) != len(xs) or any(f not in (1, d) for f, d in zip(full, xs)):
        return None
    dims = [d for d in range(len(xs)) if xs[d] != 1]
    kept = [d for d in dims if full[d] == xs[d]]
    if kept != dims[:len(kept)]:  # a reduced dim before a kept one: not contiguous rows
        return None
    n = 1
    for d in dims[len(kept):]:
        n *= xs[d]
    return n


def _bias_update(g: Graph, red: Node, upd: Node) -> Node | None:
    """The fused node for a bias gradient (row sums) and its update, or None where they do not fit."""
    if red.attrs.get("f16") or any(g.tensors[t].dtype != "f32" for t in (*red.inputs, *upd.inputs)):
        return None
    n = _row_sums(g, red)
    u = upd.attrs
    if n is None or u["rows"] * u["inner"] != g.tensors[red.outputs[0]].size:
        return None
    attrs = dict(u, optimizer=FUSED_UPDATES[upd.op], n=n)
    return Node("ReduceSumUpdate", [red.inputs[0], upd.inputs[0], *upd.inputs[2:]], [], attrs, f"{upd.name}/fused")


def fused_summary(g: Graph) -> dict[str, int]:
    """How many nodes each fusion (this pass and fuse_eltwise) made, for build.json / inspect."""
    out: dict[str, int] = {}
    for n in g.nodes:
        kinds = []
        if n.op in ("Conv", "Gemm") and n.attrs.get("act"):
            kinds.append(f"{n.op.lower()}+{n.attrs['act']}")
        if n.op == "Conv" and n.attrs.get("kernel") == "dwclip":
            kinds.append("depthwise+clip")
        if n.op in ("ConvBwInput", "Gemm") and n.attrs.get("mask"):
            what = "conv_bw_input" if n.op == "ConvBwInput" else "gemm_bw_input"
            kinds.append(f"{what}+{'ReluGrad' if n.attrs['mask'][0] == 'relu' else 'ClipGrad'}")
        if n.op in ("ConvBwWeightSGD", "ConvBwWeightMomentum"):
            kinds.append(n.op)
        if n.op == "ReduceSumUpdate":
            kinds.append(f"bias_grad+{n.attrs['optimizer']}")
        for k in kinds:
            out[k] = out.get(k, 0) + 1
    return out


def fuse(g: Graph, target: str) -> Graph:
    if target != "host":
        return g
    producers, consumers = g.producers(), g.consumers()
    replace: dict[int, Node] = {}
    drop: set[int] = set()
    for upd in g.nodes:
        if upd.op not in FUSED_UPDATES or upd.attrs.get("skip_on_overflow"):
            continue
        grad = upd.inputs[1]
        conv = producers.get(grad)
        if conv is None or g.sole_reader(grad, consumers) is None:
            continue
        view = None
        if conv.op == "Reshape":  # a bias gradient [1, M, 1, 1] viewed as [M]
            view, conv = conv, producers.get(conv.inputs[0])
            if conv is None or conv.op != "ReduceSumTo" or g.sole_reader(conv.outputs[0], consumers) is None:
                continue
        if conv.op == "ConvBwWeight" and upd.op != "AdamUpdate":
            fused = _conv_sgd(g, conv, upd)
        elif conv.op == "ReduceSumTo":
            fused = _bias_update(g, conv, upd)
        else:
            continue
        if fused is None:
            continue
        replace[id(upd)] = fused
        drop.add(id(conv))
        del g.tensors[grad]
        if view is not None:
            drop.add(id(view))
            del g.tensors[conv.outputs[0]]
    g.nodes = [replace.get(id(n), n) for n in g.nodes if id(n) not in drop]
    return g
