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
    "QConv": _qconv, "QGemm": _qgemm, "QMaxPool": _qmaxpool, "QGlobalAveragePool": _qgap, "QAdd": _qadd,
    "QClamp": _qclamp, "Quantize": _quantize, "Dequantize": _dequantize, "QSatGrad": _qsat_grad,
    "QUpdate": _qupdate,
}
