"""Native fp16 kernels (runtime_c/eg_conv_f16.c, eg_gemm_f16.c) against a float64 reference.

The reference computes the same sums in float64 from the same fp16 operands (x, w, dy rounded to
fp16 first, bias fp32), so the only differences are the kernel's fp32 accumulation and its final
rounding. Stated tolerance, every element: an fp16 output is the float64 value rounded to fp16
within one fp16 ulp (|y - ref| <= 2^-10 |ref| + 2^-24 + 1e-6 * sum|terms|: the 1e-6 covers fp32
summation order, the ulp a tie that the fp32 sum moved); an fp32 output (weight gradient,
gemm_f16_y32) within 1e-6 * sum|terms| + 1e-7 |ref|. Shapes: strided, padded, dilated, grouped,
depthwise, pointwise, rows longer than the 64-float accumulator, partial weight-gradient blocks.
"""

from __future__ import annotations

import ctypes
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from kernel_harness import RUNTIME

CONVS = [  # N, C, H, W, M, KH, KW, sh, sw, pt, pl, pb, pr, dil_h, dil_w, G
    (1, 3, 9, 11, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    (2, 4, 8, 7, 6, 3, 2, 2, 2, 1, 0, 1, 1, 1, 1, 2),
    (1, 8, 10, 10, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8),   # depthwise
    (1, 6, 9, 9, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 6),     # depthwise, strided
    (1, 5, 6, 70, 7, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),    # pointwise, rows > 64
    (1, 3, 7, 80, 5, 3, 5, 1, 3, 2, 2, 1, 2, 2, 1, 1),    # dilated, strided, wide rows
    (2, 2, 5, 5, 3, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 1),
]


def _lib(tmp_path_factory, sources, cflags=()):
    out = tmp_path_factory.mktemp("f16k") / "libf16k.so"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-shared", *cflags,
                    *[str(RUNTIME / s) for s in sources], "-o", str(out)], check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(out))


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return _lib(tmp_path_factory, ["eg_conv_f16.c", "eg_gemm_f16.c", "eg_f16.c"])


def _p(a):
    return ctypes.c_void_p(a.ctypes.data) if a is not None else None


def _h(shape, rng, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float16)


def _close16(y16, ref, terms):
    y = y16.astype(np.float64)
    tol = 2.0 ** -10 * np.abs(ref) + 2.0 ** -24 + 1e-6 * terms
    bad = np.abs(y - ref) > tol
    assert not bad.any(), f"{bad.sum()} of {bad.size} off: max {np.abs(y - ref).max()}"


def _close32(y, ref, terms):
    bad = np.abs(y.astype(np.float64) - ref) > 1e-6 * terms + 1e-7 * np.abs(ref)
    assert not bad.any(), f"{bad.sum()} of {bad.size} off: max {np.abs(y - ref).max()}"


