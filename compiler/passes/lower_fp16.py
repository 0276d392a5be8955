"""lower_fp16: mixed precision for `--dtype fp16` — fp16 activations and gradients in the arena,
fp32 compute and accumulation, fp32 master parameters, fp32 loss, dynamic loss scaling.

Assumes: the training graph of build_training_graph (before select_kernels and plan_memory).
Guarantees:

* every activation and gradient the arena holds between kernels is ``f16`` (binary16 bits,
  runtime_c/eg_f16.h), except the graph inputs and outputs (the host reads and writes them as
  fp32) and the loss node's outputs; the parameter gradients too, loss-scaled, which is what
  keeps the all-or-nothing update below from holding every gradient in fp32;
* convolutions (forward, input and weight gradient) and GEMMs (Gemm, MatMul, MatMulT) run native
  fp16 kernels (``attrs["f16"]``, runtime_c/eg_conv_f16.h, eg_gemm_f16.h: fp16 operands, fp32
  accumulation): their fp16 tensors are read and written in place, an fp32 operand they take in
  fp16 (a parameter: the fp32 master; the graph input) is rounded into a short-lived fp16 copy by
  ``CastF16`` before the call, and a frozen constant weight is stored in fp16 only; the bias and
  the weight gradient stay fp32 (``gemm_f16_y32`` for an fp32 GEMM output);
* every other kernel still sees fp32: a ``CastF32`` node widens an fp16 input into a short-lived
  fp32 buffer before the call and a ``CastF16`` node rounds its fp32 output into the fp16 tensor
  after it (view ops such as Reshape keep the fp16 bytes and need no cast);
* dynamic loss scaling: ``LossScale`` multiplies the loss gradient by 2^(log2_init + ls[0]) before
  it is rounded to fp16; every parameter gradient is checked (``LossCheckF16``, or ``LossUnscale``
  for an fp32 one: raise the overflow flag ls[2] on any inf/NaN); the parameter updates move after
  all the checks and run only when the flag is clear (`skip_on_overflow`), each reading its
  gradient unscaled into a short-lived fp32 copy (``LossUnscaleF16``), so a step that overflows
  writes no parameter and no optimizer state (the fp16 gradients live until the updates: the
  price of all-or-nothing steps); ``LossScaleUpdate`` at the end halves the scale after an overflow and doubles it
  after ``growth_interval`` clean steps. ls is the model state ``fp16/loss_scale`` [3], zero at start.
"""

from __future__ import annotations

from ..errors import EdgegradError
from ..ir import Graph, Node
from ..ops import OPS

UPDATE_OPS = ("SGDUpdate", "MomentumUpdate", "AdamUpdate")
LOSS_OPS = ("SoftmaxCrossEntropy", "MSELoss")
LOSS_SCALE_STATE = "fp16/loss_scale"
# native fp16 kernels: the input positions they take in fp16 and what their output must be
# ("f16": the fp16 tensor itself, "f32": an fp32 tensor, "any": either, picked by the lowering)
F16_OPS = ("LossCheckF16", "LossUnscaleF16")  # take their fp16 input as it is
NATIVE = {"Conv": ((0, 1), "f16"), "ConvBwInput": ((0, 1), "f16"), "ConvBwWeight": ((0, 1), "any"),
          "Gemm": ((0, 1), "any"), "MatMul": ((0, 1), "any"), "MatMulT": ((0, 1), "any"),
          # runtime_c/eg_eltwise_f16.h
          "Relu": ((0,), "f16"), "ReluGrad": ((0, 1), "f16"), "Clip": ((0,), "f16"), "ClipGrad": ((0, 1), "f16"),
          "Add": ((0, 1), "f16"), "MaxPool": ((0,), "f16"), "MaxPoolGrad": ((0, 1), "f16"),
          "ReduceSumTo": ((0,), "f32")}


