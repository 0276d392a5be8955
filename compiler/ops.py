"""One registry: for each op its shape rule, its numpy reference and its gradient rule.

Forward ops are ONNX ops (attributes normalised by the frontend). Backward ops are internal
(`ConvBwInput`, `ReluGrad`, ...) so that pruning a frozen layer drops a node, not code.
Fold-only ops (Shape, Gather, Cast, ...) have a reference but no kernel: the frontend folds
them into constants for the fixed input shape.

A gradient rule receives the forward node, the gradient of each output (or None), which
input gradients are needed (`Need` or None), and a builder that emits nodes. It returns one
gradient tensor name per input (or None). Broadcast reduction and slicing to a partial
update live in the autodiff driver, not in the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import EdgegradError
from .ir import Node

# ----------------------------------------------------------------------------- registry


@dataclass
class Need:
    """A needed input gradient. ``k < full[axis]`` asks for the leading k entries of ``axis`` only."""

    axis: int
    k: int
    full: tuple[int, ...]

    @property
    def partial(self) -> bool:
        return self.k < self.full[self.axis]

    @property
    def shape(self) -> tuple[int, ...]:
        s = list(self.full)
        s[self.axis] = self.k
        return tuple(s)


@dataclass
class OpDef:
    ref: Callable  # (node, *arrays) -> array | tuple of arrays
    grad: Callable | None = None
    inplace: bool = False  # output may take input 0's buffer when input 0 dies here
    view: bool = False  # output is input 0 reinterpreted (Reshape & co): alias, no copy
    fold_only: bool = False  # only ever evaluated at compile time
    no_grad: tuple[int, ...] = ()  # inputs that are never differentiated (indices, shapes)


OPS: dict[str, OpDef] = {}
# Ops that must never be asked for a gradient: asking is a compiler bug, not "no gradient".
NON_DIFFERENTIABLE = {"Shape", "Gather", "Cast", "ConstantOfShape", "Range", "Equal", "Where", "Less",
                      "Greater", "Expand", "Not", "And", "Floor", "Ceil", "Mod", "ReduceProd", "Size"}


def op(name: str, **kw) -> Callable:
    def deco(fn: Callable) -> Callable:
        OPS[name] = OpDef(ref=fn, **kw)
        return fn
    return deco


def grad(name: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        OPS[name].grad = fn
        return fn
    return deco


def run_ref(node: Node, arrays: list) -> list[np.ndarray]:
    out = OPS[node.op].ref(node, *arrays)
    return list(out) if isinstance(out, tuple) else [out]


# ----------------------------------------------------------------------------- helpers


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _unbroadcast_shape(a: tuple, b: tuple) -> tuple:
    return tuple(np.broadcast_shapes(a, b))


def _as4d(x: np.ndarray) -> np.ndarray:
    return x[:, :, None, :] if x.ndim == 3 else x


def _pool_windows(xp: np.ndarray, kh, kw, sh, sw, dh, dw, oh, ow):
    """Yield (i, j, view) with view[n,c,oh,ow] = xp[n, c, oh*sh + i*dh, ow*sw + j*dw]."""
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]


def conv_out(size: int, k: int, s: int, d: int, p0: int, p1: int, ceil: bool = False) -> int:
    span = size + p0 + p1 - d * (k - 1) - 1
    out = (span + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= size + p0:  # last window must start inside the input or left pad
        out -= 1
    return out


# ----------------------------------------------------------------------------- Conv


def conv_sum(node, x, w) -> np.ndarray:
    """The bias-free sum of conv_ref, 4-D, accumulated in float64 over products in the inputs' dtype
    (float64 inputs make it exact for integer data: the int8 reference uses it)."""
    a = node.attrs
    x4, w4 = _as4d(x), _as4d(w) if w.ndim == 3 else w
    pt, pl, pb, pr = a["pads"]
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    G = a["group"]
    xp = np.pad(x4, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    N, _C, H, W = x4.shape
    M, Cg, KH, KW = w4.shape
    OH = conv_out(H, KH, sh, dh, pt, pb)
    OW = conv_out(W, KW, sw, dw, pl, pr)
    Mg = M // G
    y = np.zeros((N, M, OH, OW), np.float64)
    for g in range(G):
        xs = xp[:, g * Cg:(g + 1) * Cg]
        for i, j, v in _pool_windows(xs, KH, KW, sh, sw, dh, dw, OH, OW):
            y[:, g * Mg:(g + 1) * Mg] += np.einsum("nchw,mc->nmhw", v, w4[g * Mg:(g + 1) * Mg, :, i, j])
    return y


def _fused_epilogue(node, y, m=None):
    """The epilogue passes/fuse_eltwise.py folds into a Conv / Gemm / ConvBwInput (for the numpy interpreter, as
    the C kernels): act relu / relu6 as Relu / Clip(0, 6); mask (kind, lo, hi) by the activation m as ReluGrad
    (m > 0) / ClipGrad (lo < m < hi)."""
    act, mask = node.attrs.get("act"), node.attrs.get("mask")
    if act == "relu":
        y = np.where(y > 0, y, np.float32(0))
    elif act == "relu6":
        y = np.minimum(np.maximum(y, np.float32(0)), np.float32(6))
    if mask:
        kind, lo, hi = mask
        keep = m > 0 if kind == "relu" else (m > lo) & (m < hi)
        y = np.where(keep.reshape(y.shape), y, np.float32(0))
    return _f32(y)


@op("Conv")
def conv_ref(node, x, w, b=None):
    """y[n,m,oh,ow] = sum_{c,kh,kw} x[n, g*Cg+c, oh*sh+kh*dh-pt, ow*sw+kw*dw-pl] * w[m,c,kh,kw] + b[m]"""
    y = conv_sum(node, x, w)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    y = _f32(y)
    if "clip" in node.attrs:  # a Clip fused into the epilogue (passes/fuse_eltwise.py)
        y = np.minimum(np.maximum(y, node.attrs["clip"][0]), node.attrs["clip"][1]).astype(np.float32)
    y = _fused_epilogue(node, y)
    return y[:, :, 0, :] if x.ndim == 3 else y


@op("ConvBwInput")
def conv_bw_input_ref(node, dy, w, y=None):
    """dx = transposed conv of dy with w (the adjoint of Conv with respect to x); masked by y where fused."""
    a = node.attrs
    xshape = a["x_shape"]
    dy4, w4 = _as4d(dy), (_as4d(w) if w.ndim == 3 else w)
    pt, pl, pb, pr = a["pads"]
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    G = a["group"]
    x4shape = (xshape[0], xshape[1], 1, xshape[2]) if len(xshape) == 3 else tuple(xshape)
    N, C, H, W = x4shape
    M, Cg, KH, KW = w4.shape
    Mg = M // G
    OH, OW = dy4.shape[2:]
    dxp = np.zeros((N, C, H + pt + pb, W + pl + pr), np.float64)
    for g in range(G):
        for i in range(KH):
            for j in range(KW):
                contrib = np.einsum("nmhw,mc->nchw", dy4[:, g * Mg:(g + 1) * Mg], w4[g * Mg:(g + 1) * Mg, :, i, j])
                dxp[:, g * Cg:(g + 1) * Cg, i * dh: i * dh + sh * (OH - 1) + 1: sh,
                    j * dw: j * dw + sw * (OW - 1) + 1: sw] += contrib
    dx = _f32(dxp[:, :, pt:pt + H, pl:pl + W])
    return _fused_epilogue(node, dx.reshape(xshape), y)


@op("ConvBwWeight")
def conv_bw_weight_ref(node, dy, x):
    """dw[m,c,kh,kw] = sum_{n,oh,ow} dy[n,m,oh,ow] * x[n, g*Cg+c, oh*sh+kh*dh-pt, ow*sw+kw*dw-pl],
    for m < m_upd and c < cg_upd (x holds the first cx channels)."""
    a = node.attrs
    wshape = a["w_shape"]
    M, Cg = wshape[0], wshape[1]
    KH, KW = (1, wshape[2]) if len(wshape) == 3 else wshape[2:]
    m_upd, cg_upd = a["m_upd"], a["cg_upd"]
    dy4, x4 = _as4d(dy), _as4d(x)
    pt, pl, pb, pr = a["pads"]
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    G = a["group"]
    Mg = M // G
    OH, OW = dy4.shape[2:]
    xp = np.pad(x4, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    out = np.zeros((m_upd, cg_upd, KH, KW), np.float64)
    for m0 in range(0, m_upd, Mg):
        g = m0 // Mg
        m1 = min(m_upd, m0 + Mg)
        xs = xp[:, g * Cg: g * Cg + cg_upd]
        for i, j, v in _pool_windows(xs, KH, KW, sh, sw, dh, dw, OH, OW):
            out[m0:m1, :, i, j] = np.einsum("nmhw,nchw->mc", dy4[:, m0:m1], v)
    out = _f32(out)
    return out[:, :, 0, :] if len(wshape) == 3 else out


@grad("Conv")
def conv_grad(node, dys, need, gb):
    """y = conv(x, w) + b;  dx = conv_bw_input(dy, w);  dw = conv_bw_weight(dy, x);  db = sum(dy)"""
    (dy,) = dys
    x, w = node.inputs[:2]
    a = {k: node.attrs[k] for k in ("pads", "strides", "dilations", "group")}
    out = [None, None, None]
    if need[0]:
        out[0] = gb.emit("ConvBwInput", [dy, w], dict(a, x_shape=gb.shape(x)))
    if need[1]:
        wshape = gb.shape(w)
        m_upd = need[1].k if need[1].axis == 0 else wshape[0]
        cg_upd = need[1].k if need[1].axis == 1 else wshape[1]
        xs = x
        if cg_upd < wshape[1] and a["group"] == 1:
            # Keep only the leading input channels the update needs (TTE's saved-activation cut).
            xs = gb.slice(x, axis=1, k=cg_upd, save=True)
        out[1] = gb.emit("ConvBwWeight", [dy, xs], dict(a, w_shape=wshape, m_upd=m_upd, cg_upd=cg_upd))
    if len(node.inputs) > 2 and need[2]:
        out[2] = gb.reduce_to(dy, gb.shape(node.inputs[2]), channel_axis=1)
    return out


# ----------------------------------------------------------------------------- Gemm / MatMul


def _mm(a, b, ta, tb):
    a = np.swapaxes(a, -1, -2) if ta else a
    b = np.swapaxes(b, -1, -2) if tb else b
    return np.matmul(a.astype(np.float64), b.astype(np.float64))


@op("Gemm")
def gemm_ref(node, a, b, c=None, m=None):
    """y = alpha * op(a) @ op(b) + beta * c (then the fused activation, or the mask by m)"""
    at = node.attrs
    y = at.get("alpha", 1.0) * _mm(a, b, at.get("transA", 0), at.get("transB", 0))
    if c is not None:
        y = y + at.get("beta", 1.0) * c
    return _fused_epilogue(node, _f32(y), m)


@grad("Gemm")
def gemm_grad(node, dys, need, gb):
    """y = alpha*op(A)op(B) + beta*C;  dA, dB by the transposed products;  dC = beta * dy (reduced)"""
    (dy,) = dys
    at = node.attrs
    ta, tb, alpha, beta = at.get("transA", 0), at.get("transB", 0), at.get("alpha", 1.0), at.get("beta", 1.0)
    A, B = node.inputs[:2]
    out = [None, None, None]

    def g(x, y, tx, ty):
        return gb.emit("Gemm", [x, y], {"transA": tx, "transB": ty, "alpha": alpha, "beta": 0.0})

    if need[0]:
        out[0] = (g(B, dy, 0, 1) if ta and not tb else g(B, dy, 1, 1) if ta and tb
                  else g(dy, B, 0, 1) if not tb else g(dy, B, 0, 0))
    if need[1]:
        nd = need[1]
        if not ta and tb and nd.partial and nd.axis == 0:  # dB[:k] = dy[:, :k]^T A
            out[1] = g(gb.slice(dy, axis=1, k=nd.k), A, 1, 0)
        elif not ta and tb and nd.partial and nd.axis == 1:  # dB[:, :k] = dy^T A[:, :k]
            out[1] = g(dy, gb.slice(A, axis=1, k=nd.k, save=True), 1, 0)
        elif not ta and not tb and nd.partial and nd.axis == 0:  # dB[:k] = A[:, :k]^T dy
            out[1] = g(gb.slice(A, axis=1, k=nd.k, save=True), dy, 1, 0)
        else:
            out[1] = (g(dy, A, 1, 1) if ta and tb else g(A, dy, 0, 0) if ta
                      else g(dy, A, 1, 0) if tb else g(A, dy, 1, 0))
    if len(node.inputs) > 2 and node.inputs[2] and need[2]:
        out[2] = gb.scale(dy, beta) if beta != 1.0 else dy
    return out


@op("MatMul")
def matmul_ref(node, a, b):
    """y = a @ b (numpy semantics: 1-D promotion, batch broadcasting)"""
    return _f32(np.matmul(a.astype(np.float64), b.astype(np.float64)))


@op("MatMulT")
def matmul_t_ref(node, a, b):
    """Internal: y = op(a) @ op(b) with batch broadcasting; a, b at least 2-D."""
    return _f32(_mm(a, b, node.attrs["transA"], node.attrs["transB"]))


@grad("MatMul")
def matmul_grad(node, dys, need, gb):
    """y = a @ b;  da = dy @ b^T;  db = a^T @ dy  (batch dims reduced by the driver)"""
    (dy,) = dys
    A, B = node.inputs
    sa, sb = gb.shape(A), gb.shape(B)
    out = [None, None]
    a2 = A if len(sa) > 1 else gb.reshape(A, (1,) + sa)
    b2 = B if len(sb) > 1 else gb.reshape(B, sb + (1,))
    dy2 = dy
    if len(sa) == 1 or len(sb) == 1:
        shp = list(gb.shape(dy))
        if len(sa) == 1:
            shp.insert(len(shp) - (0 if len(sb) == 1 else 1), 1)
        if len(sb) == 1:
            shp.append(1)
        dy2 = gb.reshape(dy, tuple(shp))
    if need[0]:
        da = gb.emit("MatMulT", [dy2, b2], {"transA": 0, "transB": 1})
        # a 1-D operand's gradient may carry the other operand's batch dims: sum them first
        out[0] = gb.reshape(gb.reduce_to(da, gb.shape(a2)), sa) if len(sa) == 1 else da
    if need[1]:
        nd = need[1]
        if nd.partial and nd.axis == 0 and len(sa) == 2 and len(sb) == 2:  # db[:k] = a[:, :k]^T dy
            out[1] = gb.emit("MatMulT", [gb.slice(A, axis=1, k=nd.k, save=True), dy2], {"transA": 1, "transB": 0})
        else:
            db = gb.emit("MatMulT", [a2, dy2], {"transA": 1, "transB": 0})
            out[1] = gb.reshape(gb.reduce_to(db, gb.shape(b2)), sb) if len(sb) == 1 else db
    return out


# ----------------------------------------------------------------------------- elementwise binary


def _binary(fn):
    def ref(node, a, b):
        return fn(a, b).astype(np.result_type(a, b)) if a.dtype != np.float32 or b.dtype != np.float32 else _f32(fn(a, b))
    return ref


op("Add", inplace=True)(_binary(np.add))
op("Sub", inplace=True)(_binary(np.subtract))
op("Mul", inplace=True)(_binary(np.multiply))


@op("Div", inplace=True)
def div_ref(node, a, b):
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        return (a // b).astype(a.dtype)
    return _f32(a / b)


@grad("Add")
def add_grad(node, dys, need, gb):
    """y = a + b;  da = dy;  db = dy"""
    return [dys[0] if need[0] else None, dys[0] if need[1] else None]


@grad("Sub")
def sub_grad(node, dys, need, gb):
    """y = a - b;  da = dy;  db = -dy"""
    return [dys[0] if need[0] else None, gb.scale(dys[0], -1.0) if need[1] else None]


@grad("Mul")
def mul_grad(node, dys, need, gb):
    """y = a * b;  da = dy * b;  db = dy * a"""
    a, b = node.inputs
    return [gb.emit("Mul", [dys[0], b]) if need[0] else None, gb.emit("Mul", [dys[0], a]) if need[1] else None]


@grad("Div")
def div_grad(node, dys, need, gb):
    """y = a / b;  da = dy / b;  db = -dy * y / b"""
    _a, b = node.inputs
    da = gb.emit("Div", [dys[0], b]) if need[0] else None
    db = None
    if need[1]:
        db = gb.scale(gb.emit("Div", [gb.emit("Mul", [dys[0], node.outputs[0]]), b]), -1.0)
    return [da, db]


@op("Scale", inplace=True)
def scale_ref(node, x):
    """y = alpha * x"""
    return _f32(x * node.attrs["alpha"])


@grad("Scale")
def scale_grad(node, dys, need, gb):
    """y = alpha*x;  dx = alpha*dy"""
    return [gb.scale(dys[0], node.attrs["alpha"])]


# ----------------------------------------------------------------------------- activations


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


@op("Relu", inplace=True)
def relu_ref(node, x):
    return np.maximum(x, 0).astype(x.dtype)


@op("ReluGrad", inplace=True)
def relu_grad_ref(node, dy, y):
    """dx = dy * (y > 0)"""
    return _f32(np.where(y > 0, dy, 0))


@grad("Relu")
def relu_grad(node, dys, need, gb):
    """y = max(x, 0);  dx = dy * (y > 0)"""
    return [gb.emit("ReluGrad", [dys[0], node.outputs[0]])]


@op("Clip", inplace=True)
def clip_ref(node, x):
    lo, hi = node.attrs["lo"], node.attrs["hi"]
    return np.minimum(np.maximum(x, lo), hi).astype(x.dtype)


@op("ClipGrad", inplace=True)
def clip_grad_ref(node, dy, y):
    """dx = dy where lo < y < hi (from the output; = lo < x < hi, torch's hardtanh_backward)"""
    return _f32(np.where((y > node.attrs["lo"]) & (y < node.attrs["hi"]), dy, 0))


@grad("Clip")
def clip_grad(node, dys, need, gb):
    """y = min(max(x, lo), hi);  dx = dy * (lo < y < hi)

    The mask is read from the output, so the backward keeps y (which the next layer's weight
    gradient keeps anyway) and not x, and Clip can run in place. lo < y < hi holds exactly when
    lo < x < hi: strict at the kinks, as torch's hardtanh_backward (what F.relu6 / nn.ReLU6,
    exported as Clip, train with); torch.clamp's backward would pass the gradient at x == lo or
    hi, which no function of y can tell from x < lo."""
    lo, hi = gb.clip_bounds(node)
    return [gb.emit("ClipGrad", [dys[0], node.outputs[0]], {"lo": lo, "hi": hi}) if need[0] else None, None, None]


@op("ReluMask")
def relu_mask_ref(node, y):
    """m = bit-packed mask of a Relu (y > 0) or Clip (lo < y < hi) output, bit i%8 of byte i/8
    (passes/relu_mask.py); the backward reads it instead of y"""
    y = y.reshape(-1)
    bits = (y > node.attrs["lo"]) & (y < node.attrs["hi"]) if "hi" in node.attrs else y > node.attrs["lo"]
    return np.packbits(bits, bitorder="little")


@op("MaskGrad", inplace=True)
def mask_grad_ref(node, dy, m):
    """dx = dy where the mask bit is set (ReluGrad / ClipGrad from a ReluMask)"""
    bits = np.unpackbits(m, count=dy.size, bitorder="little").reshape(dy.shape).astype(bool)
    return _f32(np.where(bits, dy, 0))


@op("LeakyRelu", inplace=True)
def leaky_ref(node, x):
    return _f32(np.where(x >= 0, x, x * node.attrs.get("alpha", 0.01)))


@op("LeakyReluGrad", inplace=True)
def leaky_grad_ref(node, dy, x):
    return _f32(np.where(x > 0, dy, dy * node.attrs["alpha"]))


@grad("LeakyRelu")
def leaky_grad(node, dys, need, gb):
    """y = x >= 0 ? x : alpha*x;  dx = dy * (x > 0 ? 1 : alpha)"""
    return [gb.emit("LeakyReluGrad", [dys[0], node.inputs[0]], {"alpha": node.attrs.get("alpha", 0.01)})]


@op("PRelu")
def prelu_ref(node, x, slope):
    return _f32(np.where(x >= 0, x, x * slope))


@op("PReluGradInput")
def prelu_gi_ref(node, dy, x, slope):
    return _f32(np.where(x > 0, dy, dy * slope))


@op("PReluSlopeTerms", inplace=True)
def prelu_st_ref(node, dy, x):
    return _f32(np.where(x > 0, 0, dy * x))


@grad("PRelu")
def prelu_grad(node, dys, need, gb):
    """y = x > 0 ? x : s*x;  dx = dy * (x > 0 ? 1 : s);  ds = sum over broadcast of dy * x * (x <= 0)"""
    x, s = node.inputs
    dx = gb.emit("PReluGradInput", [dys[0], x, s]) if need[0] else None
    ds = gb.emit("PReluSlopeTerms", [dys[0], x]) if need[1] else None
    return [dx, ds]


@op("Sigmoid", inplace=True)
def sigmoid_ref(node, x):
    return _f32(_sigmoid(x))


@op("SigmoidGrad", inplace=True)
def sigmoid_grad_ref(node, dy, y):
    return _f32(dy * y * (1 - y))


@grad("Sigmoid")
def sigmoid_grad(node, dys, need, gb):
    """y = 1/(1+exp(-x));  dx = dy * y * (1 - y)"""
    return [gb.emit("SigmoidGrad", [dys[0], node.outputs[0]])]


@op("Tanh", inplace=True)
def tanh_ref(node, x):
    return _f32(np.tanh(x.astype(np.float64)))


@op("TanhGrad", inplace=True)
def tanh_grad_ref(node, dy, y):
    return _f32(dy * (1 - y * y))


@grad("Tanh")
def tanh_grad(node, dys, need, gb):
    """y = tanh(x);  dx = dy * (1 - y^2)"""
    return [gb.emit("TanhGrad", [dys[0], node.outputs[0]])]


@op("HardSigmoid", inplace=True)
def hsig_ref(node, x):
    a, b = node.attrs.get("alpha", 0.2), node.attrs.get("beta", 0.5)
    return _f32(np.clip(a * x.astype(np.float64) + b, 0, 1))


@op("HardSigmoidGrad", inplace=True)
def hsig_grad_ref(node, dy, x):
    a, b = node.attrs["alpha"], node.attrs["beta"]
    t = a * x.astype(np.float64) + b
    return _f32(np.where((t > 0) & (t < 1), dy * a, 0))


@grad("HardSigmoid")
def hsig_grad(node, dys, need, gb):
    """y = clip(alpha*x + beta, 0, 1);  dx = dy * alpha where 0 < alpha*x+beta < 1"""
    return [gb.emit("HardSigmoidGrad", [dys[0], node.inputs[0]],
                    {"alpha": node.attrs.get("alpha", 0.2), "beta": node.attrs.get("beta", 0.5)})]


@op("HardSwish", inplace=True)
def hswish_ref(node, x):
    x64 = x.astype(np.float64)
    return _f32(x64 * np.clip(x64 + 3, 0, 6) / 6)


@op("HardSwishGrad", inplace=True)
def hswish_grad_ref(node, dy, x):
    return _f32(np.where(x < -3, 0, np.where(x > 3, dy, dy * (2 * x.astype(np.float64) + 3) / 6)))


@grad("HardSwish")
def hswish_grad(node, dys, need, gb):
    """y = x * relu6(x+3)/6;  dx = dy * (x < -3 ? 0 : x > 3 ? 1 : (2x+3)/6)"""
    return [gb.emit("HardSwishGrad", [dys[0], node.inputs[0]])]


@op("Softmax")
def softmax_ref(node, x):
    ax = node.attrs.get("axis", -1)
    e = np.exp(x.astype(np.float64) - x.max(axis=ax, keepdims=True))
    return _f32(e / e.sum(axis=ax, keepdims=True))


@op("SoftmaxGrad")
def softmax_grad_ref(node, dy, y):
    ax = node.attrs["axis"]
    return _f32(y * (dy - (dy.astype(np.float64) * y).sum(axis=ax, keepdims=True)))


@grad("Softmax")
def softmax_grad(node, dys, need, gb):
    """y = softmax(x);  dx = y * (dy - sum(dy * y))"""
    ax = node.attrs.get("axis", -1) % len(gb.shape(node.inputs[0]))
    return [gb.emit("SoftmaxGrad", [dys[0], node.outputs[0]], {"axis": ax})]


# ----------------------------------------------------------------------------- pooling & reductions


@op("MaxPool")
def maxpool_ref(node, x):
    a = node.attrs
    x4 = _as4d(x)
    pt, pl, _pb, _pr = a["pads"]
    (KH, KW), (sh, sw), (dh, dw) = a["kernel"], a["strides"], a["dilations"]
    N, C, H, W = x4.shape
    OH, OW = a["out_hw"]
    # pad enough on the bottom/right for ceil_mode windows; padding never wins
    extra_h = max(0, (OH - 1) * sh + (KH - 1) * dh + 1 - (H + pt))
    extra_w = max(0, (OW - 1) * sw + (KW - 1) * dw + 1 - (W + pl))
    xp = np.pad(x4, ((0, 0), (0, 0), (pt, extra_h), (pl, extra_w)), constant_values=-np.inf)
    y = np.full((N, C, OH, OW), -np.inf, np.float32)
    for _, _, v in _pool_windows(xp, KH, KW, sh, sw, dh, dw, OH, OW):
        y = np.maximum(y, v)
    return y.reshape(node.attrs["y_shape"])


@op("MaxPoolGrad")
def maxpool_grad_ref(node, dy, x):
    a = node.attrs
    x4 = _as4d(x)
    pt, pl, _pb, _pr = a["pads"]
    (KH, KW), (sh, sw), (dh, dw) = a["kernel"], a["strides"], a["dilations"]
    N, C, H, W = x4.shape
    OH, OW = a["out_hw"]
    dy4 = dy.reshape(N, C, OH, OW)
    dx = np.zeros_like(x4, dtype=np.float64)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    best, bi = -np.inf, None
                    for i in range(KH):
                        for j in range(KW):
                            h, w = oh * sh + i * dh - pt, ow * sw + j * dw - pl
                            if 0 <= h < H and 0 <= w < W and x4[n, c, h, w] > best:
                                best, bi = x4[n, c, h, w], (h, w)
                    if bi is not None:
                        dx[n, c, bi[0], bi[1]] += dy4[n, c, oh, ow]
    return _f32(dx).reshape(x.shape)


@grad("MaxPool")
def maxpool_grad(node, dys, need, gb):
    """y = max over window(x);  dx[argmax] += dy  (argmax recomputed from the saved x)"""
    return [gb.emit("MaxPoolGrad", [dys[0], node.inputs[0]], dict(node.attrs))]


def _avg_divisors(H, W, a):
    pt, pl, pb, pr = a["pads"]
    (KH, KW), (sh, sw) = a["kernel"], a["strides"]
    OH, OW = a["out_hw"]
    inc = a.get("count_include_pad", 0)
    div = np.zeros((OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            h0, w0 = oh * sh - pt, ow * sw - pl
            h1, w1 = h0 + KH, w0 + KW
            if inc:
                hh = min(h1, H + pb) - max(h0, -pt)
                ww = min(w1, W + pr) - max(w0, -pl)
            else:
                hh = min(h1, H) - max(h0, 0)
                ww = min(w1, W) - max(w0, 0)
            div[oh, ow] = hh * ww
    return div


@op("AveragePool")
def avgpool_ref(node, x):
    a = node.attrs
    x4 = _as4d(x).astype(np.float64)
    pt, pl, _pb, _pr = a["pads"]
    (KH, KW), (sh, sw) = a["kernel"], a["strides"]
    N, C, H, W = x4.shape
    OH, OW = a["out_hw"]
    extra_h = max(0, (OH - 1) * sh + KH - (H + pt))
    extra_w = max(0, (OW - 1) * sw + KW - (W + pl))
    xp = np.pad(x4, ((0, 0), (0, 0), (pt, extra_h), (pl, extra_w)))
    s = np.zeros((N, C, OH, OW))
    for _, _, v in _pool_windows(xp, KH, KW, sh, sw, 1, 1, OH, OW):
        s += v
    return _f32(s / _avg_divisors(H, W, a)).reshape(a["y_shape"])


@op("AveragePoolGrad")
def avgpool_grad_ref(node, dy, x_shape_holder=None):
    a = node.attrs
    xs = a["x_shape"]
    x4s = (xs[0], xs[1], 1, xs[2]) if len(xs) == 3 else tuple(xs)
    N, C, H, W = x4s
    pt, pl, _pb, _pr = a["pads"]
    (KH, KW), (sh, sw) = a["kernel"], a["strides"]
    OH, OW = a["out_hw"]
    g = dy.reshape(N, C, OH, OW) / _avg_divisors(H, W, a)
    extra_h = max(0, (OH - 1) * sh + KH - (H + pt))
    extra_w = max(0, (OW - 1) * sw + KW - (W + pl))
    dxp = np.zeros((N, C, H + pt + extra_h, W + pl + extra_w))
    for i in range(KH):
        for j in range(KW):
            dxp[:, :, i: i + sh * (OH - 1) + 1: sh, j: j + sw * (OW - 1) + 1: sw] += g
    return _f32(dxp[:, :, pt:pt + H, pl:pl + W]).reshape(xs)


@grad("AveragePool")
def avgpool_grad(node, dys, need, gb):
    """y = mean over window(x);  dx[window] += dy / divisor"""
    return [gb.emit("AveragePoolGrad", [dys[0]], dict(node.attrs, x_shape=gb.shape(node.inputs[0])))]


@op("ReduceMean")
def reduce_mean_ref(node, x, axes_in=None):
    axes = node.attrs["axes"]
    return _f32(x.astype(np.float64).mean(axis=tuple(axes), keepdims=bool(node.attrs.get("keepdims", 1))))


@op("ReduceSum")
def reduce_sum_onnx_ref(node, x, axes_in=None):
    axes = node.attrs["axes"]
    return x.sum(axis=tuple(axes), keepdims=bool(node.attrs.get("keepdims", 1))).astype(x.dtype)


@grad("ReduceMean")
def reduce_mean_grad(node, dys, need, gb):
    """y = mean(x, axes);  dx = broadcast(dy) / prod(reduced dims)"""
    xs = gb.shape(node.inputs[0])
    n = int(np.prod([xs[a] for a in node.attrs["axes"]]))
    kept = tuple(1 if i in node.attrs["axes"] else d for i, d in enumerate(xs))
    dy = gb.reshape(dys[0], kept)
    return [gb.emit("BroadcastTo", [dy], {"shape": xs, "alpha": 1.0 / n})] + [None] * (len(node.inputs) - 1)


@op("GlobalAveragePool")
def gap_ref(node, x):
    return _f32(x.astype(np.float64).mean(axis=tuple(range(2, x.ndim)), keepdims=True))


@grad("GlobalAveragePool")
def gap_grad(node, dys, need, gb):
    """y = mean over spatial(x);  dx = broadcast(dy) / (H*W)"""
    xs = gb.shape(node.inputs[0])
    return [gb.emit("BroadcastTo", [dys[0]], {"shape": xs, "alpha": 1.0 / int(np.prod(xs[2:]))})]


@op("ReduceSumTo")
def reduce_sum_to_ref(node, x):
    """y = sum of x over the axes broadcast from `shape` (numpy broadcasting, aligned right)"""
    shape = tuple(node.attrs["shape"])
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and x.shape[lead + i] != 1)
    return _f32(x.astype(np.float64).sum(axis=axes).reshape(shape))


@op("BroadcastTo")
def broadcast_to_ref(node, x):
    """y = alpha * broadcast(x, shape)"""
    return _f32(np.broadcast_to(x, tuple(node.attrs["shape"])) * node.attrs.get("alpha", 1.0))


# ----------------------------------------------------------------------------- BatchNormalization (inference)


@op("BatchNormalization", no_grad=(3, 4))
def bn_ref(node, x, scale, bias, mean, var):
    """y = (x - mean) / sqrt(var + eps) * scale + bias, per channel (axis 1)"""
    s = (1,) + (-1,) + (1,) * (x.ndim - 2)
    eps = node.attrs.get("epsilon", 1e-5)
    inv = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    return _f32((x - mean.reshape(s)) * (inv * scale).reshape(s) + bias.reshape(s))


@op("BatchNormGradInput")
def bn_gi_ref(node, dy, scale, var):
    s = (1,) + (-1,) + (1,) * (dy.ndim - 2)
    return _f32(dy * (scale / np.sqrt(var.astype(np.float64) + node.attrs["epsilon"])).reshape(s))


@op("BatchNormGradScale")
def bn_gs_ref(node, dy, x, mean, var):
    s = (1,) + (-1,) + (1,) * (dy.ndim - 2)
    xhat = (x - mean.reshape(s)) / np.sqrt(var.astype(np.float64) + node.attrs["epsilon"]).reshape(s)
    axes = (0,) + tuple(range(2, dy.ndim))
    return _f32((dy * xhat).sum(axis=axes))


@grad("BatchNormalization")
def bn_grad(node, dys, need, gb):
    """y = xhat*scale + bias, xhat = (x-mean)/sqrt(var+eps);  dx = dy*scale/sqrt(var+eps);
    dscale = sum(dy*xhat);  dbias = sum(dy)  (mean/var are running statistics: constants)"""
    x, scale, bias, mean, var = node.inputs[:5]
    eps = node.attrs.get("epsilon", 1e-5)
    out = [None] * len(node.inputs)
    if need[0]:
        out[0] = gb.emit("BatchNormGradInput", [dys[0], scale, var], {"epsilon": eps})
    if need[1]:
        out[1] = gb.emit("BatchNormGradScale", [dys[0], x, mean, var], {"epsilon": eps})
    if need[2]:
        out[2] = gb.reduce_to(dys[0], gb.shape(bias), channel_axis=1)
    return out


# ----------------------------------------------------------------------------- data movement


@op("Reshape", view=True, no_grad=(1,))
def reshape_ref(node, x, shape=None):
    return x.reshape(tuple(node.attrs["shape"]))


for _name in ("Flatten", "Squeeze", "Unsqueeze"):
    op(_name, view=True, no_grad=(1,))(reshape_ref)


def _view_grad(node, dys, need, gb):
    """y = reshape(x);  dx = reshape(dy)"""
    return [gb.reshape(dys[0], gb.shape(node.inputs[0]))] + [None] * (len(node.inputs) - 1)


for _name in ("Reshape", "Flatten", "Squeeze", "Unsqueeze"):
    OPS[_name].grad = _view_grad


@op("Transpose")
def transpose_ref(node, x):
    return np.transpose(x, node.attrs["perm"])


@grad("Transpose")
def transpose_grad(node, dys, need, gb):
    """y = transpose(x, perm);  dx = transpose(dy, inverse(perm))"""
    inv = [0] * len(node.attrs["perm"])
    for i, p in enumerate(node.attrs["perm"]):
        inv[p] = i
    return [gb.emit("Transpose", [dys[0]], {"perm": inv})]


@op("Concat")
def concat_ref(node, *xs):
    return np.concatenate(xs, axis=node.attrs["axis"])


@grad("Concat")
def concat_grad(node, dys, need, gb):
    """y = concat(x_i, axis);  dx_i = slice of dy"""
    ax, start, out = node.attrs["axis"], 0, []
    for i, name in enumerate(node.inputs):
        n = gb.shape(name)[ax]
        out.append(gb.emit("Slice", [dys[0]], {"starts": [start], "ends": [start + n], "axes": [ax], "steps": [1]})
                   if need[i] else None)
        start += n
    return out


@op("Slice", no_grad=(1, 2, 3, 4))
def slice_ref(node, x, *unused):
    sl = [slice(None)] * x.ndim
    for s, e, a, st in zip(node.attrs["starts"], node.attrs["ends"], node.attrs["axes"], node.attrs["steps"]):
        sl[a] = slice(s, e, st)
    return x[tuple(sl)]


@grad("Slice")
def slice_grad(node, dys, need, gb):
    """y = x[slices];  dx = zeros with dy scattered back (a Pad when steps are 1)"""
    xs = gb.shape(node.inputs[0])
    pads = [0] * (2 * len(xs))
    for s, e, a, st in zip(node.attrs["starts"], node.attrs["ends"], node.attrs["axes"], node.attrs["steps"]):
        if st != 1:
            raise EdgegradError(f"no gradient for a strided Slice ({node.name})")
        r = range(xs[a])[slice(s, e, st)]
        pads[a] = r.start
        pads[len(xs) + a] = xs[a] - r.stop
    return [gb.emit("Pad", [dys[0]], {"pads": pads, "value": 0.0})] + [None] * (len(node.inputs) - 1)


@op("Pad", no_grad=(1, 2, 3))
def pad_ref(node, x, *unused):
    p = node.attrs["pads"]
    n = x.ndim
    return np.pad(x, [(p[i], p[n + i]) for i in range(n)], constant_values=node.attrs.get("value", 0.0)).astype(x.dtype)


@grad("Pad")
def pad_grad(node, dys, need, gb):
    """y = pad(x);  dx = crop(dy)"""
    xs, p = gb.shape(node.inputs[0]), node.attrs["pads"]
    n = len(xs)
    return [gb.emit("Slice", [dys[0]], {"starts": p[:n], "ends": [p[i] + xs[i] for i in range(n)],
                                        "axes": list(range(n)), "steps": [1] * n})] + [None] * (len(node.inputs) - 1)


# ----------------------------------------------------------------------------- losses


@op("SoftmaxCrossEntropy")
def sce_ref(node, logits, label):
    """loss = -log softmax(logits)[label];  dlogits = softmax(logits) - onehot(label)"""
    z = logits.reshape(-1).astype(np.float64)
    m = z.max()
    lse = m + np.log(np.exp(z - m).sum())
    p = np.exp(z - lse)
    p[int(label.reshape(-1)[0])] -= 1
    return _f32(np.array([lse - z[int(label.reshape(-1)[0])]])), _f32(p.reshape(logits.shape))


@op("MSELoss")
def mse_ref(node, y, t):
    """loss = mean((y - t)^2);  dy = 2 (y - t) / n"""
    d = y.astype(np.float64) - t.reshape(y.shape)
    return _f32(np.array([(d * d).mean()])), _f32(2 * d / d.size)


# ----------------------------------------------------------------------------- optimizers (in place)


@op("SGDUpdate")
def sgd_ref(node, w, g):
    """w[block] -= lr * g"""
    raise NotImplementedError("optimizer updates are only run by the generated code")


OPS["MomentumUpdate"] = OpDef(ref=sgd_ref)
OPS["AdamUpdate"] = OpDef(ref=sgd_ref)


@op("ConvBwWeightSGD")
def conv_bw_weight_sgd_ref(node, dy, x, w):
    """passes/fuse.py: ConvBwWeight then SGDUpdate of its block, in one node; returns the updated w
    (the generated code writes it in place)."""
    a = node.attrs
    dw = conv_bw_weight_ref(node, dy, x).reshape(a["m_upd"], -1)
    out = np.array(w, np.float32).reshape(w.shape[0], -1)
    out[:a["m_upd"], :dw.shape[1]] -= np.float32(a["lr"]) * dw
    return out.reshape(w.shape)


OPS["ConvBwWeightMomentum"] = OpDef(ref=sgd_ref)  # passes/fuse.py: only run by the generated code
OPS["ReduceSumUpdate"] = OpDef(ref=sgd_ref)

# ----------------------------------------------------------------------------- fold-only ops


@op("Shape", fold_only=True)
def shape_ref(node, x):
    s = np.array(x.shape, np.int64)
    return s[node.attrs.get("start", 0): node.attrs.get("end", None)]


@op("Gather", fold_only=True)
def gather_ref(node, x, idx):
    return np.take(x, idx, axis=node.attrs.get("axis", 0))


@op("Cast", fold_only=True)
def cast_ref(node, x):
    return x.astype(node.attrs["np_dtype"])


@op("ConstantOfShape", fold_only=True)
def cos_ref(node, shape):
    v = node.attrs.get("value", np.zeros(1, np.float32))
    return np.full(tuple(int(d) for d in shape), v.reshape(-1)[0], dtype=v.dtype)


@op("Range", fold_only=True)
def range_ref(node, s, e, d):
    return np.arange(s, e, d).astype(s.dtype)


@op("Equal", fold_only=True)
def equal_ref(node, a, b):
    return np.equal(a, b)


@op("Where", fold_only=True)
def where_ref(node, c, a, b):
    return np.where(c, a, b)


@op("Expand", fold_only=True)
def expand_ref(node, x, shape):
    return x * np.ones(tuple(int(d) for d in shape), x.dtype)


@op("Size", fold_only=True)
def size_ref(node, x):
    return np.array(x.size, np.int64)

from . import ops_int8  # noqa: F401  (registers the int8 ops)
