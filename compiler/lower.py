"""lower_calls: turn every scheduled node into C statements (kernel calls) with all sizes,
strides and scalars resolved. The template only lays these out."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import UnsupportedModelError
from .ir import Graph, Node


@dataclass
class Call:
    text: str  # one C statement
    comment: str  # the ONNX / gradient node name


@dataclass
class Lowered:
    infer: list[Call]
    train: list[Call]
    int_arrays: list[tuple[str, list[int]]] = field(default_factory=list)
    symbols: dict[str, str] = field(default_factory=dict)  # tensor name -> C expression


def c_ident(name: str) -> str:
    s = re.sub(r"[^0-9a-zA-Z_]", "_", name)
    return s if s and not s[0].isdigit() else "_" + s


ACT_CODES = {"relu": 1, "relu6": 2}  # the trailing int act of the fused forward convolutions


def cfloat(v: float) -> str:
    f = np.float32(v)
    if np.isinf(f):
        return "(-__builtin_inff())" if f < 0 else "__builtin_inff()"
    r = np.format_float_positional(f, unique=True, trim="0") if 1e-4 <= abs(f) < 1e7 or f == 0 \
        else np.format_float_scientific(f, unique=True, trim="0")
    r = r.rstrip(".") if "e" not in r else r.replace(".e", "e")
    if "e" not in r and "." not in r:
        r += ".0"
    return r + "f"


def strides(shape) -> list[int]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def bcast_strides(shape, out_shape) -> list[int]:
    """Element strides of ``shape`` broadcast (numpy rules, right-aligned) to ``out_shape``."""
    shape = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    st = strides(shape)
    return [0 if d == 1 and o != 1 else s for d, s, o in zip(shape, st, out_shape)]


def _squeeze_dims(shape, *stride_lists):
    """Drop size-1 dims and merge adjacent dims contiguous in every operand (smaller loops)."""
    dims = [(d, [s[i] for s in stride_lists]) for i, d in enumerate(shape) if d != 1]
    if not dims:
        return [1], [[0] for _ in stride_lists]
    merged = [dims[0]]
    for d, ss in dims[1:]:
        pd, pss = merged[-1]
        if all(ps == s * d for ps, s in zip(pss, ss)):
            merged[-1] = (pd * d, ss)
        else:
            merged.append((d, ss))
    return [d for d, _ in merged], [[ss[k] for _, ss in merged] for k in range(len(stride_lists))]


def _int8_lowering() -> dict:
    from .lower_int8 import LOWER_INT8
    return LOWER_INT8


class Lowerer:
    def __init__(self, g: Graph, symbols: dict[str, str]):
        self.g = g
        self.sym = symbols
        self.arrays: dict[tuple, str] = {}

    def arr(self, values) -> str:
        key = tuple(int(v) for v in values)
        if key not in self.arrays:
            self.arrays[key] = f"k{len(self.arrays)}"
        return self.arrays[key]

    def p(self, name: str, offset: int = 0) -> str:
        if not name:
            return "NULL"
        base = self.sym[name]
        return f"{base} + {offset}" if offset else base

    def shape(self, name: str) -> tuple[int, ...]:
        return self.g.tensors[name].shape

    def size(self, name: str) -> int:
        return self.g.tensors[name].size

    def lower(self, node: Node) -> list[str]:
        fn = getattr(self, "op_" + node.op, None)
        if fn is None and node.op in _int8_lowering():
            fn = functools.partial(_int8_lowering()[node.op], self)
        if fn is None:
            raise UnsupportedModelError(f"no kernel for {node.op} ({node.name})")
        out = fn(node, *[i for i in node.inputs])
        out = out if isinstance(out, list) else [out]
        guard = node.attrs.get("skip_on_overflow")
        if guard:  # --dtype fp16: a step whose gradients overflowed updates nothing
            out = [f"if ({self.sym[guard]}[2] == 0.0f) {c}" for c in out]
        return out

    # --- helpers
    def _conv_dims(self, xs, ws, ys, a):
        x4 = (xs[0], xs[1], 1, xs[2]) if len(xs) == 3 else xs
        w4 = (ws[0], ws[1], 1, ws[2]) if len(ws) == 3 else ws
        y4 = (ys[0], ys[1], 1, ys[2]) if len(ys) == 3 else ys
        pt, pl = a["pads"][0], a["pads"][1]
        return [*x4, y4[1], y4[2], y4[3], w4[2], w4[3], *a["strides"], pt, pl, *a["dilations"], a["group"]]

    def _ints(self, vals) -> str:
        return ", ".join(str(int(v)) for v in vals)

    # --- native fp16 kernels (--dtype fp16: passes/lower_fp16.py marks the node "f16")
    def _f16(self, n, base: str) -> str:
        return base.replace("_f32", "_f16", 1) if n.attrs.get("f16") else base

    def _gemm_name(self, n) -> str:
        if not n.attrs.get("f16"):
            return "gemm_f32"
        return "gemm_f16" if self.g.tensors[n.outputs[0]].dtype == "f16" else "gemm_f16_y32"

    # --- convolution
    def _variant(self, n, base: str) -> tuple[str, str]:
        """Kernel name and trailing scratch argument for the variant select_kernels chose."""
        kernel = n.attrs.get("kernel")
        if kernel == "neon" and n.attrs.get("f16"):  # the fp16 NEON kernels take no scratch
            return f"{base}_neon", ""
        if kernel in ("tiled", "neon", "implicit", "dw_neon") or (kernel == "winograd" and n.op == "ConvBwWeight"):
            # same arguments, scratch included (the Winograd weight gradient: eg_winograd_wgrad.h)
            scratch = self.p(n.outputs[1]) if len(n.outputs) > 1 else "NULL"
            return f"{base}_{kernel}", f", {scratch}"
        if kernel in ("rvv", "zvfh", "gemv"):  # no scratch
            return f"{base}_{kernel}", ""
        if kernel == "winograd":  # the tile (2: F(2x2,3x3), 4: F(4x4,3x3)) before the scratch
            pre = "_pre" if n.attrs.get("wino_u") else ""  # frozen weights transformed at compile time
            return f"{base}_winograd{pre}", f", {n.attrs['wino_tile']}, {self.p(n.outputs[1])}"
        return base, ""

    def _tvm(self, n, *tensors) -> str:
        from .tvm_backend import call_text
        return call_text(n, [self.p(n.outputs[0]), *map(self.p, tensors)])

    def op_Conv(self, n, x, w, b=""):
        if n.attrs.get("kernel") == "tvm":
            return self._tvm(n, x, w, b)
        d = self._conv_dims(self.shape(x), self.shape(w), self.shape(n.outputs[0]), n.attrs)
        if n.attrs.get("kernel") == "dwclip":  # depthwise + Clip (passes/fuse_eltwise.py)
            lo, hi = n.attrs["clip"]
            return (f"depthwise2d_f32_fw_clip({self.p(n.outputs[0])}, {self.p(x)}, {self.p(w)}, {self.p(b)}, "
                    f"{self._ints(d)}, {cfloat(lo)}, {cfloat(hi)});")
        fn, scratch = self._variant(n, self._f16(n, "conv2d_f32_fw"))
        if n.attrs.get("kernel") == "winograd":  # conv2d_f32_fw_winograd always takes the trailing int act
            scratch += f", {ACT_CODES.get(n.attrs.get('act'), 0)}"
        elif n.attrs.get("act"):  # conv + bias + ReLU (passes/fuse_eltwise.py): the _act variant
            fn += "_act"
            scratch += f", {ACT_CODES[n.attrs['act']]}"
        w = n.attrs.get("wino_u") or w  # _winograd_pre: the transformed weights (passes/wino_frozen.py)
        return f"{fn}({self.p(n.outputs[0])}, {self.p(x)}, {self.p(w)}, {self.p(b)}, {self._ints(d)}{scratch});"

    def op_ConvBwInput(self, n, dy, w, y=""):
        if n.attrs.get("kernel") == "tvm":
            return self._tvm(n, dy, w)
        d = self._conv_dims(n.attrs["x_shape"], self.shape(w), self.shape(dy), n.attrs)
        fn, scratch = self._variant(n, self._f16(n, "conv2d_f32_bw_input"))
        if n.attrs.get("mask"):  # ReluGrad / ClipGrad of y into the store (passes/fuse_eltwise.py)
            fn += "_mask"
            scratch += self._mask_args(n, y)
        w = n.attrs.get("wino_u") or w  # _winograd_pre (passes/wino_frozen.py)
        return f"{fn}({self.p(n.outputs[0])}, {self.p(dy)}, {self.p(w)}, {self._ints(d)}{scratch});"

    def op_ConvBwWeight(self, n, dy, x):
        if n.attrs.get("kernel") == "tvm":
            return self._tvm(n, dy, x)
        a = n.attrs
        ws = a["w_shape"]
        xs_full = list(self.shape(x))
        cx = xs_full[1]
        xs_full[1] = ws[1] * a["group"]
        d = self._conv_dims(tuple(xs_full), tuple(ws), self.shape(dy), a)
        fn, scratch = self._variant(n, self._f16(n, "conv2d_f32_bw_weight") + (
            "_y16" if self.g.tensors[n.outputs[0]].dtype == "f16" else ""))
        return (f"{fn}({self.p(n.outputs[0])}, {self.p(dy)}, {self.p(x)}, {self._ints(d)}, "
                f"{a['m_upd']}, {a['cg_upd']}, {cx}{scratch});")

    def _bw_weight_update(self, n, opt: str, state: list[str], dy, x, hyper: list[float]) -> str:
        """conv2d_f32_bw_weight_<opt>_<kernel>(w, *state, dy, x, sizes, m_upd, cg_upd, cx, w_stride, *hyper,
        scratch): a weight gradient fused with its update (passes/fuse.py)."""
        a = n.attrs
        ws = a["w_shape"]
        xs_full = list(self.shape(x))
        cx = xs_full[1]
        xs_full[1] = ws[1] * a["group"]
        d = self._conv_dims(tuple(xs_full), tuple(ws), self.shape(dy), a)
        scratch = self.p(n.outputs[0]) if n.outputs else "NULL"
        bufs = ", ".join(self.p(t) for t in (*state, dy, x))
        hyp = ", ".join(cfloat(h) for h in hyper)
        return (f"conv2d_f32_bw_weight_{opt}_{a['kernel']}({bufs}, {self._ints(d)}, "
                f"{a['m_upd']}, {a['cg_upd']}, {cx}, {a['w_stride']}, {hyp}, {scratch});")

    def op_ConvBwWeightSGD(self, n, dy, x, w):
        return self._bw_weight_update(n, "sgd", [w], dy, x, [n.attrs["lr"]])

    def op_ConvBwWeightMomentum(self, n, dy, x, w, v):
        return self._bw_weight_update(n, "momentum", [w, v], dy, x, [n.attrs["lr"], n.attrs["mu"]])

    # --- products
    def _gemm(self, y, a, b, c, batch, M, N, K, ta, tb, alpha, beta, abs_, bbs, csm, csn, fn="gemm_f32"):
        return (f"{fn}({self.p(y)}, {self.p(a)}, {self.p(b)}, {self.p(c)}, {batch}, {M}, {N}, {K}, {ta}, {tb}, "
                f"{cfloat(alpha)}, {cfloat(beta)}, {abs_}, {bbs}, {csm}, {csn});")

    def op_Gemm(self, n, a, b, c="", y=""):
        if n.attrs.get("kernel") == "tvm":
            return self._tvm(n, a, b, c)
        at = n.attrs
        if at.get("act") or at.get("mask"):  # fused epilogue (passes/fuse_eltwise.py): gemm_f32_gemv_{act,mask}
            fn, args = self._gemm_plain(n, a, b, c).split("(", 1)
            if at.get("act"):
                return f"{fn}_act({args[:-2]}, {ACT_CODES[at['act']]});"
            return f"{fn}_mask({args[:-2]}{self._mask_args(n, y)});"
        return self._gemm_plain(n, a, b, c)

    def _mask_args(self, n, y) -> str:
        """The trailing `, y, int mask, lo, hi` of the _mask kernels: 1 keeps dx where y > 0 (ReluGrad), 2 where
        lo < y < hi (ClipGrad)."""
        kind, lo, hi = n.attrs["mask"]
        return f", {self.p(y)}, {1 if kind == 'relu' else 2}, {cfloat(lo)}, {cfloat(hi)}"

    def _gemm_plain(self, n, a, b, c):
        at = n.attrs
        ta, tb = at.get("transA", 0), at.get("transB", 0)
        M, N = self.shape(n.outputs[0])
        K = self.shape(a)[0] if ta else self.shape(a)[1]
        csm = csn = 0
        if c:
            cs = bcast_strides(self.shape(c), (M, N))
            csm, csn = cs
        return self._gemm(n.outputs[0], a, b, c, 1, M, N, K, ta, tb, at.get("alpha", 1.0),
                          at.get("beta", 1.0) if c else 0.0, 0, 0, csm, csn, fn=self._variant(n, self._gemm_name(n))[0])

    def _batched(self, n, a, b, ta, tb):
        sa, sb, sy = self.shape(a), self.shape(b), self.shape(n.outputs[0])
        M, N = sy[-2], sy[-1]
        K = sa[-2] if ta else sa[-1]
        batch = int(np.prod(sy[:-2], dtype=np.int64))
        ba, bb = int(np.prod(sa[:-2], dtype=np.int64)), int(np.prod(sb[:-2], dtype=np.int64))
        for bx in (ba, bb):
            if bx not in (1, batch):
                raise UnsupportedModelError(f"MatMul {n.name}: partially broadcast batch dims {list(sa)} x {list(sb)}")
        return self._gemm(n.outputs[0], a, b, "", batch, M, N, K, ta, tb, 1.0, 0.0,
                          sa[-1] * sa[-2] if ba == batch and batch > 1 else 0,
                          sb[-1] * sb[-2] if bb == batch and batch > 1 else 0, 0, 0, fn=self._variant(n, self._gemm_name(n))[0])

    def op_MatMul(self, n, a, b):
        sa, sb = self.shape(a), self.shape(b)
        if len(sa) == 1 or len(sb) == 1:
            M = 1 if len(sa) == 1 else int(np.prod(sa[:-1]))
            N = 1 if len(sb) == 1 else sb[-1]
            if len(sb) > 2:  # [K] @ [..., K, N]: one row against each batch of b
                return self._gemm(n.outputs[0], a, b, "", int(np.prod(sb[:-2])), 1, N, sa[-1], 0, 0, 1.0, 0.0,
                                  0, sb[-2] * sb[-1], 0, 0, fn=self._variant(n, self._gemm_name(n))[0])
            return self._gemm(n.outputs[0], a, b, "", 1, M, N, sa[-1], 0, 0, 1.0, 0.0, 0, 0, 0, 0,
                              fn=self._variant(n, self._gemm_name(n))[0])
        if len(sb) == 2 and len(sa) > 2:  # fold batch into rows: (B*M, K) x (K, N)
            return self._gemm(n.outputs[0], a, b, "", 1, int(np.prod(sa[:-1])), sb[1], sa[-1], 0, 0,
                              1.0, 0.0, 0, 0, 0, 0, fn=self._variant(n, self._gemm_name(n))[0])
        return self._batched(n, a, b, 0, 0)

    def op_MatMulT(self, n, a, b):
        return self._batched(n, a, b, n.attrs["transA"], n.attrs["transB"])

    # --- elementwise
    def _binary(self, n, kind, a, b):
        y = n.outputs[0]
        ys, sa, sb = self.shape(y), self.shape(a), self.shape(b)
        if sa == ys and sb == ys:
            if n.attrs.get("f16"):
                return f"{kind}_f16({self.p(y)}, {self.p(a)}, {self.p(b)}, {self.size(y)});"
            return f"{kind}_f32({self.p(y)}, {self.p(a)}, {self.p(b)}, {self.size(y)});"
        shape, (sta, stb) = _squeeze_dims(ys, bcast_strides(sa, ys), bcast_strides(sb, ys))
        return (f"{kind}_f32_bcast({self.p(y)}, {self.p(a)}, {self.p(b)}, {len(shape)}, {self.arr(shape)}, "
                f"{self.arr(sta)}, {self.arr(stb)});")

    def op_Add(self, n, a, b):
        return self._binary(n, "add", a, b)

    def op_Sub(self, n, a, b):
        return self._binary(n, "sub", a, b)

    def op_Mul(self, n, a, b):
        return self._binary(n, "mul", a, b)

    def op_Div(self, n, a, b):
        return self._binary(n, "div", a, b)

    def op_Scale(self, n, x):
        return f"scale_f32({self.p(n.outputs[0])}, {self.p(x)}, {self.size(x)}, {cfloat(n.attrs['alpha'])});"

    def _unary(self, n, fn, *ins, extra=()):
        fn = self._f16(n, fn)
        args = ", ".join([self.p(n.outputs[0])] + [self.p(i) for i in ins] + [str(self.size(ins[0]))]
                         + [cfloat(e) for e in extra])
        return f"{fn}({args});"

    def op_Relu(self, n, x):
        return self._unary(n, "relu_f32_fw", x)

    def op_ReluGrad(self, n, dy, y):
        return self._unary(n, "relu_f32_bw", dy, y)

    def op_Clip(self, n, x):
        return self._unary(n, "clip_f32_fw", x, extra=(n.attrs["lo"], n.attrs["hi"]))

    def op_ClipGrad(self, n, dy, y):
        return self._unary(n, "clip_f32_bw", dy, y, extra=(n.attrs["lo"], n.attrs["hi"]))

    def op_ReluMask(self, n, y):
        m = self.p(n.outputs[0])
        if self.g.tensors[y].dtype == "s8":  # int8 saturation mask (QSatGrad's)
            return f"clip_mask_s8({m}, {self.p(y)}, {self.size(y)}, {int(n.attrs['lo'])}, {int(n.attrs['hi'])});"
        if "hi" in n.attrs:
            return f"clip_mask_f32({m}, {self.p(y)}, {self.size(y)}, {cfloat(n.attrs['lo'])}, {cfloat(n.attrs['hi'])});"
        return f"relu_mask_f32({m}, {self.p(y)}, {self.size(y)});"

    def op_MaskGrad(self, n, dy, m):
        return f"mask_f32_bw({self.p(n.outputs[0])}, {self.p(dy)}, {self.p(m)}, {self.size(dy)});"

    def op_LeakyRelu(self, n, x):
        return self._unary(n, "leakyrelu_f32_fw", x, extra=(n.attrs.get("alpha", 0.01),))

    def op_LeakyReluGrad(self, n, dy, x):
        return self._unary(n, "leakyrelu_f32_bw", dy, x, extra=(n.attrs["alpha"],))

    def op_Sigmoid(self, n, x):
        return self._unary(n, "sigmoid_f32_fw", x)

    def op_SigmoidGrad(self, n, dy, y):
        return self._unary(n, "sigmoid_f32_bw", dy, y)

    def op_Tanh(self, n, x):
        return self._unary(n, "tanh_f32_fw", x)

    def op_TanhGrad(self, n, dy, y):
        return self._unary(n, "tanh_f32_bw", dy, y)

    def op_HardSigmoid(self, n, x):
        return self._unary(n, "hardsigmoid_f32_fw", x, extra=(n.attrs.get("alpha", 0.2), n.attrs.get("beta", 0.5)))

    def op_HardSigmoidGrad(self, n, dy, x):
        return self._unary(n, "hardsigmoid_f32_bw", dy, x, extra=(n.attrs["alpha"], n.attrs["beta"]))

    def op_HardSwish(self, n, x):
        return self._unary(n, "hardswish_f32_fw", x)

    def op_HardSwishGrad(self, n, dy, x):
        return self._unary(n, "hardswish_f32_bw", dy, x)

    def _prelu_bcast(self, x, s):
        xs = self.shape(x)
        ss = self.shape(s)
        if len(ss) == 1 and len(xs) > 2 and ss[0] == xs[1] and ss[0] != xs[-1]:
            ss = (ss[0],) + (1,) * (len(xs) - 2)  # ONNX PRelu slope [C] with NCHW (torch export writes [C,1,1])
        shape, (st,) = _squeeze_dims(xs, bcast_strides(ss, xs))
        return f"{len(shape)}, {self.arr(shape)}, {self.arr(st)}"

    def op_PRelu(self, n, x, s):
        return f"prelu_f32_fw({self.p(n.outputs[0])}, {self.p(x)}, {self.p(s)}, {self._prelu_bcast(x, s)});"

    def op_PReluGradInput(self, n, dy, x, s):
        return (f"prelu_f32_bw_input({self.p(n.outputs[0])}, {self.p(dy)}, {self.p(x)}, {self.p(s)}, "
                f"{self._prelu_bcast(x, s)});")

    def op_PReluSlopeTerms(self, n, dy, x):
        return self._unary(n, "prelu_f32_bw_slope_terms", dy, x)

    def _axis_split(self, shape, axis):
        return (int(np.prod(shape[:axis], dtype=np.int64)), shape[axis], int(np.prod(shape[axis + 1:], dtype=np.int64)))

    def op_Softmax(self, n, x):
        o, m, i = self._axis_split(self.shape(x), n.attrs["axis"])
        return f"softmax_f32_fw({self.p(n.outputs[0])}, {self.p(x)}, {o}, {m}, {i});"

    def op_SoftmaxGrad(self, n, dy, y):
        o, m, i = self._axis_split(self.shape(y), n.attrs["axis"])
        return f"softmax_f32_bw({self.p(n.outputs[0])}, {self.p(dy)}, {self.p(y)}, {o}, {m}, {i});"

    # --- pools and reductions
    def _pool_dims(self, xs, a):
        x4 = (xs[0], xs[1], 1, xs[2]) if len(xs) == 3 else xs
        return [*x4, *a["out_hw"], *a["kernel"], *a["strides"], a["pads"][0], a["pads"][1]]

    def op_MaxPool(self, n, x):
        d = self._pool_dims(self.shape(x), n.attrs) + list(n.attrs["dilations"])
        return f"{self._f16(n, 'maxpool2d_f32_fw')}({self.p(n.outputs[0])}, {self.p(x)}, {self._ints(d)});"

    def op_MaxPoolGrad(self, n, dy, x):
        d = self._pool_dims(self.shape(x), n.attrs) + list(n.attrs["dilations"])
        return f"{self._f16(n, 'maxpool2d_f32_bw')}({self.p(n.outputs[0])}, {self.p(dy)}, {self.p(x)}, {self._ints(d)});"

    def op_AveragePool(self, n, x):
        a = n.attrs
        d = self._pool_dims(self.shape(x), a) + [a["pads"][2], a["pads"][3], a["count_include_pad"]]
        return f"avgpool2d_f32_fw({self.p(n.outputs[0])}, {self.p(x)}, {self._ints(d)});"

    def op_AveragePoolGrad(self, n, dy):
        a = n.attrs
        d = self._pool_dims(tuple(a["x_shape"]), a) + [a["pads"][2], a["pads"][3], a["count_include_pad"]]
        return f"avgpool2d_f32_bw({self.p(n.outputs[0])}, {self.p(dy)}, {self._ints(d)});"

    def _reduce(self, y, x, out_shape):
        xs = self.shape(x)
        lead = len(xs) - len(out_shape)
        full = (1,) * lead + tuple(out_shape)
        sy = [0 if full[i] == 1 and xs[i] != 1 else s for i, s in enumerate(strides(full))]
        shape, (sy2, sx2) = _squeeze_dims(xs, sy, strides(xs))
        return (f"reduce_sum_f32({self.p(y)}, {self.p(x)}, {len(shape)}, {self.arr(shape)}, {self.arr(sy2)}, "
                f"{self.arr(sx2)}, {self.size(y)});")

    def op_ReduceSumTo(self, n, x):
        text = self._reduce(n.outputs[0], x, n.attrs["shape"])
        return text.replace("reduce_sum_f32(", "reduce_sum_f16(", 1) if n.attrs.get("f16") else text

    def _mean(self, n, x, axes):
        xs = self.shape(x)
        kept = tuple(1 if i in axes else d for i, d in enumerate(xs))
        cnt = int(np.prod([xs[i] for i in axes], dtype=np.int64))
        y = n.outputs[0]
        return [self._reduce(y, x, kept), f"scale_f32({self.p(y)}, {self.p(y)}, {self.size(y)}, {cfloat(1.0 / cnt)});"]

    def op_ReduceMean(self, n, x):
        return self._mean(n, x, n.attrs["axes"])

    def op_ReduceSum(self, n, x):
        xs = self.shape(x)
        return self._reduce(n.outputs[0], x, tuple(1 if i in n.attrs["axes"] else d for i, d in enumerate(xs)))

    def op_GlobalAveragePool(self, n, x):
        return self._mean(n, x, list(range(2, len(self.shape(x)))))

    def op_BroadcastTo(self, n, x):
        ys = tuple(n.attrs["shape"])
        shape, (sx,) = _squeeze_dims(ys, bcast_strides(self.shape(x), ys))
        return (f"broadcast_f32({self.p(n.outputs[0])}, {self.p(x)}, {len(shape)}, {self.arr(shape)}, "
                f"{self.arr(sx)}, {cfloat(n.attrs.get('alpha', 1.0))});")

    # --- data movement
    def _copy(self, y, yoff, x, xoff, shape, sy, sx):
        shape, (sy, sx) = _squeeze_dims(shape, sy, sx)
        if len(shape) == 1 and sy[0] == 1 and sx[0] == 1:
            return f"copy_f32({self.p(y, yoff)}, {self.p(x, xoff)}, {shape[0]});"
        return (f"copy_strided_f32({self.p(y, yoff)}, {self.p(x, xoff)}, {len(shape)}, {self.arr(shape)}, "
                f"{self.arr(sy)}, {self.arr(sx)});")

    def op_Reshape(self, n, x):
        y = n.outputs[0]
        if self.sym[y] == self.sym[x]:
            return []  # a view: same bytes, new shape
        return f"copy_f32({self.p(y)}, {self.p(x)}, {self.size(x)});"

    def op_Transpose(self, n, x):
        xs, perm = self.shape(x), n.attrs["perm"]
        ys = [xs[p] for p in perm]
        sx = strides(xs)
        return self._copy(n.outputs[0], 0, x, 0, ys, strides(ys), [sx[p] for p in perm])

    def op_Concat(self, n, *xs):
        y, ax = n.outputs[0], n.attrs["axis"]
        ys = self.shape(y)
        sy = strides(ys)
        out, start = [], 0
        for x in xs:
            s = self.shape(x)
            out.append(self._copy(y, start * sy[ax], x, 0, s, sy, strides(s)))
            start += s[ax]
        return out

    def op_Slice(self, n, x):
        xs = self.shape(x)
        sx = strides(xs)
        off, sxs = 0, list(sx)
        for s, a, st in zip(n.attrs["starts"], n.attrs["axes"], n.attrs["steps"]):
            off += s * sx[a]
            sxs[a] = sx[a] * st
        ys = self.shape(n.outputs[0])
        return self._copy(n.outputs[0], 0, x, off, ys, strides(ys), sxs)

    def op_Pad(self, n, x):
        y = n.outputs[0]
        ys, xs, p = self.shape(y), self.shape(x), n.attrs["pads"]
        sy = strides(ys)
        off = sum(p[i] * sy[i] for i in range(len(xs)))
        return [f"fill_f32({self.p(y)}, {self.size(y)}, {cfloat(n.attrs.get('value', 0.0))});",
                self._copy(y, off, x, 0, xs, sy, strides(xs))]

    # --- batch norm (inference statistics)
    def _bn_dims(self, x):
        xs = self.shape(x)
        return f"{xs[0]}, {xs[1]}, {int(np.prod(xs[2:], dtype=np.int64))}"

    def op_BatchNormalization(self, n, x, scale, bias, mean, var):
        return (f"batchnorm_f32_fw({self.p(n.outputs[0])}, {self.p(x)}, {self.p(scale)}, {self.p(bias)}, "
                f"{self.p(mean)}, {self.p(var)}, {cfloat(n.attrs['epsilon'])}, {self._bn_dims(x)});")

    def op_BatchNormGradInput(self, n, dy, scale, var):
        return (f"batchnorm_f32_bw_input({self.p(n.outputs[0])}, {self.p(dy)}, {self.p(scale)}, {self.p(var)}, "
                f"{cfloat(n.attrs['epsilon'])}, {self._bn_dims(dy)});")

    def op_BatchNormGradScale(self, n, dy, x, mean, var):
        return (f"batchnorm_f32_bw_params({self.p(n.outputs[0])}, NULL, {self.p(dy)}, {self.p(x)}, {self.p(mean)}, "
                f"{self.p(var)}, {cfloat(n.attrs['epsilon'])}, {self._bn_dims(dy)});")

    # --- losses
    def op_SoftmaxCrossEntropy(self, n, logits, target):
        loss, dl = n.outputs
        return (f"softmax_xent_f32({self.p(loss)}, {self.p(dl)}, {self.p(logits)}, {self.p(target)}[0], "
                f"{self.size(logits)});")

    def op_MSELoss(self, n, y, target):
        loss, dy = n.outputs
        return f"mse_f32({self.p(loss)}, {self.p(dy)}, {self.p(y)}, {self.p(target)}, {self.size(y)});"

    # --- optimizers: update a block of rows x inner elements, rows `stride` apart, in place
    def _block(self, n):
        a = n.attrs
        return f"{a['rows']}, {a['inner']}, {a['stride']}"

    def op_SGDUpdate(self, n, w, g):
        return f"sgd_f32({self.p(w)}, {self.p(g)}, {self._block(n)}, {cfloat(n.attrs['lr'])});"

    def op_MomentumUpdate(self, n, w, g, v):
        return (f"momentum_f32({self.p(w)}, {self.p(v)}, {self.p(g)}, {self._block(n)}, {cfloat(n.attrs['lr'])}, "
                f"{cfloat(n.attrs['mu'])});")

    def op_AdamUpdate(self, n, w, g, m, v):
        a = n.attrs
        return (f"adam_f32({self.p(w)}, {self.p(m)}, {self.p(v)}, {self.p(g)}, {self._block(n)}, {cfloat(a['lr'])}, "
                f"{cfloat(a['beta1'])}, {cfloat(a['beta2'])}, {cfloat(a['eps'])}, 1.0f - eg_adam_bt[0], "
                f"1.0f - eg_adam_bt[1]);")

    def op_ReduceSumUpdate(self, n, x, w, *state):  # passes/fuse.py: a bias gradient into its update
        a = n.attrs
        block = f"{self._block(n)}, {a['n']}, {cfloat(a['lr'])}"
        if a["optimizer"] == "sgd":
            return f"reduce_rows_sgd_f32({self.p(w)}, {self.p(x)}, {block});"
        if a["optimizer"] == "momentum":
            return f"reduce_rows_momentum_f32({self.p(w)}, {self.p(state[0])}, {self.p(x)}, {block}, {cfloat(a['mu'])});"
        return (f"reduce_rows_adam_f32({self.p(w)}, {self.p(state[0])}, {self.p(state[1])}, {self.p(x)}, {block}, "
                f"{cfloat(a['beta1'])}, {cfloat(a['beta2'])}, {cfloat(a['eps'])}, 1.0f - eg_adam_bt[0], "
                f"1.0f - eg_adam_bt[1]);")

    def op_AdamStep(self, n):
        return [f"eg_adam_bt[0] *= {cfloat(n.attrs['beta1'])};", f"eg_adam_bt[1] *= {cfloat(n.attrs['beta2'])};"]


    # --- fp16 storage and loss scaling (passes/lower_fp16.py, runtime_c/eg_f16.h)
    def op_CastF32(self, n, x):
        return f"{self._variant(n, 'cast_f16_f32')[0]}({self.p(n.outputs[0])}, {self.p(x)}, {self.size(x)});"

    def op_CastF16(self, n, x):
        return f"{self._variant(n, 'cast_f32_f16')[0]}({self.p(n.outputs[0])}, {self.p(x)}, {self.size(x)});"

    def op_LossScale(self, n, x, ls):
        return f"loss_scale_f32({self.p(n.outputs[0])}, {self.p(x)}, {self.size(x)}, {self.p(ls)}, {n.attrs['log2_init']});"

    def op_LossUnscale(self, n, x, ls):
        return f"loss_unscale_f32({self.p(x)}, {self.size(x)}, {self.p(ls)}, {n.attrs['log2_init']});"

    def op_LossCheckF16(self, n, x, ls):
        return f"loss_check_f16({self.p(x)}, {self.size(x)}, {self.p(ls)});"

    def op_LossUnscaleF16(self, n, x, ls):
        return (f"loss_unscale_f16({self.p(n.outputs[0])}, {self.p(x)}, {self.size(x)}, {self.p(ls)}, "
                f"{n.attrs['log2_init']});")

    def op_LossScaleUpdate(self, n, ls):
        return f"loss_scale_update({self.p(ls)}, {n.attrs['log2_init']}, {n.attrs['growth_interval']});"


def lower_calls(g: Graph, symbols: dict[str, str]) -> Lowered:
    lw = Lowerer(g, symbols)
    n_fwd = g.meta.get("n_forward", len(g.nodes))
    infer, train = [], []
    for i, node in enumerate(g.nodes):
        calls = [Call(t, node.name) for t in lw.lower(node)]
        train += calls
        if i < n_fwd and not node.attrs.get("save"):
            infer += calls
    arrays = [(name, list(vals)) for vals, name in lw.arrays.items()]
    return Lowered(infer, train, arrays, symbols)