def _native(g: Graph, n: Node, half: set[str]) -> tuple[int, ...] | None:
    """The fp16 input positions of n's native kernel, or None where n keeps the fp32 kernel: its
    output has the other dtype, or an fp32 activation (the graph input) would have to be rounded.
    The first layer keeps its input in fp32 on purpose: rounding the input image too made exact
    ties in cnn_fashion's first max-pool windows and moved 7% of the conv gradients (the same in a
    PyTorch emulation), for a layer with 1-3 input channels where fp16 saves little."""
    if n.op not in NATIVE or len(n.outputs) != 1:
        return None
    ins, out = NATIVE[n.op]
    if out == "f16" and n.outputs[0] not in half:
        return None
    if any(n.inputs[k] not in half and g.tensors[n.inputs[k]].role not in ("param", "const") for k in ins):
        return None
    if n.op == "Add" and not g.tensors[n.inputs[0]].shape == g.tensors[n.inputs[1]].shape == \
            g.tensors[n.outputs[0]].shape:
        return None  # add_f16 has no broadcast
    if n.op == "MaxPoolGrad":  # disjoint windows only: no accumulation in fp16
        a = n.attrs
        if any(s <= (k - 1) * d for s, k, d in zip(a["strides"], a["kernel"], a["dilations"])):
            return None
    return ins


