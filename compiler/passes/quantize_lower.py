"""quantize_lower: a QDQ graph (as onnxruntime.quantization writes it) -> the int8 IR.

Assumes: the frontend's graph of a QDQ model: int8 weights and int32 biases read through
DequantizeLinear (weights per-channel along the output-channel axis, symmetric), every float op
between a DequantizeLinear of its int8 inputs and one QuantizeLinear of its output (optionally
through a Relu/Clip that ORT did not fold), the graph input quantized once, output 0 dequantized.
Guarantees: only int8 ops remain (QConv, QGemm, QAdd, QMaxPool, QGlobalAveragePool, QClamp, Reshape
on int8), plus one Quantize of the input and one Dequantize of each output; weights (s8) and biases
(i32) are ``param`` tensors named as the ONNX initializers; requantization multipliers and shifts
are computed here (TFLite's QuantizeMultiplier) and held as i32 constants; scales needed by the
backward pass and by QAS stay in the node attributes. Anything else raises one error listing it.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedModelError
from ..ir import Graph, Node
from ..ops_int8 import quantize_multiplier

QMIN, QMAX = -128, 127


def _scalar(g: Graph, name: str, what: str) -> float:
    d = g.tensors[name].data
    if d is None or np.size(d) != 1:
        raise UnsupportedModelError(f"{what} {name!r} must be a constant scalar (per-tensor activations)")
    return float(np.asarray(d).reshape(-1)[0])


def quantize_lower(g: Graph) -> Graph:
    prod = g.producers()
    cons = g.consumers()
    errors: list[str] = []
    act: dict[str, tuple[str, float, int]] = {}  # DQ output -> (int8 tensor, scale, zp)
    wts: dict[str, tuple[str, np.ndarray, int]] = {}  # DQ output -> (int8/int32 initializer, scales, axis)
    out: list[Node] = []
    consts: list[tuple[str, np.ndarray]] = []

    def new_const(name: str, arr: np.ndarray, dtype: str) -> str:
        name = g.unique(name)
        g.add(name, arr.shape, dtype, role="const", data=arr)
        consts.append((name, arr))
        return name

    def qparams_of_output(node: Node) -> tuple[Node, str, float, int, float, float] | None:
        """The QuantizeLinear after ``node`` (through an unfolded Relu/Clip): (Q node, q tensor, scale, zp,
        real lo, real hi of the activation)."""
        y = node.outputs[0]
        lo, hi = -np.inf, np.inf
        users = cons.get(y, [])
        if len(users) == 1 and users[0].op in ("Relu", "Clip"):
            act_node = users[0]
            lo, hi = (0.0, np.inf) if act_node.op == "Relu" else (act_node.attrs["lo"], act_node.attrs["hi"])
            users = cons.get(act_node.outputs[0], [])
        if len(users) != 1 or users[0].op != "QuantizeLinear":
            return None
        q = users[0]
        return q, q.outputs[0], _scalar(g, q.inputs[1], "scale"), int(_scalar(g, q.inputs[2], "zero point")), lo, hi

    def act_range(scale: float, zp: int, lo: float, hi: float) -> tuple[int, int]:
        amin = QMIN if not np.isfinite(lo) else max(QMIN, zp + int(np.round(lo / scale)))
        amax = QMAX if not np.isfinite(hi) else min(QMAX, zp + int(np.round(hi / scale)))
        return amin, amax

    def weight(name: str, node: Node, axis_ok: int) -> tuple[str, np.ndarray]:
        wq, scales, axis = wts[name]
        if axis != axis_ok and np.size(scales) > 1:
            raise UnsupportedModelError(f"{node.name}: weight {wq} is quantized along axis {axis}, not {axis_ok}")
        zp_name = prod[name].inputs[2] if len(prod[name].inputs) > 2 else ""
        if zp_name and np.any(g.tensors[zp_name].data != 0):
            raise UnsupportedModelError(f"{node.name}: weight {wq} has a non-zero zero point (need symmetric weights)")
        n_out = g.tensors[wq].shape[0]
        return wq, np.broadcast_to(np.asarray(scales, np.float64).reshape(-1), (n_out,)).copy()

    float_in = set(g.inputs)  # the float graph input and views of it (a Flatten before the first QuantizeLinear)
    for node in g.nodes:
        if node.op == "Reshape" and node.inputs[0] in float_in:
            float_in.add(node.outputs[0])
            out.append(node)
            continue
        if node.op == "DequantizeLinear":
            src = node.inputs[0]
            t = g.tensors[src]
            scale = g.tensors[node.inputs[1]].data
            if t.role in ("const", "param") and t.data is not None:
                if t.dtype not in ("s8", "i32"):
                    errors.append(f"{node.name}: weight {src} is {t.dtype}, not int8/int32")
                    continue
                wts[node.outputs[0]] = (src, np.asarray(scale, np.float64), node.attrs.get("axis", 1))
            elif t.dtype == "s8":
                act[node.outputs[0]] = (src, _scalar(g, node.inputs[1], "scale"),
                                        int(_scalar(g, node.inputs[2], "zero point")) if len(node.inputs) > 2 else 0)
                if node.outputs[0] in g.outputs:
                    s, z = act[node.outputs[0]][1:]
                    out.append(Node("Dequantize", [src], [node.outputs[0]], {"scale": s, "zp": z}, node.name))
            else:
                errors.append(f"{node.name}: DequantizeLinear of a {t.dtype} tensor (only int8 activations)")
            continue
        if node.op == "QuantizeLinear":
            x = node.inputs[0]
            if x in float_in:
                if g.tensors[node.outputs[0]].dtype != "s8":
                    errors.append(f"{node.name}: input quantized to {g.tensors[node.outputs[0]].dtype}, not int8")
                    continue
                out.append(Node("Quantize", [x], [node.outputs[0]], {
                    "scale": _scalar(g, node.inputs[1], "scale"), "zp": int(_scalar(g, node.inputs[2], "zero point"))},
                    node.name))
            elif prod.get(x) is None or prod[x].op in ("DequantizeLinear",):
                errors.append(f"{node.name}: QuantizeLinear of {x} with no float op before it")
            continue  # otherwise consumed with the float op that produces x
        if node.op in ("Relu", "Clip") and node.inputs[0] not in act:
            continue  # folded into the layer before it (checked when that layer was lowered)
        try:
            lowered = _lower_one(g, node, act, wts, qparams_of_output, act_range, weight, new_const)
        except UnsupportedModelError as e:
            errors.append(str(e))
            continue
        out.append(lowered)
    if errors:
        raise UnsupportedModelError("int8: cannot lower the quantized graph: " + "; ".join(errors))
    g.nodes = out
    used = {i for n in out for i in n.inputs if i} | {o for n in out for o in n.outputs if o} | set(g.inputs)
    used |= {n.attrs["w_scale_tensor"] for n in out if "w_scale_tensor" in n.attrs}
    for name in [n for n in g.tensors if n not in used]:
        del g.tensors[name]
    for name, t in g.tensors.items():
        if t.role in ("const", "param") and t.dtype in ("s8", "i32") and any(
                n.op in ("QConv", "QGemm") and name in n.inputs[1:3] for n in out):
            t.role = "param"  # an int8 weight or int32 bias: trainable if the scheme says so
    g.meta["dtype"] = "int8"
    return g


def _lower_one(g, node, act, wts, qparams_of_output, act_range, weight, new_const) -> Node:
    t = node.op
    ins = [i for i in node.inputs if i]
    x_in = ins[0]
    if x_in not in act:
        raise UnsupportedModelError(f"{node.name} ({t}): input {x_in} is not a dequantized int8 tensor")
    xq, xs, xzp = act[x_in]
    qp = qparams_of_output(node)
    if qp is None:
        raise UnsupportedModelError(f"{node.name} ({t}): output is not quantized to int8 by one QuantizeLinear")
    _, yq, ys, yzp, lo, hi = qp
    amin, amax = act_range(ys, yzp, lo, hi)
    base = {"x_scale": xs, "x_zp": xzp, "y_scale": ys, "y_zp": yzp, "act_min": amin, "act_max": amax}
    if t in ("Conv", "Gemm", "MatMul"):
        if t == "Gemm" and (node.attrs.get("transA") or not node.attrs.get("transB") or node.attrs.get("alpha", 1) != 1
                            or node.attrs.get("beta", 1) != 1):
            raise UnsupportedModelError(f"{node.name}: int8 Gemm needs transA=0, transB=1, alpha=beta=1")
        if t == "MatMul":
            raise UnsupportedModelError(f"{node.name}: int8 MatMul (export the layer as Gemm/Linear)")
        if ins[1] not in wts:
            raise UnsupportedModelError(f"{node.name} ({t}): weight is not a DequantizeLinear of an int8 initializer")
        wq, wscale = weight(ins[1], node, 0)
        inputs = [xq, wq]
        if len(ins) > 2:
            if ins[2] not in wts:
                raise UnsupportedModelError(f"{node.name}: bias is not a DequantizeLinear of an int32 initializer")
            bq, bscale, _ = wts[ins[2]]
            if not np.allclose(np.asarray(bscale).reshape(-1), xs * wscale, rtol=1e-5):
                raise UnsupportedModelError(f"{node.name}: bias scale is not input scale x weight scale")
            inputs.append(bq)
        else:
            inputs.append("")
        mult, shift = zip(*(quantize_multiplier(xs * s / ys) for s in wscale))
        ident = wq.replace("_quantized", "")
        inputs += [new_const(f"{ident}/mult", np.array(mult, np.int32), "i32"),
                   new_const(f"{ident}/shift", np.array(shift, np.int32), "i32")]
        attrs = dict(base, w_scale=[float(s) for s in wscale],
                     w_scale_tensor=new_const(f"{ident}/scale", wscale.astype(np.float32), "f32"))
        if t == "Conv":
            attrs.update({k: node.attrs[k] for k in ("pads", "strides", "dilations", "group")})
        return Node("Q" + t, inputs, [yq], attrs, node.name)
    if t == "MaxPool":
        if (xs, xzp) != (ys, yzp) or (amin, amax) != (QMIN, QMAX):
            raise UnsupportedModelError(f"{node.name}: int8 MaxPool needs the same scale in and out")
        return Node("QMaxPool", [xq], [yq], dict(node.attrs, x_scale=xs, x_zp=xzp), node.name)
    if t in ("Reshape",):
        if (xs, xzp) != (ys, yzp):
            raise UnsupportedModelError(f"{node.name}: int8 {t} needs the same scale in and out")
        return Node("Reshape", [xq], [yq], dict(node.attrs), node.name)
    if t in ("Relu", "Clip"):
        if (xs, xzp) != (ys, yzp):
            raise UnsupportedModelError(f"{node.name}: int8 {t} needs the same scale in and out")
        lo2, hi2 = (0.0, np.inf) if t == "Relu" else (node.attrs["lo"], node.attrs["hi"])
        mn, mx = act_range(ys, yzp, lo2, hi2)
        return Node("QClamp", [xq], [yq], dict(base, act_min=max(mn, amin), act_max=min(mx, amax)), node.name)
    if t == "GlobalAveragePool":
        hw = int(np.prod(g.tensors[xq].shape[2:]))
        m, s = quantize_multiplier(xs / (ys * hw))
        return Node("QGlobalAveragePool", [xq], [yq], dict(base, mult=m, shift=s), node.name)
    if t == "Add":
        if len(ins) != 2 or ins[1] not in act or g.tensors[ins[0]].shape != g.tensors[ins[1]].shape:
            raise UnsupportedModelError(f"{node.name}: int8 Add of two same-shape int8 tensors only")
        bq, bs, bzp = act[ins[1]]
        twice = 2 * max(xs, bs)
        am, ash = quantize_multiplier(xs / twice)
        bm, bsh = quantize_multiplier(bs / twice)
        om, osh = quantize_multiplier(twice / ((1 << 20) * ys))
        return Node("QAdd", [xq, bq], [yq], dict(base, a_zp=xzp, b_zp=bzp, b_scale=bs, a_mult=am, a_shift=ash,
                                                  b_mult=bm, b_shift=bsh, y_mult=om, y_shift=osh), node.name)
    raise UnsupportedModelError(f"{node.name}: no int8 kernel for {t}")