def conv_case(case, rng):
    N, C, H, W, M, KH, KW, sh, sw, pt, pl, pb, pr, dh, dw, G = case
    x, w = _h((N, C, H, W), rng), _h((M, C // G, KH, KW), rng, 0.5)
    b = rng.standard_normal(M).astype(np.float32)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    wt = torch.tensor(w.astype(np.float64), requires_grad=True)
    xp = F.pad(xt, (pl, pr, pt, pb))
    y = F.conv2d(xp, wt, torch.tensor(b.astype(np.float64)), (sh, sw), 0, (dh, dw), G)
    with torch.no_grad():
        ya = F.conv2d(F.pad(xt.abs(), (pl, pr, pt, pb)), wt.abs(), None, (sh, sw), 0, (dh, dw), G) + torch.tensor(abs(b).astype(np.float64))[:, None, None]
    dy = _h(y.shape, rng)
    y.backward(torch.tensor(dy.astype(np.float64)))
    OH, OW = y.shape[2], y.shape[3]
    dims = [N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G]
    return x, w, b, dy, y.detach().numpy(), ya.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), dims


def _dx_terms(dy, w, case):
    N, C, H, W, _, _, _, sh, sw, pt, pl, pb, pr, dh, dw, G = case
    xt = torch.zeros((N, C, H, W), dtype=torch.float64, requires_grad=True)
    y = F.conv2d(F.pad(xt, (pl, pr, pt, pb)), torch.tensor(np.abs(w).astype(np.float64)), None, (sh, sw), 0,
                 (dh, dw), G)
    y.backward(torch.tensor(np.abs(dy).astype(np.float64)))
    return xt.grad.numpy()


@pytest.mark.parametrize("case", CONVS, ids=[f"conv{i}" for i in range(len(CONVS))])
def test_conv_f16(lib, case):
    rng = np.random.default_rng(sum(case))
    x, w, b, dy, yref, yterms, dxref, dwref, dims = conv_case(case, rng)
    y = np.full(yref.shape, np.nan, np.float16)
    lib.conv2d_f16_fw(_p(y), _p(x), _p(w), _p(b), *dims)
    _close16(y, yref, yterms)
    dx = np.full(x.shape, np.nan, np.float16)
    lib.conv2d_f16_bw_input(_p(dx), _p(dy), _p(w), *dims)
    _close16(dx, dxref, _dx_terms(dy, w, case))
    M, cg = w.shape[0], w.shape[1]
    for mu, cu in ((M, cg), (max(1, M // 2), max(1, cg - 1))):
        if cu < cg and case[-1] != 1:
            continue  # a leading input share is only kept for G == 1
        xs = np.ascontiguousarray(x[:, :cu]) if cu < cg else x
        dwt = np.full((mu, cu) + w.shape[2:], np.nan, np.float32)
        lib.conv2d_f16_bw_weight(_p(dwt), _p(dy), _p(xs), *dims, mu, cu, xs.shape[1])
        terms = np.abs(dwref[:mu, :cu]) * 0 + np.abs(dy).sum() * np.abs(x).max()
        _close32(dwt, dwref[:mu, :cu], terms)


@pytest.mark.parametrize("ta,tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize("M,N,K,batch", [(3, 70, 9, 1), (5, 4, 130, 2)])
def test_gemm_f16(lib, ta, tb, M, N, K, batch):
    rng = np.random.default_rng(M * N + K + ta + 2 * tb)
    a = _h((batch, K, M) if ta else (batch, M, K), rng)
    b = _h((batch, N, K) if tb else (batch, K, N), rng)
    c = rng.standard_normal(N).astype(np.float32)  # a row bias, broadcast over m (c_sm = 0)
    alpha, beta = 0.5, 2.0
    oa = np.swapaxes(a, 1, 2) if ta else a
    ob = np.swapaxes(b, 1, 2) if tb else b
    ref = alpha * oa.astype(np.float64) @ ob.astype(np.float64) + beta * c.astype(np.float64)
    terms = abs(alpha) * np.abs(oa.astype(np.float64)) @ np.abs(ob.astype(np.float64)) + abs(beta * c)
    args = [batch, M, N, K, ta, tb, ctypes.c_float(alpha), ctypes.c_float(beta), a[0].size, b[0].size, 0, 1]
    y16 = np.full((batch, M, N), np.nan, np.float16)
    lib.gemm_f16(_p(y16), _p(a), _p(b), _p(c), *args)
    _close16(y16, ref, terms)
    y32 = np.full((batch, M, N), np.nan, np.float32)
    lib.gemm_f16_y32(_p(y32), _p(a), _p(b), None, *args[:7], ctypes.c_float(0.0), *args[8:])
    ref0 = alpha * oa.astype(np.float64) @ ob.astype(np.float64)
    _close32(y32, ref0, terms)


def test_conv_f16_bw_weight_y16(lib):
    """The fp16-output weight gradient is the fp32 one rounded once (same sums, same order)."""
    rng = np.random.default_rng(5)
    case = CONVS[1]
    x, w, _, dy, _, _, _, _, dims = conv_case(case, rng)
    d32 = np.empty(w.shape, np.float32)
    d16 = np.full(w.shape, np.nan, np.float16)
    lib.conv2d_f16_bw_weight(_p(d32), _p(dy), _p(x), *dims, w.shape[0], w.shape[1], x.shape[1])
    lib.conv2d_f16_bw_weight_y16(_p(d16), _p(dy), _p(x), *dims, w.shape[0], w.shape[1], x.shape[1])
    np.testing.assert_array_equal(d16.view(np.uint16), d32.astype(np.float16).view(np.uint16))


@pytest.fixture(scope="module")
def elt(tmp_path_factory):
    return _lib(tmp_path_factory, ["eg_eltwise_f16.c", "eg_f16.c"])


def test_eltwise_f16_bit_exact(elt):
    """relu/clip/add (fw and bw) on fp16 storage equal "widen, fp32 op, round" bit for bit, on every
    fp16 pattern (NaNs aside) against numpy."""
    every = np.arange(65536, dtype=np.uint16).view(np.float16)
    h = every[~np.isnan(every)].copy()
    rng = np.random.default_rng(1)
    o = rng.permutation(h)
    n = h.size
    f = lambda a: a.astype(np.float32)
    out = np.empty(n, np.float16)
    elt.relu_f16_fw(_p(out), _p(h), n)
    np.testing.assert_array_equal(out, np.maximum(f(h), 0).astype(np.float16))
    elt.relu_f16_bw(_p(out), _p(o), _p(h), n)
    np.testing.assert_array_equal(out.view(np.uint16), np.where(f(h) > 0, o, np.float16(0)).view(np.uint16))
    elt.clip_f16_fw(_p(out), _p(h), n, ctypes.c_float(0.0), ctypes.c_float(6.0))
    np.testing.assert_array_equal(out, np.clip(f(h), 0, 6).astype(np.float16))
    elt.clip_f16_bw(_p(out), _p(o), _p(h), n, ctypes.c_float(0.0), ctypes.c_float(6.0))
    np.testing.assert_array_equal(out.view(np.uint16),
                                  np.where((f(h) > 0) & (f(h) < 6), o, np.float16(0)).view(np.uint16))
    with np.errstate(over="ignore"):
        ref = (f(h) + f(o)).astype(np.float16)
    elt.add_f16(_p(out), _p(h), _p(o), n)
    np.testing.assert_array_equal(out.view(np.uint16), ref.view(np.uint16))


def test_maxpool_f16_and_bias_sum(elt):
    rng = np.random.default_rng(2)
    N, C, H, W, K = 2, 3, 8, 10, 2
    x = _h((N, C, H, W), rng)
    x[0, 0, :2, :2] = 1.0  # a tie: the first cell wins, as torch
    y = np.empty((N, C, H // K, W // K), np.float16)
    dims = [N, C, H, W, H // K, W // K, K, K, K, K, 0, 0, 1, 1]
    elt.maxpool2d_f16_fw(_p(y), _p(x), *dims)
    xt = torch.tensor(x.astype(np.float32), requires_grad=True)
    yt = F.max_pool2d(xt, K)
    np.testing.assert_array_equal(y, yt.detach().numpy().astype(np.float16))
    dy = _h(y.shape, rng)
    yt.backward(torch.tensor(dy.astype(np.float32)))
    dx = np.full(x.shape, np.nan, np.float16)
    elt.maxpool2d_f16_bw(_p(dx), _p(dy), _p(x), *dims)
    np.testing.assert_array_equal(dx, xt.grad.numpy().astype(np.float16))
    # bias gradient: sum over (N, H*W) of dy[N, C, H*W], fp32 sums of fp16 values
    g = _h((N, C, H * W), rng)
    s = np.full(C, np.nan, np.float32)
    shape = (ctypes.c_int * 3)(N, C, H * W)
    sy, sx = (ctypes.c_int * 3)(0, 1, 0), (ctypes.c_int * 3)(C * H * W, H * W, 1)
    elt.reduce_sum_f16(_p(s), _p(g), 3, shape, sy, sx, C)
    np.testing.assert_allclose(s, g.astype(np.float64).sum(axis=(0, 2)), rtol=1e-6, atol=1e-5)
