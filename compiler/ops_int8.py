"""Int8 ops for ``--dtype int8``: registered in the one registry (``ops.OPS``) with numpy references
that compute exactly what the C kernels compute, and gradient rules.

Integer semantics (TFLite / CMSIS-NN): an int8 tensor q stands for s * (q - zp). A layer accumulates
in int32, ``acc = sum (x - zp_x) * w + b`` (weights symmetric, zp 0; bias int32 with scale s_x*s_w),
and requantizes with a fixed-point multiplier computed at compile time:
``y = clamp(zp_y + MultiplyByQuantizedMultiplier(acc, M, shift), act_min, act_max)``.

Gradients are real-valued (fp32): the gradient of the *dequantized* graph, where each int8 layer is
``y = sat(layer(deq(x), deq(w)) + deq(b))`` and the saturation (which carries any fused ReLU/ReLU6)
passes the gradient where the int8 output lies strictly inside (act_min, act_max). Rounding is
treated as identity (straight-through). QAS scaling and the int8 write-back are a later pass
(passes/quantize_qas.py); rules do not know about them.
"""

from __future__ import annotations

import numpy as np

from .ir import Node
from .ops import OPS, conv_out, grad, op

# ----------------------------------------------------------------------------- fixed point


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(M, shift) with real ~= M * 2^(shift - 31), M in [2^30, 2^31): TFLite's QuantizeMultiplier."""
    if real == 0.0:
        return 0, 0
    q, shift = np.frexp(np.float64(real))
    m = round(float(q) * (1 << 31))
    if m == (1 << 31):
        m //= 2
        shift += 1
    if shift < -31:  # too small to represent: the product is 0
        return 0, 0
    return m, int(shift)