def lower_fp16(g: Graph, log2_init: int = 10, growth_interval: int = 1000, loss_scaling: bool = True) -> Graph:
    """loss_scaling=False is the ablation (``--loss-scale off``): no scaling, no overflow check, no
    skipped step: an overflowing step writes inf/NaN into the parameters, which is what the default prevents."""
    if not -24 <= log2_init <= 15:
        raise EdgegradError(f"--loss-scale 2^{log2_init}: the initial loss scale must be 2^-24 .. 2^15")
    n_fwd = g.meta.get("n_forward", len(g.nodes))
    nodes = list(g.nodes)
    loss_nodes = [n for n in nodes if n.op in LOSS_OPS]
    updates = [n for n in nodes if n.op in UPDATE_OPS]
    if len(loss_nodes) != 1:
        raise EdgegradError(f"--dtype fp16: expected one loss node, found {len(loss_nodes)}")
    loss_node = loss_nodes[0]

    import numpy as np
    scale_attrs = {"log2_init": log2_init, "growth_interval": growth_interval}
    dl_scaled = loss_node.outputs[1]
    if loss_scaling:
        g.add(LOSS_SCALE_STATE, (3,), "f32", role="state", data=np.zeros(3, np.float32))
        g.meta.setdefault("state", []).append(LOSS_SCALE_STATE)

        # 1. loss scaling: the loss gradient is scaled in fp32, right after the loss node.
        dl = loss_node.outputs[1]
        dl_scaled = g.unique(f"{dl}/scaled")
        g.add(dl_scaled, g.tensors[dl].shape, "f32", role="grad")
        for n in nodes:
            if n is not loss_node:
                n.inputs = [dl_scaled if i == dl else i for i in n.inputs]
        scale = Node("LossScale", [dl, LOSS_SCALE_STATE], [dl_scaled], dict(scale_attrs), f"{loss_node.name}/scale")
        nodes.insert(nodes.index(loss_node) + 1, scale)

    # 2. which tensors live in fp16: every activation and gradient but the graph's inputs and
    # outputs and the loss; the parameter gradients too (held, loss-scaled, until the updates)
    for u in updates:
        nodes.remove(u)
    keep32 = set(g.inputs) | set(g.outputs) | set(loss_node.outputs) | {dl_scaled}
    half = {name for name, t in g.tensors.items()
            if t.role in ("activation", "grad") and t.dtype == "f32" and name not in keep32}
    # a view shares its input's bytes: both ends must agree on the dtype
    changed = True
    while changed:
        changed = False
        for n in nodes:
            d = OPS.get(n.op)
            if d is not None and d.view and n.outputs:
                x, y = n.inputs[0], n.outputs[0]
                if (x in half) != (y in half):
                    half.discard(x)
                    half.discard(y)
                    changed = True

    # a gradient whose kernel stays fp32 (the first layer: its input is the fp32 graph input) is
    # kept fp32: rounding it would take an fp32 staging buffer as large as itself
    producer = {o: n for n in nodes for o in n.outputs}
    for u in updates:
        p = producer.get(u.inputs[1])
        if p is not None and p.op in NATIVE and _native(g, p, half | {u.inputs[1]}) is None:
            half.discard(u.inputs[1])

    # 3. check every parameter gradient, then the updates, guarded by the flag: an fp16 gradient
    # is checked in place (LossCheckF16) and unscaled into a short-lived fp32 copy right before its
    # update (LossUnscaleF16); an fp32 one is unscaled and checked in place (LossUnscale)
    checks, tail = [], []
    for u in updates if loss_scaling else []:
        gname = u.inputs[1]
        u.attrs["skip_on_overflow"] = LOSS_SCALE_STATE
        if gname in half:
            checks.append(Node("LossCheckF16", [gname, LOSS_SCALE_STATE], [], dict(scale_attrs), f"{u.name}/check"))
            g32 = g.unique(f"{gname}/f32")
            g.add(g32, g.tensors[gname].shape, "f32", role="grad")
            tail.append(Node("LossUnscaleF16", [gname, LOSS_SCALE_STATE], [g32], dict(scale_attrs),
                             f"{u.name}/unscale"))
            u.inputs[1] = g32
        else:
            checks.append(Node("LossUnscale", [gname, LOSS_SCALE_STATE], [], dict(scale_attrs), f"{u.name}/unscale"))
        tail.append(u)
    if loss_scaling:
        tail.append(Node("LossScaleUpdate", [LOSS_SCALE_STATE], [], dict(scale_attrs), "fp16/loss_scale/update"))
    else:
        tail = updates  # unguarded: each update widens its fp16 gradient (CastF32 below)
    nodes += checks + tail

    # 4. casts around every kernel that touches an fp16 tensor
    out: list[Node] = []
    new_n_fwd = 0
    const16: dict[str, str] = {}  # frozen constant -> its fp16 copy (stored fp16 only)
    for idx, n in enumerate(nodes):
        d = OPS.get(n.op)
        before, after = [], []
        native = _native(g, n, half)
        if native is not None:
            n.attrs["f16"] = True
            for k in native:
                i = n.inputs[k]
                if i in half:
                    continue
                t = g.tensors[i]
                if t.role == "const" and t.data is not None:
                    if i not in const16:
                        const16[i] = g.unique(f"{i}/f16")
                        g.add(const16[i], t.shape, "f16", role="const", data=np.asarray(t.data).astype(np.float16))
                    n.inputs[k] = const16[i]
                    continue
                narrow = g.unique(f"{i}/f16")
                g.add(narrow, t.shape, "f16", role="activation")
                before.append(Node("CastF16", [i], [narrow], {}, f"{n.name}/narrow{k}"))
                n.inputs[k] = narrow
        if native is not None and NATIVE[n.op][1] == "f32" and n.outputs[0] in half:
            # an fp32-output kernel (the weight gradient) whose tensor is fp16: round it after
            wide = g.unique(f"{n.outputs[0]}/f32")
            g.add(wide, g.tensors[n.outputs[0]].shape, "f32", role="grad")
            after.append(Node("CastF16", [wide], [n.outputs[0]], {}, f"{n.name}/round0"))
            n.outputs[0] = wide
        if not (d is not None and d.view) and n.op not in F16_OPS:
            for k, i in enumerate(n.inputs):
                if i in half and not (native is not None and k in native):
                    wide = g.unique(f"{i}/f32")
                    g.add(wide, g.tensors[i].shape, "f32", role="activation")
                    before.append(Node("CastF32", [i], [wide], {}, f"{n.name}/widen{k}"))
                    n.inputs[k] = wide
            for k, o in enumerate(n.outputs):
                if o in half and native is None:
                    wide = g.unique(f"{o}/f32")
                    g.add(wide, g.tensors[o].shape, "f32", role="activation")
                    after.append(Node("CastF16", [wide], [o], {}, f"{n.name}/round{k}"))
                    n.outputs[k] = wide
        if n.attrs.get("save"):
            for c in before + after:
                c.attrs["save"] = n.attrs["save"]
        group = before + [n] + after
        out += group
        if idx < n_fwd:
            new_n_fwd += len(group)
    for name in half:
        g.tensors[name].dtype = "f16"
    g.nodes = out
    g.meta["n_forward"] = new_n_fwd
    g.meta["fp16"] = {"log2_init": log2_init, "growth_interval": growth_interval, "state": LOSS_SCALE_STATE,
                      "f16_tensors": len(half), "native": sum(1 for n in out if n.attrs.get("f16"))}
    return g
