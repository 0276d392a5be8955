"""The Winograd F(3x3, 2x2) weight gradient (runtime_c/eg_winograd_wgrad.c) against the reference
kernel conv2d_f32_bw_weight and PyTorch autograd, every element; its fused SGD step; the
compile-time rule that picks it; and ResNet-8 trained with it against PyTorch.

Tolerance: the transforms add and halve (exact in fp32 up to rounding of each sum) and the 16
products per tile are summed in another order than the 36 of the reference, so the error scales
with the sums of |terms| that the output transform combines: per element of dW[m, c]
|wino - ref| <= 2e-6 * max over the 9 taps of ref(|dy|, |x|)[m, c] + 1e-9, where ref(|dy|, |x|) is
the reference kernel on the absolute values (measured worst: 3.3e-7 of it). A tap whose terms are
all zero (a column only padding reaches) comes out of the transform as a difference of nonzero
sums, so its bound is its block's, not its own zero.
The kernel is built twice: with the host's flags (-march=native: the AVX-512 path on this machine)
and for AVX2 (-march=x86-64-v3: the portable vector path). Scratch is exactly
winograd_scratch_floats(...) floats of NaN between guard words; outputs too sit between guards.
"""

from __future__ import annotations

import platform
import re
import subprocess

import numpy as np
import pytest
from edgegrad.kernels_wgrad import (
    TILE_BLOCK,
    chunk_rows,
    host_has_avx512,
    tiles,
    use_winograd,
    winograd_applies,
    winograd_scratch_floats,
)
from egtest import compile_host
from kernel_harness import RUNTIME, Guarded, Kernels
from test_zoo_train import LR, assert_trains_like_torch

from models import ZOO

