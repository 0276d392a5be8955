"""Lowering of the int8 ops (``--dtype int8``) to eg_int8.h kernel calls. Every multiplier,
shift, zero point and clamp was resolved by passes/quantize_lower and passes/quantize_qas."""

from __future__ import annotations

import numpy as np

from .lower import cfloat


def _qconv(lw, n, x, w, b, mult, shift):
    a = n.attrs
    d = lw._conv_dims(lw.shape(x), lw.shape(w), lw.shape(n.outputs[0]), a)
    return (f"conv2d_s8_fw({lw.p(n.outputs[0])}, {lw.p(x)}, {lw.p(w)}, {lw.p(b)}, {lw.p(mult)}, {lw.p(shift)}, "
            f"{lw._ints(d)}, {a['x_zp']}, {a['y_zp']}, {a['act_min']}, {a['act_max']});")


def _qconv_pwdw(lw, n, x, w1, b1, m1, s1, w2, b2, m2, s2):
    pw, dw = n.attrs["pw"], n.attrs["dw"]
    _, C, H, W = lw.shape(x)
    M = n.attrs["mid_shape"][1]
    _, _, OH, OW = lw.shape(n.outputs[0])
    KH, KW = lw.shape(w2)[2:]
    args = [C, H, W, M, OH, OW, KH, KW, *dw["strides"], dw["pads"][0], dw["pads"][1], *dw["dilations"],
            pw["x_zp"], pw["y_zp"], pw["act_min"], pw["act_max"], dw["y_zp"], dw["act_min"], dw["act_max"]]
    ptrs = ", ".join(lw.p(t) for t in (n.outputs[0], n.outputs[1], x, w1, b1, m1, s1, w2, b2, m2, s2))
    return f"conv_pwdw_s8_fw({ptrs}, {lw._ints(args)});"


def _conv_bw_input_s8w(lw, n, dy, w, scale):
    d = lw._conv_dims(n.attrs["x_shape"], lw.shape(w), lw.shape(dy), n.attrs)
    return f"conv2d_s8w_f32_bw_input({lw.p(n.outputs[0])}, {lw.p(dy)}, {lw.p(w)}, {lw.p(scale)}, {lw._ints(d)});"


def _gemm_s8w(lw, n, dy, w, scale):
    B, N = lw.shape(dy)
    return (f"linear_s8w_f32_bw_input({lw.p(n.outputs[0])}, {lw.p(dy)}, {lw.p(w)}, {lw.p(scale)}, {B}, {N}, "
            f"{lw.shape(w)[1]});")


def _qgemm(lw, n, x, w, b, mult, shift):
    a = n.attrs
    B, N = lw.shape(n.outputs[0])
    K = lw.shape(w)[1]
    return (f"linear_s8_fw({lw.p(n.outputs[0])}, {lw.p(x)}, {lw.p(w)}, {lw.p(b)}, {lw.p(mult)}, {lw.p(shift)}, "
            f"{B}, {N}, {K}, {a['x_zp']}, {a['y_zp']}, {a['act_min']}, {a['act_max']});")


def _qmaxpool(lw, n, x):
    d = lw._pool_dims(lw.shape(x), n.attrs) + list(n.attrs["dilations"])
    return f"maxpool2d_s8_fw({lw.p(n.outputs[0])}, {lw.p(x)}, {lw._ints(d)});"


def _qgap(lw, n, x):
    a = n.attrs
    xs = lw.shape(x)
    return (f"global_avgpool_s8_fw({lw.p(n.outputs[0])}, {lw.p(x)}, {xs[0] * xs[1]}, {int(np.prod(xs[2:]))}, "
            f"{a['x_zp']}, {a['mult']}, {a['shift']}, {a['y_zp']}, {a['act_min']}, {a['act_max']});")


def _qadd(lw, n, x, y):
    a = n.attrs
    return (f"add_s8({lw.p(n.outputs[0])}, {lw.p(x)}, {lw.p(y)}, {lw.size(x)}, {a['a_zp']}, {a['a_mult']}, "
            f"{a['a_shift']}, {a['b_zp']}, {a['b_mult']}, {a['b_shift']}, {a['y_zp']}, {a['y_mult']}, "
            f"{a['y_shift']}, {a['act_min']}, {a['act_max']});")


def _qclamp(lw, n, x):
    a = n.attrs
    return f"clamp_s8({lw.p(n.outputs[0])}, {lw.p(x)}, {lw.size(x)}, {a['act_min']}, {a['act_max']});"


def _quantize(lw, n, x):
    a = n.attrs
    return f"quantize_f32_s8({lw.p(n.outputs[0])}, {lw.p(x)}, {lw.size(x)}, {cfloat(1.0 / a['scale'])}, {a['zp']});"


def _dequantize(lw, n, x, scale=""):
    if scale:
        rows = lw.shape(x)[0]
        return (f"dequantize_s8_f32_rows({lw.p(n.outputs[0])}, {lw.p(x)}, {rows}, {lw.size(x) // rows}, "
                f"{lw.p(scale)});")
    a = n.attrs
    return f"dequantize_s8_f32({lw.p(n.outputs[0])}, {lw.p(x)}, {lw.size(x)}, {cfloat(a['scale'])}, {a['zp']});"


def _qsat_grad(lw, n, dy, y):
    a = n.attrs
    return f"qsat_grad_f32({lw.p(n.outputs[0])}, {lw.p(dy)}, {lw.p(y)}, {lw.size(dy)}, {a['lo']}, {a['hi']});"


def _qupdate(lw, n, w, g, gscale, master="", v=""):
    a = n.attrs
    kind = "s8" if lw.g.tensors[w].dtype == "s8" else "s32"
    return (f"qupdate_{kind}({lw.p(w)}, {lw.p(master)}, {lw.p(v)}, {lw.p(g)}, {lw.p(gscale)}, {lw._block(n)}, "
            f"{cfloat(a['lr'])}, {cfloat(a.get('mu', 0.0))});")


LOWER_INT8 = {
    "QConv": _qconv, "QConvPwDw": _qconv_pwdw, "QGemm": _qgemm, "QMaxPool": _qmaxpool, "QGlobalAveragePool": _qgap,
    "QAdd": _qadd,
    "QClamp": _qclamp, "Quantize": _quantize, "Dequantize": _dequantize, "QSatGrad": _qsat_grad,
    "QUpdate": _qupdate, "ConvBwInputS8W": _conv_bw_input_s8w, "GemmS8W": _gemm_s8w,
}