def srdhm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul on int32 values held in int64 arrays."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    # C integer division truncates toward zero
    num = ab + nudge
    res = np.where(num >= 0, num // (1 << 31), -((-num) // (1 << 31)))
    overflow = (a == b) & (a == -(1 << 31))
    return np.where(overflow, (1 << 31) - 1, res)


def rdbpot(x: np.ndarray, exponent) -> np.ndarray:
    """RoundingDivideByPOT: x / 2^exponent rounded half away from zero."""
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def mbqm(acc: np.ndarray, m, shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplier(acc, M, shift) (TFLite reference)."""
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = np.asarray(acc, np.int64) * (np.int64(1) << left)
    x = np.clip(x, -(1 << 31), (1 << 31) - 1)
    return rdbpot(srdhm(x, m), right)


def requant(acc: np.ndarray, m, shift, zp: int, lo: int, hi: int, axis: int = 1) -> np.ndarray:
    """int8 output of an int32 accumulator with per-channel (along ``axis``) or scalar multipliers."""
    m, shift = np.asarray(m, np.int64), np.asarray(shift, np.int64)
    if m.ndim:
        bshape = [1] * acc.ndim
        bshape[axis] = -1
        m, shift = m.reshape(bshape), shift.reshape(bshape)
    return np.clip(mbqm(acc, m, shift) + zp, lo, hi).astype(np.int8)


def quantize_f32(x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """ONNX QuantizeLinear to int8: round half to even, saturate."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.rint(np.asarray(x, np.float32) / np.float32(scale))
    return np.clip(np.nan_to_num(q) + zp, -128, 127).astype(np.int8)


# ----------------------------------------------------------------------------- ONNX Q/DQ (frontend only)


@op("QuantizeLinear", no_grad=(0, 1, 2))
def quantize_linear_ref(node, x, scale, zp=None):
    """ONNX QuantizeLinear (int8 zero point); only read by the frontend and passes/quantize_lower."""
    zp = np.zeros((), np.int8) if zp is None else zp
    axis = node.attrs.get("axis", 1)
    if np.ndim(scale) == 1 and np.size(scale) > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zp = np.reshape(scale, shape), np.reshape(zp, shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.rint(np.asarray(x, np.float32) / scale)
    return np.clip(np.nan_to_num(q) + zp.astype(np.int64), -128, 127).astype(zp.dtype)


@op("DequantizeLinear", no_grad=(0, 1, 2))
def dequantize_linear_ref(node, x, scale, zp=None):
    """ONNX DequantizeLinear; per-channel along attribute axis."""
    zp = np.zeros((), np.int64) if zp is None else zp
    axis = node.attrs.get("axis", 1)
    if np.ndim(scale) == 1 and np.size(scale) > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zp = np.reshape(scale, shape), np.reshape(zp, shape)
    return ((x.astype(np.int64) - zp.astype(np.int64)) * scale).astype(np.float32)


# ----------------------------------------------------------------------------- int8 forward ops


@op("Quantize")
def quantize_ref(node, x):
    """y = sat(round_half_even(x / s) + zp): the float graph input into int8."""
    return quantize_f32(x, node.attrs["scale"], node.attrs["zp"])


@op("Dequantize")
def dequantize_ref(node, x, scale=None):
    """y = s * (x - zp); per output channel (axis 0) when a scale tensor is given."""
    x = np.asarray(x)
    if scale is not None:
        return (x.astype(np.float32) * np.asarray(scale, np.float32).reshape((-1,) + (1,) * (x.ndim - 1)))
    return (np.float32(node.attrs["scale"]) * (x.astype(np.float32) - np.float32(node.attrs["zp"]))).astype(np.float32)


@grad("Dequantize")
def dequantize_grad(node, dys, need, gb):
    """y = s * (x - zp);  the graph is differentiated in the real domain: dx(real) = dy"""
    return [dys[0]] + [None] * (len(node.inputs) - 1)


def _q(a: dict) -> tuple:
    return a["x_zp"], a["y_zp"], a["act_min"], a["act_max"]


@op("QConv")
def qconv_ref(node, x, w, b=None, mult=None, shift=None):
    """acc[n,m,oh,ow] = sum (x - zp_x) * w + b (int32);  y = requant(acc, M[m], shift[m])"""
    a = node.attrs
    x_zp, y_zp, lo, hi = _q(a)
    fake = Node("Conv", [], [], {k: a[k] for k in ("pads", "strides", "dilations", "group")})
    # int32 products summed in float64 are exact for int8 x int8 layers (< 2^53)
    acc = _conv_f64(fake, x.astype(np.float64) - x_zp, w.astype(np.float64))
    acc = np.rint(acc).astype(np.int64)
    if b is not None:
        acc = acc + b.astype(np.int64).reshape((1, -1) + (1,) * (acc.ndim - 2))
    return requant(acc, mult, shift, y_zp, lo, hi)


def _conv_f64(node, x, w):
    from .ops import conv_sum
    y = conv_sum(node, x, w)
    return y[:, :, 0, :] if x.ndim == 3 else y


@op("QConvPwDw")
def qconv_pwdw_ref(node, x, w1, b1, m1, s1, w2, b2, m2, s2):
    """y = QConv_dw(QConv_pw(x)): the fused pair (passes/fuse_int8); the second output is scratch"""
    pw = Node("QConv", [], [], node.attrs["pw"])
    dw = Node("QConv", [], [], node.attrs["dw"])
    mid = qconv_ref(pw, x, w1, b1, m1, s1)
    return qconv_ref(dw, mid, w2, b2, m2, s2), np.zeros(mid.shape[2:], np.int8).reshape(-1)


@op("QGemm")
def qgemm_ref(node, x, w, b=None, mult=None, shift=None):
    """acc[i,n] = sum_k (x[i,k] - zp_x) * w[n,k] + b[n];  y = requant(acc, M[n], shift[n])"""
    x_zp, y_zp, lo, hi = _q(node.attrs)
    acc = (x.astype(np.int64) - x_zp) @ w.astype(np.int64).T
    if b is not None:
        acc = acc + b.astype(np.int64)
    return requant(acc, mult, shift, y_zp, lo, hi, axis=1)


def _fake(node: Node, op_name: str, inputs: list[str], keys) -> Node:
    return Node(op_name, inputs, list(node.outputs), {k: node.attrs[k] for k in keys if k in node.attrs}, node.name)


def _sat_grad(node: Node, dy: str, gb) -> str:
    a = node.attrs
    return gb.emit("QSatGrad", [dy, node.outputs[0]], {"lo": a["act_min"], "hi": a["act_max"]})


def _deq_act(gb, x: str, scale: float, zp: int) -> str:
    return gb.emit("Dequantize", [x], {"scale": scale, "zp": zp})


@grad("QConv")
def qconv_grad(node, dys, need, gb):
    """y = sat(conv(deq x, deq w) + deq b);  dy' = dy * (act_min < y < act_max);  then Conv's rule on
    the dequantized x (for dw) and w (for dx), in fp32"""
    a = node.attrs
    dy = _sat_grad(node, dys[0], gb)
    x, w = node.inputs[:2]
    xf = _deq_act(gb, x, a["x_scale"], a["x_zp"]) if need[1] else x
    wf = gb.emit("Dequantize", [w, a["w_scale_tensor"]]) if need[0] else w
    ins = [xf, wf] + ([node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else [])
    out = OPS["Conv"].grad(_fake(node, "Conv", ins, ("pads", "strides", "dilations", "group")), [dy], need[:3], gb)
    return list(out) + [None] * (len(node.inputs) - len(out))


@grad("QGemm")
def qgemm_grad(node, dys, need, gb):
    """y = sat(deq x @ deq w^T + deq b);  masked dy, then Gemm's rule in fp32"""
    a = node.attrs
    dy = _sat_grad(node, dys[0], gb)
    x, w = node.inputs[:2]
    xf = _deq_act(gb, x, a["x_scale"], a["x_zp"]) if need[1] else x
    wf = gb.emit("Dequantize", [w, a["w_scale_tensor"]]) if need[0] else w
    ins = [xf, wf] + ([node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else [])
    fake = Node("Gemm", ins, list(node.outputs), {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}, node.name)
    out = OPS["Gemm"].grad(fake, [dy], need[:3], gb)
    return list(out) + [None] * (len(node.inputs) - len(out))


@op("ConvBwInputS8W")
def conv_bw_input_s8w_ref(node, dy, w, scale):
    """dx = ConvBwInput(dy, scale[m] * w): the input gradient read from the int8 weight"""
    from .ops import conv_bw_input_ref
    return conv_bw_input_ref(node, dy, dequantize_ref(node, w, scale))


@op("GemmS8W")
def gemm_s8w_ref(node, dy, w, scale):
    """dx = dy @ (scale[n] * w[n, k])"""
    return (dy.astype(np.float64) @ dequantize_ref(node, w, scale).astype(np.float64)).astype(np.float32)


@op("QSatGrad", inplace=True)
def qsat_grad_ref(node, dy, y):
    """dx = dy where lo < y < hi (y int8), else 0"""
    a = node.attrs
    y = np.asarray(y)
    return np.where((y > a["lo"]) & (y < a["hi"]), dy, 0).astype(np.float32)


@op("QMaxPool")
def qmaxpool_ref(node, x):
    """max over the window of int8 x (same scale in and out; padding never wins)"""
    from .ops import maxpool_ref
    return maxpool_ref(node, x.astype(np.float32)).astype(np.int8)


@grad("QMaxPool")
def qmaxpool_grad(node, dys, need, gb):
    """y = max(x);  dx[first argmax] += dy, the argmax taken on the saved int8 x (dequantized)"""
    a = node.attrs
    xf = _deq_act(gb, node.inputs[0], a["x_scale"], a["x_zp"])
    return [gb.emit("MaxPoolGrad", [dys[0], xf], {k: v for k, v in a.items() if k not in ("x_scale", "x_zp")})]


def _avg_mult(a: dict, count: int) -> tuple[int, int]:
    return quantize_multiplier(a["x_scale"] / (a["y_scale"] * count))


@op("QGlobalAveragePool")
def qgap_ref(node, x):
    """acc = sum over H*W of (x - zp_x);  y = requant(acc, s_x / (s_y * H*W))"""
    a = node.attrs
    x_zp, y_zp, lo, hi = _q(a)
    hw = int(np.prod(x.shape[2:]))
    acc = (x.astype(np.int64) - x_zp).sum(axis=tuple(range(2, x.ndim)), keepdims=True)
    return requant(acc, a["mult"], a["shift"], y_zp, lo, hi) if hw else acc


@grad("QGlobalAveragePool")
def qgap_grad(node, dys, need, gb):
    """y = mean over H*W (real domain, rounding straight-through);  dx = broadcast(dy) / (H*W)"""
    dy = _sat_grad(node, dys[0], gb)
    return OPS["GlobalAveragePool"].grad(_fake(node, "GlobalAveragePool", list(node.inputs), ()), [dy], need, gb)


@op("QAdd")
def qadd_ref(node, a_q, b_q):
    """TFLite int8 add: both inputs shifted left 20 bits, rescaled to twice the larger input scale,
    summed, rescaled to the output scale"""
    at = node.attrs
    left = 20
    a_ = mbqm((a_q.astype(np.int64) - at["a_zp"]) << left, at["a_mult"], at["a_shift"])
    b_ = mbqm((b_q.astype(np.int64) - at["b_zp"]) << left, at["b_mult"], at["b_shift"])
    y = mbqm(a_ + b_, at["y_mult"], at["y_shift"]) + at["y_zp"]
    return np.clip(y, at["act_min"], at["act_max"]).astype(np.int8)


@grad("QAdd")
def qadd_grad(node, dys, need, gb):
    """y = sat(deq a + deq b);  da = db = dy * (act_min < y < act_max)"""
    dy = _sat_grad(node, dys[0], gb)
    return [dy if need[0] else None, dy if need[1] else None]


@op("QClamp", inplace=True)
def qclamp_ref(node, x):
    """Relu / Clip on int8 with the same scale in and out: a clamp to [act_min, act_max]"""
    return np.clip(x, node.attrs["act_min"], node.attrs["act_max"]).astype(np.int8)


@grad("QClamp")
def qclamp_grad(node, dys, need, gb):
    """y = clamp(x);  dx = dy * (act_min < y < act_max)"""
    return [_sat_grad(node, dys[0], gb)]


@op("QUpdate")
def qupdate_ref(node, w, g, *rest):
    """int8 / int32 parameter update (QAS-scaled gradient, optional fp32 master): generated code only"""
    raise NotImplementedError("optimizer updates are only run by the generated code")


def qconv_out_hw(xs, ws, a) -> tuple[int, int]:
    H, W = (1, xs[2]) if len(xs) == 3 else xs[2:]
    KH, KW = (1, ws[2]) if len(ws) == 3 else ws[2:]
    pt, pl, pb, pr = a["pads"]
    return (conv_out(H, KH, a["strides"][0], a["dilations"][0], pt, pb),
            conv_out(W, KW, a["strides"][1], a["dilations"][1], pl, pr))