RTOL, ATOL = 2e-6, 1e-9
FLAGS = {"native": ["-march=native"], "avx2": ["-march=x86-64-v3"]}
BASE_CFLAGS = ["-std=c99", "-O3", "-fno-math-errno", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared"]
FAMILIES = ["conv", "winograd_wgrad"]

# (N, C, M, H, W, pt, pl, pb, pr): ResNet-8's stride-1 layers, odd sizes (a half dy tile at the
# bottom/right), 1x1 images, channels 1..70 not multiples of the 4 x 6 register block, asymmetric
# pads 0..2, batch 2, one chunk of tiles and many (the GEMM in chunks of tile rows, partial sums).
SHAPES = [
    (1, 16, 16, 32, 32, 1, 1, 1, 1), (1, 32, 32, 16, 16, 1, 1, 1, 1), (1, 64, 64, 8, 8, 1, 1, 1, 1),
    (1, 5, 7, 9, 11, 0, 0, 0, 0), (2, 3, 17, 5, 6, 2, 2, 2, 2), (1, 1, 1, 1, 1, 1, 1, 1, 1),
    (1, 70, 33, 3, 7, 2, 1, 0, 2), (2, 9, 13, 33, 2, 1, 0, 2, 1), (1, 17, 70, 6, 5, 0, 2, 1, 0),
    (1, 8, 8, 2, 2, 2, 2, 2, 2), (2, 6, 5, 24, 24, 1, 1, 1, 1), (1, 4, 20, 33, 33, 1, 1, 1, 1),
]


def out_size(H, W, pt, pl, pb, pr):
    return H + pt + pb - 2, W + pl + pr - 2


@pytest.fixture(scope="module", params=sorted(FLAGS))
def k(request, tmp_path_factory):
    if platform.machine() not in ("x86_64", "AMD64") and request.param != "native":
        pytest.skip("x86-64 flags")
    lib = tmp_path_factory.mktemp(f"wgrad_{request.param}") / "libwg.so"
    sources = [str(RUNTIME / f"eg_{f}.c") for f in FAMILIES]
    subprocess.run(["gcc", *BASE_CFLAGS, *FLAGS[request.param], f"-I{RUNTIME}", *sources, "-o", str(lib)],
                   check=True, capture_output=True, text=True)
    return Kernels(lib, families=FAMILIES, math_shim=False)


def _case(shape, seed):
    N, C, M, H, W, pt, pl, pb, pr = shape
    OH, OW = out_size(H, W, pt, pl, pb, pr)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    dy = rng.standard_normal((N, M, OH, OW)).astype(np.float32)
    sizes = (N, C, H, W, M, OH, OW, 3, 3, 1, 1, pt, pl, 1, 1, 1)
    return x, dy, sizes


def _updates(C, M):
    """(M_upd, Cg_upd, x channels stored): the whole layer, leading shares of both, and x kept for
    the updated input channels only (Cx == Cg_upd)."""
    mu, cu = max(1, (M + 1) // 2), max(1, (C + 2) // 3)
    return [(M, C, C), (mu, cu, C), (M, cu, cu)]


def _ref(k, dy, x, sizes, mu, cu, cx):
    ref = np.zeros((mu, cu, 3, 3), np.float32)
    mag = np.zeros_like(ref)
    k.conv2d_f32_bw_weight(ref, dy, x, *sizes, mu, cu, cx)
    k.conv2d_f32_bw_weight(mag, np.abs(dy), np.abs(x), *sizes, mu, cu, cx)
    return ref, np.broadcast_to(mag.max(axis=(2, 3), keepdims=True), mag.shape)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n{}c{}m{}_{}x{}_p{}{}{}{}".format(*s))
def test_matches_reference(k, shape):
    x, dy, sizes = _case(shape, 0)
    _N, C, M = shape[:3]
    assert winograd_applies(*sizes[1:])
    for mu, cu, cx in _updates(C, M):
        xs = np.ascontiguousarray(x[:, :cx])
        ref, mag = _ref(k, dy, xs, sizes, mu, cu, cx)
        g = Guarded()
        out = g.out(mu, cu, 3, 3)
        scratch = g.out(winograd_scratch_floats(*sizes, M_upd=mu, Cg_upd=cu, Cx=cx))
        k.conv2d_f32_bw_weight_winograd(out, dy, xs, *sizes, mu, cu, cx, scratch)
        g.check()
        assert np.all(np.abs(out - ref) <= RTOL * mag + ATOL), \
            f"m_upd {mu} cg_upd {cu}: worst {np.max(np.abs(out - ref) / (mag + 1e-30)):.2e} of sum|terms|"


@pytest.mark.parametrize("shape", SHAPES[3:9], ids=lambda s: "n{}c{}m{}_{}x{}_p{}{}{}{}".format(*s))
def test_sgd_fused(k, shape):
    """w[m, c] -= lr * dW for m < M_upd, c < Cg_upd (rows w_stride apart); every other weight bit-identical."""
    x, dy, sizes = _case(shape, 1)
    _N, C, M = shape[:3]
    lr = 0.03
    for mu, cu, cx in _updates(C, M):
        xs = np.ascontiguousarray(x[:, :cx])
        ref, mag = _ref(k, dy, xs, sizes, mu, cu, cx)
        w0 = np.random.default_rng(2).standard_normal((M, C, 3, 3)).astype(np.float32)
        g = Guarded()
        w = g.out(M, C, 3, 3)
        w[...] = w0
        scratch = g.out(winograd_scratch_floats(*sizes, M_upd=mu, Cg_upd=cu, Cx=cx))
        k.conv2d_f32_bw_weight_sgd_winograd(w, dy, xs, *sizes, mu, cu, cx, C * 9, lr, scratch)
        g.check()
        expect = w0[:mu, :cu].astype(np.float64) - lr * ref.astype(np.float64)
        # the gradient's tolerance, plus the fp32 roundings of lr * dW and of the sum (1 ulp each)
        bound = lr * (RTOL * mag + ATOL) + 1.2e-7 * (np.abs(expect) + lr * np.abs(ref))
        assert np.all(np.abs(w[:mu, :cu] - expect) <= bound)
        keep = np.ones((M, C), bool)
        keep[:mu, :cu] = False
        np.testing.assert_array_equal(w[keep], w0[keep])


@pytest.mark.parametrize("shape", [SHAPES[i] for i in (0, 2, 4, 7)], ids=lambda s: "n{}c{}m{}_{}x{}_p{}{}{}{}".format(*s))
def test_momentum_fused_is_the_unfused_pair(k, shape):
    """conv2d_f32_bw_weight_momentum_winograd (passes/fuse.py) against conv2d_f32_bw_weight_winograd then
    v = mu*v + dW, w -= lr*v in fp32: the same dW, only the momentum sums' roundings (contracted or not) may
    differ; every weight outside the block bit-identical. ResNet-8's layers, batch 2 over many chunks."""
    x, dy, sizes = _case(shape, 3)
    _N, C, M = shape[:3]
    lr, mu = np.float32(0.03), np.float32(0.9)
    eps = np.finfo(np.float32).eps
    rng = np.random.default_rng(4)
    for m_upd, cg_upd, cx in _updates(C, M):
        xs = np.ascontiguousarray(x[:, :cx])
        _, mag = _ref(k, dy, xs, sizes, m_upd, cg_upd, cx)
        g = Guarded()
        dw = g.out(m_upd, cg_upd, 3, 3)
        scratch = g.out(winograd_scratch_floats(*sizes, M_upd=m_upd, Cg_upd=cg_upd, Cx=cx))
        k.conv2d_f32_bw_weight_winograd(dw, dy, xs, *sizes, m_upd, cg_upd, cx, scratch)
        w0 = rng.standard_normal((M, C, 3, 3)).astype(np.float32)
        v0 = rng.standard_normal((m_upd, cg_upd, 3, 3)).astype(np.float32)
        v_pair = mu * v0 + dw
        w_pair = w0[:m_upd, :cg_upd] - lr * v_pair
        w, v = g.out(M, C, 3, 3), g.out(m_upd, cg_upd, 3, 3)
        w[...], v[...] = w0, v0
        k.conv2d_f32_bw_weight_momentum_winograd(w, v, dy, xs, *sizes, m_upd, cg_upd, cx, C * 9, lr, mu, scratch)
        g.check()
        v_bound = 4 * eps * (np.abs(mu * v0) + np.abs(dw) + mag)
        assert np.all(np.abs(v - v_pair) <= v_bound), f"v, m_upd {m_upd} cg_upd {cg_upd}"
        w_bound = lr * v_bound + 4 * eps * (np.abs(w0[:m_upd, :cg_upd]) + lr * np.abs(v_pair))
        assert np.all(np.abs(w[:m_upd, :cg_upd] - w_pair) <= w_bound), f"w, m_upd {m_upd} cg_upd {cg_upd}"
        keep = np.ones((M, C), bool)
        keep[:m_upd, :cg_upd] = False
        np.testing.assert_array_equal(w[keep], w0[keep])


def test_matches_torch(k):
    """dW against PyTorch autograd of conv2d (pads applied with F.pad, so asymmetric ones too)."""
    import torch
    import torch.nn.functional as F

    for shape in (SHAPES[2], SHAPES[6], SHAPES[8], SHAPES[10]):
        x, dy, sizes = _case(shape, 3)
        _N, C, M, _H, _W, pt, pl, pb, pr = shape
        wt = torch.zeros(M, C, 3, 3, dtype=torch.float64, requires_grad=True)
        y = F.conv2d(F.pad(torch.from_numpy(x).double(), (pl, pr, pt, pb)), wt)
        y.backward(torch.from_numpy(dy).double())
        ref = wt.grad.numpy()
        mag = np.zeros((M, C, 3, 3), np.float32)
        k.conv2d_f32_bw_weight(mag, np.abs(dy), np.abs(x), *sizes, M, C, C)
        mag = mag.max(axis=(2, 3), keepdims=True)
        out = np.zeros((M, C, 3, 3), np.float32)
        scratch = np.zeros(winograd_scratch_floats(*sizes), np.float32)
        k.conv2d_f32_bw_weight_winograd(out, dy, x, *sizes, M, C, C, scratch)
        assert np.all(np.abs(out - ref) <= RTOL * mag + ATOL), shape


def test_rule():
    s1 = {"N": 1, "C": 16, "H": 32, "W": 32, "M": 16, "OH": 32, "OW": 32, "KH": 3, "KW": 3, "sh": 1, "sw": 1, "pt": 1, "pl": 1, "dh": 1, "dw": 1, "G": 1}
    assert use_winograd(**s1)
    assert use_winograd(**{**s1, "C": 64, "M": 64, "H": 8, "W": 8, "OH": 8, "OW": 8})
    assert use_winograd(**{**s1, "C": 3})  # the RGB stem
    assert not use_winograd(**{**s1, "C": 2})  # 2 -> 16: the dy transforms serve too few input channels
    assert use_winograd(**{**s1, "C": 2, "M": 8})
    for bad in ({"sh": 2, "sw": 2, "OH": 16, "OW": 16}, {"KH": 5, "KW": 5}, {"dh": 2}, {"G": 2, "C": 32, "M": 32},
                {"pt": 3}):
        assert not winograd_applies(**{k: v for k, v in {**s1, **bad}.items() if k != "N"}), bad
    assert tiles(2, 7, 8) == 2 * 4 * 4
    # exact scratch: the padded planes of the updated channels, 16 floats per tile of a chunk (about
    # TILE_BLOCK tiles: whole tile rows) and updated channel, the partial sums when there are more chunks
    assert TILE_BLOCK == 64 and chunk_rows(8, 8) == 4 and chunk_rows(32, 32) == 4 and chunk_rows(33, 33) == 3
    assert winograd_scratch_floats(**{**s1, "H": 8, "W": 8, "OH": 8, "OW": 8}) == 16 * 100 + 16 * 16 * 32
    assert winograd_scratch_floats(**s1) == 16 * 34 * 34 + 16 * 64 * 32 + 16 * 16 * 16
    big = {**s1, "H": 33, "W": 33, "OH": 33, "OW": 33}
    assert winograd_scratch_floats(**big, M_upd=8, Cg_upd=5) == 5 * 36 * 36 + 16 * 51 * 13 + 16 * 8 * 5


def _calls(build, name):
    return re.findall(rf"{name}\(([^;]*)\);", (build / "model.c").read_text())


@pytest.mark.parametrize("scheme,optimizer,fn", [
    ("in:last:3@0.5", "sgd", "conv2d_f32_bw_weight_sgd_winograd"),  # fused SGD, half the input channels
    ("weights:last:3@0.5", "momentum", "conv2d_f32_bw_weight_momentum_winograd"),  # fused momentum, half the rows
])
def test_resnet8_trains_like_torch(scheme, optimizer, fn, tmp_path):
    if not host_has_avx512():
        pytest.skip("select_kernels picks the Winograd weight gradient on AVX-512 hosts only")
    build = compile_host(ZOO["resnet8"].path, tmp_path / "b", update=scheme, optimizer=optimizer, lr=LR[optimizer])
    calls = _calls(build, fn)
    assert calls, f"{fn} not in the generated step"
    first = 20 if "momentum" in fn else 19  # after (w, v, dy, x) or (w, dy, x) and the 16 sizes
    m_upd, cg_upd = (int(v) for v in calls[0].split(", ")[first:first + 2])
    assert (m_upd, cg_upd) != (64, 64)  # a sparse update reached the kernel
    assert_trains_like_torch("resnet8", build, scheme, optimizer, LR[optimizer])


def test_adam_keeps_the_implicit_weight_gradient(tmp_path):
    """Adam's step is scale-free per element: a gradient Adam reads keeps the implicit kernel, whose rounding is
    relative to each element (Winograd's is relative to the 3x3 block: cnn_fashion's dead channel then stepped
    by ~lr where PyTorch steps ~0)."""
    if not host_has_avx512():
        pytest.skip("select_kernels picks the Winograd weight gradient on AVX-512 hosts only")
    build = compile_host(ZOO["resnet8"].path, tmp_path / "b", update="last:3", optimizer="adam", lr=1e-3)
    text = (build / "model.c").read_text()
    assert "conv2d_f32_bw_weight_winograd(" not in text and "conv2d_f32_bw_weight_implicit(" in text
