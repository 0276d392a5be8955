"""The fused conv entry points of runtime_c/eg_conv_tiled.c (passes/fuse_eltwise.py, fuse.py) against
the plain kernel followed by the separate pass (gemm_f32_gemv_{act,mask} of eg_gemv.c likewise), over the
shapes of test_kernels_tiled.py (zoo layers, groups, strides, depthwise paths: channel blocks, phase planes,
the direct loops). The Winograd fused kernels (input gradient _mask, weight gradient _momentum) are tested
against their unfused pairs in test_winograd.py / test_wgrad.py, whose libraries are built at both vector widths:

- conv2d_f32_fw_{tiled,implicit}_act (act 1 ReLU, 2 ReLU6) = relu_f32_fw / clip_f32_fw(0, 6) of the
  plain kernel's output, bit for bit (the epilogue is applied to the same sums);
- conv2d_f32_bw_input_{tiled,implicit}_mask (1 ReluGrad by y > 0, 2 ClipGrad by lo < y < hi) = the
  plain input gradient masked, bit for bit, with y holding exact zeros and bounds (the kinks);
- conv2d_f32_bw_weight_momentum_implicit: v = mu*v + dW, w -= lr*v within the fp32 bound of the
  weight gradient (dW reaches v in parts) plus the rounding of v and w; outside the block untouched.
Scratch is exactly the plain kernel's, NaN-filled, between guard words.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from test_kernels_tiled import (
    ATOL,
    CASES,
    IMPLICIT_CASES,
    RTOL,
    Guarded,
    Scratch,
    TiledKernels,
    build_lib,
    conv_scratch_floats,
    f32,
    implicit_case,
    implicit_kind_scratch,
    sizes_of,
)


@pytest.fixture(scope="module")
def k(tmp_path_factory) -> TiledKernels:
    return TiledKernels(build_lib(tmp_path_factory.mktemp("egfused")))


def _relu(a):
    return np.where(a > 0, a, np.float32(0))


def _relu6(a):
    return np.minimum(np.maximum(a, np.float32(0)), np.float32(6))


def _mask_y(rng, shape):
    """Forward outputs with exact kinks: zeros, the ReLU6 bound 6, values inside and outside."""
    y = f32(rng.choice(np.array([0.0, 6.0, 0.5, 3.0, 7.0, -1.0], np.float32), shape))
    return y


def _run(k, fn, out_shape, args, sizes, tail, n_scratch):
    s = Scratch(n_scratch)
    g = Guarded()
    out = g.out(*out_shape)
    getattr(k, fn)(out, *args, *sizes, s.buf, *tail)
    g.check()
    s.check()
    return out


def _check(k, variant, case, scratch):
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()) + 1)
    sizes = sizes_of(case)
    N, C, H, W, M, OH, OW, KH, KW, *_, G = sizes
    x = f32(rng.standard_normal((N, C, H, W)) * 3)
    w = f32(rng.standard_normal((M, C // G, KH, KW)))
    b = f32(rng.standard_normal(M))
    dy = f32(rng.standard_normal((N, M, OH, OW)))
    if variant != "implicit" or implicit_case(case, "fw"):
        n = scratch("fw", sizes)
        plain = _run(k, f"conv2d_f32_fw_{variant}", (N, M, OH, OW), (x, w, b), sizes, (), n)
        for act, ref in ((1, _relu(plain)), (2, _relu6(plain)), (0, plain)):
            out = _run(k, f"conv2d_f32_fw_{variant}_act", (N, M, OH, OW), (x, w, b), sizes, (act,), n)
            np.testing.assert_array_equal(out, ref, err_msg=f"fw_{variant}_act {act} {case[0]}")
    # the implicit _mask variant: the stride-1 implicit GEMM, or the strided phase kernel (mask as rows are zipped)
    if variant != "implicit" or implicit_case(case, "bw_input"):
        n = scratch("bw_input", sizes)
        plain = _run(k, f"conv2d_f32_bw_input_{variant}", (N, C, H, W), (dy, w), sizes, (), n)
        y = _mask_y(rng, (N, C, H, W))
        for mask, lo, hi, keep in ((1, 0.0, 0.0, y > 0), (2, 0.0, 6.0, (y > 0) & (y < 6)),
                                   (2, -0.5, 3.0, (y > -0.5) & (y < 3))):
            out = _run(k, f"conv2d_f32_bw_input_{variant}_mask", (N, C, H, W), (dy, w), sizes,
                       (y, mask, lo, hi), n)
            np.testing.assert_array_equal(out, np.where(keep, plain, np.float32(0)),
                                          err_msg=f"bw_input_{variant}_mask {mask} {case[0]}")


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_tiled_act_and_mask(k, case):
    _check(k, "tiled", case, lambda kind, sizes: conv_scratch_floats(kind, *sizes))


FUSED_IMPLICIT = IMPLICIT_CASES[::2]


@pytest.mark.parametrize("case", FUSED_IMPLICIT, ids=[f"{i}-{c[0]}" for i, c in enumerate(FUSED_IMPLICIT)])
def test_implicit_act_mask_and_momentum(k, case):
    _check(k, "implicit", case, lambda kind, sizes: implicit_kind_scratch(kind, *sizes))
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()) + 2)
    sizes = sizes_of(case)
    N, C, H, W, M, OH, OW, KH, KW, *_, G = sizes
    Cg = C // G
    x = f32(rng.standard_normal((N, C, H, W)))
    dy = f32(rng.standard_normal((N, M, OH, OW)))
    lr, mu = 0.03, 0.9
    for m_upd, cg_upd in ((M, Cg), (max(1, (M + 1) // 2), max(1, Cg - 1))):
        ref = np.zeros((m_upd, cg_upd, KH, KW), np.float32)
        k.conv2d_f32_bw_weight(ref, dy, x, *sizes, m_upd, cg_upd, C)
        mag = np.zeros_like(ref)
        k.conv2d_f32_bw_weight(mag, np.abs(dy), np.abs(x), *sizes, m_upd, cg_upd, C)
        w0 = f32(rng.standard_normal((M, Cg, KH, KW)))
        v0 = f32(rng.standard_normal((m_upd, cg_upd, KH, KW)))
        v_ref = mu * v0.astype(np.float64) + ref
        w_ref = w0.astype(np.float64)
        w_ref[:m_upd, :cg_upd] -= lr * v_ref
        s = Scratch(implicit_kind_scratch("bw_weight", *sizes, M_upd=m_upd, Cg_upd=cg_upd, Cx=C))
        g = Guarded()
        w, v = g.out(M, Cg, KH, KW), g.out(m_upd, cg_upd, KH, KW)
        w[...], v[...] = w0, v0
        k.conv2d_f32_bw_weight_momentum_implicit(w, v, dy, x, *sizes, m_upd, cg_upd, C, Cg * KH * KW, lr, mu,
                                                 s.buf)
        g.check()
        s.check()
        eps = np.finfo(np.float32).eps
        v_bound = RTOL * mag + ATOL + 4 * eps * (np.abs(v0) + mag)
        assert (np.abs(v - v_ref) <= v_bound).all(), f"momentum_implicit v {case[0]}"
        w_bound = lr * v_bound + 4 * eps * (np.abs(w0[:m_upd, :cg_upd]) + lr * np.abs(v_ref))
        assert (np.abs(w[:m_upd, :cg_upd] - w_ref[:m_upd, :cg_upd]) <= w_bound).all(), f"momentum_implicit w {case[0]}"
        rest = np.ones(w.shape, bool)
        rest[:m_upd, :cg_upd] = False
        np.testing.assert_array_equal(w[rest], w0[rest])


# gemm_f32_gemv_{act,mask} (eg_gemv.h): the batch-1 linear layers' forward (dot, with bias) and input
# gradient (axpy), plus a batched and a row-by-row shape: the plain kernel then the separate pass, bit for bit
GEMV_FUSED = [  # batch, M, N, K, transA, transB, beta, C per row
    (1, 1, 100, 561, 0, 1, 1.0, True),  # mlp_har's first layer
    (1, 1, 37, 13, 0, 1, 1.0, True),
    (1, 1, 100, 6, 0, 0, 0.0, False),  # input gradient dy . W
    (2, 3, 20, 9, 0, 1, 0.5, True),
]


@pytest.mark.parametrize("case", GEMV_FUSED)
def test_gemv_act_and_mask(k, case):
    batch, M, N, K, ta, tb, beta, with_c = case
    rng = np.random.default_rng(N * 100 + K)
    a = f32(rng.standard_normal((batch, K, M) if ta else (batch, M, K)) * 2)
    b = f32(rng.standard_normal((batch, N, K) if tb else (batch, K, N)))
    c = f32(rng.standard_normal(N)) if with_c else None
    args = (a, b, c, batch, M, N, K, ta, tb, 1.0, beta, M * K, N * K, 0, 1)
    plain = np.zeros((batch, M, N), np.float32)
    k.gemm_f32_gemv(plain, *args)
    assert (plain > 6).any() and (plain < 0).any()
    for act, ref in ((1, _relu(plain)), (2, _relu6(plain)), (0, plain)):
        g = Guarded()
        out = g.out(batch, M, N)
        k.gemm_f32_gemv_act(out, *args, act)
        g.check()
        np.testing.assert_array_equal(out, ref, err_msg=f"gemv_act {act} {case}")
    y = _mask_y(rng, (batch, M, N))
    for mask, lo, hi, keep in ((1, 0.0, 0.0, y > 0), (2, 0.0, 6.0, (y > 0) & (y < 6)),
                               (2, -0.5, 3.0, (y > -0.5) & (y < 3))):
        g = Guarded()
        out = g.out(batch, M, N)
        k.gemm_f32_gemv_mask(out, *args, y, mask, lo, hi)
        g.check()
        np.testing.assert_array_equal(out, np.where(keep, plain, np.float32(0)), err_msg=f"gemv_mask {mask} {case}")

