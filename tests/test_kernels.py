"""fp32 reference kernels (runtime_c/eg_*.c) against hand-checked vectors and PyTorch.

Every kernel gets one tiny case whose answer is written out by hand, then random cases
compared element by element against torch (autograd for the backward kernels).
Tolerance (fp32): rtol 1e-5 / atol 1e-5 where the kernel does the same arithmetic as the
reference up to summation order; rtol 1e-4 where transcendental functions or long sums are
involved. Elementwise arithmetic must match numpy bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from kernel_harness import Guarded, Kernels, bcast_strides, build, contiguous_strides

RTOL, ATOL = 1e-5, 1e-5            # same arithmetic, different summation order
RTOL_TRANS, ATOL_TRANS = 1e-4, 1e-5  # exp/log/tanh inside, or long reductions


@pytest.fixture(scope="module")
def k(tmp_path_factory) -> Kernels:
    return Kernels(build(tmp_path_factory.mktemp("egk")))


@pytest.fixture
def g():
    guarded = Guarded()
    yield guarded
    guarded.check()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float32, requires_grad=grad)


def close(actual, expected, rtol=RTOL, atol=ATOL):
    if isinstance(actual, torch.Tensor):
        actual = actual.detach().numpy()
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().numpy()
    np.testing.assert_allclose(actual, np.asarray(expected, np.float32).reshape(np.shape(actual)),
                               rtol=rtol, atol=atol)


# ---- eg_math.h --------------------------------------------------------------------------------

def vec(k, name, x):
    x = f32(x)
    y = np.empty_like(x)
    getattr(k, name)(y, x, x.size)
    return y


def max_rel_err(y: np.ndarray, ref: np.ndarray) -> float:
    m = np.abs(ref) >= np.finfo(np.float32).tiny  # relative error is for normal results
    return float(np.max(np.abs(y[m].astype(np.float64) - ref[m]) / np.abs(ref[m])))


MATH_SWEEPS = {
    "vec_expf": (np.linspace(-103.0, 88.72, 1_000_001), np.exp),
    "vec_logf": (np.concatenate([np.exp(np.linspace(math.log(1e-44), math.log(3e38), 600_001)),
                                 np.linspace(0.5, 2.0, 400_001)]), np.log),
    "vec_tanhf": (np.concatenate([np.linspace(-12, 12, 600_001), np.linspace(-1e-3, 1e-3, 100_001),
                                  np.linspace(0.6, 0.65, 100_001)]), np.tanh),
    "vec_sigmoidf": (np.linspace(-100, 40, 1_000_001), lambda x: 1.0 / (1.0 + np.exp(-x))),
    "vec_sqrtf": (np.exp(np.linspace(math.log(1e-38), math.log(3e38), 500_001)), np.sqrt),
}


@pytest.mark.parametrize("name", sorted(MATH_SWEEPS))
def test_math_accuracy(k, name):
    xs, fn = MATH_SWEEPS[name]
    x = f32(xs)
    ref = fn(x.astype(np.float64))
    bound = 0.0 if name == "vec_sqrtf" else 4e-7  # ~2-3 ulp; sqrt is correctly rounded
    err = max_rel_err(vec(k, name, x), ref)
    if name == "vec_sqrtf":
        np.testing.assert_array_equal(vec(k, name, x), np.sqrt(x))
    else:
        assert err < bound, f"{name}: max relative error {err:.3g}"


def test_math_special_values(k):
    inf, nan = np.inf, np.nan
    e = vec(k, "vec_expf", [0.0, 1.0, -inf, inf, nan, 88.8, 1000.0, -104.0, -1000.0, -100.0, 88.72])
    assert e[0] == 1.0 and abs(e[1] - np.float32(math.e)) <= np.spacing(np.float32(math.e))
    assert e[2] == 0.0 and e[3] == inf and np.isnan(e[4])
    assert e[5] == inf and e[6] == inf          # overflow -> +inf
    assert e[7] == 0.0 and e[8] == 0.0          # underflow -> +0
    assert 0 < e[9] < 1e-38                     # subnormal result, rounded once
    assert abs(e[9] - math.exp(-100.0)) <= 0.5 * 2.0 ** -149
    assert np.isfinite(e[10])
    lg = vec(k, "vec_logf", [1.0, 0.0, -0.0, -1.0, inf, nan, 1e-45, math.e])
    assert lg[0] == 0.0 and lg[1] == -inf and lg[2] == -inf and np.isnan(lg[3])
    assert lg[4] == inf and np.isnan(lg[5])
    np.testing.assert_allclose(lg[6], math.log(np.float32(1e-45)), rtol=1e-6)  # subnormal input
    np.testing.assert_allclose(lg[7], 1.0, rtol=2e-7)
    th = vec(k, "vec_tanhf", [0.0, -0.0, inf, -inf, 20.0, -20.0, nan])
    assert th[0] == 0.0 and np.signbit(th[1]) and th[2] == 1.0 and th[3] == -1.0
    assert th[4] == 1.0 and th[5] == -1.0 and np.isnan(th[6])
    sg = vec(k, "vec_sigmoidf", [0.0, inf, -inf, 200.0, -200.0, -90.0, nan])
    assert sg[0] == 0.5 and sg[1] == 1.0 and sg[2] == 0.0 and sg[3] == 1.0 and sg[4] == 0.0
    assert abs(sg[5] - math.exp(-90.0)) <= 2.0 ** -149  # the tail keeps its accuracy (subnormal)
    assert np.isnan(sg[6])
    sq = vec(k, "vec_sqrtf", [0.0, 4.0, 2.0, inf])
    assert sq[0] == 0.0 and sq[1] == 2.0 and sq[2] == np.sqrt(np.float32(2.0)) and sq[3] == inf


# ---- eg_conv ----------------------------------------------------------------------------------

def conv_out(size, k_, s, p0, p1, d):
    return (size + p0 + p1 - d * (k_ - 1) - 1) // s + 1


def test_conv_hand(k, g):
    x = f32(np.arange(1, 10).reshape(1, 1, 3, 3))
    w = f32(np.ones((1, 1, 2, 2)))
    y = g.out(1, 1, 2, 2)
    k.conv2d_f32_fw(y, x, w, f32([0.5]), 1, 1, 3, 3, 1, 2, 2, 2, 2, 1, 1, 0, 0, 1, 1, 1)
    close(y, [[12.5, 16.5], [24.5, 28.5]])
    # pad 1 on top/left only, stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1)
    k.conv2d_f32_fw(y, x, w, None, 1, 1, 3, 3, 1, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1)
    close(y, [[1, 2 + 3], [4 + 7, 5 + 6 + 8 + 9]])
    dx = g.out(1, 1, 3, 3)
    k.conv2d_f32_bw_input(dx, f32(np.ones((1, 1, 2, 2))), w, 1, 1, 3, 3, 1, 2, 2, 2, 2, 1, 1, 0, 0, 1, 1, 1)
    close(dx, [[1, 2, 1], [2, 4, 2], [1, 2, 1]])  # how many windows cover each pixel
    dw = g.out(1, 1, 2, 2)
    k.conv2d_f32_bw_weight(dw, f32(np.ones((1, 1, 2, 2))), x, 1, 1, 3, 3, 1, 2, 2, 2, 2, 1, 1, 0, 0, 1, 1,
                           1, 1, 1, 1)
    close(dw, [[12, 16], [24, 28]])


# N, C, H, W, M, KH, KW, (sh, sw), (pt, pl, pb, pr), (dh, dw), G
CONV_CASES = [
    (2, 3, 7, 6, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),      # regular, same padding
    (1, 4, 9, 8, 6, 3, 2, (2, 1), (1, 0, 2, 1), (1, 1), 2),      # grouped, asym pads, rect kernel
    (2, 6, 8, 8, 6, 3, 3, (2, 2), (1, 1, 0, 0), (1, 1), 6),      # depthwise, stride 2
    (1, 6, 10, 9, 12, 3, 3, (1, 2), (2, 2, 2, 2), (2, 2), 3),    # dilation + groups
    (1, 5, 6, 7, 3, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),      # pointwise
    (1, 2, 5, 5, 2, 5, 5, (3, 3), (2, 1, 2, 3), (1, 1), 1),      # kernel as big as the image
    (2, 4, 11, 7, 8, 2, 3, (3, 2), (0, 2, 1, 0), (3, 1), 4),     # everything at once
]


def torch_conv(x, w, b, stride, pads, dil, G):
    pt, pl, pb, pr = pads
    return F.conv2d(F.pad(x, (pl, pr, pt, pb)), w, b, stride=stride, padding=0, dilation=dil, groups=G)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_random(k, g, rng, case):
    N, C, H, W, M, KH, KW, (sh, sw), pads, (dh, dw_), G = case
    pt, pl, pb, pr = pads
    OH, OW = conv_out(H, KH, sh, pt, pb, dh), conv_out(W, KW, sw, pl, pr, dw_)
    x = f32(rng.standard_normal((N, C, H, W)))
    w = f32(rng.standard_normal((M, C // G, KH, KW)))
    b = f32(rng.standard_normal(M))
    xt, wt, bt = t(x, True), t(w, True), t(b, True)
    yt = torch_conv(xt, wt, bt, (sh, sw), pads, (dh, dw_), G)
    assert yt.shape == (N, M, OH, OW)
    sizes = (N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw_, G)

    y = g.out(N, M, OH, OW)
    k.conv2d_f32_fw(y, x, w, b, *sizes)
    close(y, yt, RTOL_TRANS, ATOL_TRANS)
    k.conv2d_f32_fw(y, x, w, None, *sizes)
    close(y, yt - bt.view(1, M, 1, 1), RTOL_TRANS, ATOL_TRANS)

    dy = f32(rng.standard_normal((N, M, OH, OW)))
    yt.backward(t(dy))
    dx = g.like(x)
    k.conv2d_f32_bw_input(dx, dy, w, *sizes)
    close(dx, xt.grad, RTOL_TRANS, ATOL_TRANS)

    dw = g.like(w)
    k.conv2d_f32_bw_weight(dw, dy, x, *sizes, M, C // G, C)
    close(dw, wt.grad, RTOL_TRANS, ATOL_TRANS)

    # sparse update: leading output channels and leading in-group input channels only
    M_upd, Cg_upd = max(1, M // 2), max(1, (C // G) - 1)
    dw_part = g.out(M_upd, Cg_upd, KH, KW)
    k.conv2d_f32_bw_weight(dw_part, dy, x, *sizes, M_upd, Cg_upd, C)
    close(dw_part, wt.grad[:M_upd, :Cg_upd], RTOL_TRANS, ATOL_TRANS)


def test_conv_bw_weight_leading_input_share(k, g, rng):
    """G == 1 and only x's first Cx channels were saved (Cx == Cg_upd < C)."""
    N, C, H, W, M, KH, KW = 2, 5, 6, 6, 4, 3, 3
    sh, sw, pt, pl, pb, pr, dh, dw_ = 2, 1, 1, 0, 1, 2, 1, 2
    OH, OW = conv_out(H, KH, sh, pt, pb, dh), conv_out(W, KW, sw, pl, pr, dw_)
    x = f32(rng.standard_normal((N, C, H, W)))
    w = f32(rng.standard_normal((M, C, KH, KW)))
    wt = t(w, True)
    yt = torch_conv(t(x), wt, None, (sh, sw), (pt, pl, pb, pr), (dh, dw_), 1)
    dy = f32(rng.standard_normal(tuple(yt.shape)))
    yt.backward(t(dy))
    Cx, M_upd = 2, 3
    x_kept = f32(x[:, :Cx])
    dw = g.out(M_upd, Cx, KH, KW)
    k.conv2d_f32_bw_weight(dw, dy, x_kept, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw_, 1,
                           M_upd, Cx, Cx)
    close(dw, wt.grad[:M_upd, :Cx], RTOL_TRANS, ATOL_TRANS)


# ---- eg_gemm ----------------------------------------------------------------------------------

def test_gemm_hand(k, g):
    a = f32([[1, 2], [3, 4]])
    b = f32([[5, 6], [7, 8]])
    y = g.out(2, 2)
    k.gemm_f32(y, a, b, None, 1, 2, 2, 2, 0, 0, 1.0, 0.0, 0, 0, 0, 0)
    close(y, [[19, 22], [43, 50]])
    k.gemm_f32(y, a, b, f32([10, 20]), 1, 2, 2, 2, 1, 1, 2.0, 0.5, 0, 0, 0, 1)  # 2*a^T b^T + 0.5*c
    close(y, [[2 * 23 + 5, 2 * 31 + 10], [2 * 34 + 5, 2 * 46 + 10]])


@pytest.mark.parametrize("transA", [0, 1])
@pytest.mark.parametrize("transB", [0, 1])
@pytest.mark.parametrize("cmode", ["none", "full", "row", "col", "scalar"])
def test_gemm_random(k, g, rng, transA, transB, cmode):
    M, N, K = 5, 7, 6
    alpha, beta = (1.0, 1.0) if cmode == "none" else (0.75, -1.5)
    a = f32(rng.standard_normal((K, M) if transA else (M, K)))
    b = f32(rng.standard_normal((N, K) if transB else (K, N)))
    c, (c_sm, c_sn), c_full = {
        "none": (None, (0, 0), np.zeros((M, N))),
        "full": (f32(rng.standard_normal((M, N))), (N, 1), None),
        "row": (f32(rng.standard_normal(N)), (0, 1), None),       # bias over n
        "col": (f32(rng.standard_normal((M, 1))), (1, 0), None),  # bias over m
        "scalar": (f32([2.5]), (0, 0), None),
    }[cmode]
    if c_full is None:
        c_full = np.broadcast_to(c.reshape(c.shape if c.ndim == 2 else (1, -1)), (M, N))
    opa = a.T if transA else a
    opb = b.T if transB else b
    ref = alpha * (opa.astype(np.float64) @ opb) + (beta if c is not None else 0.0) * c_full
    y = g.out(M, N)
    k.gemm_f32(y, a, b, c, 1, M, N, K, transA, transB, alpha, beta, 0, 0, c_sm, c_sn)
    close(y, ref)


@pytest.mark.parametrize("bcast", ["none", "a", "b"])
def test_gemm_batched(k, g, rng, bcast):
    B, M, N, K = 3, 4, 5, 6
    a = f32(rng.standard_normal((1 if bcast == "a" else B, M, K)))
    b = f32(rng.standard_normal((1 if bcast == "b" else B, K, N)))
    ref = torch.matmul(t(a), t(b))
    y = g.out(B, M, N)
    k.gemm_f32(y, a, b, None, B, M, N, K, 0, 0, 1.0, 0.0, 0 if bcast == "a" else M * K,
               0 if bcast == "b" else K * N, 0, 0)
    close(y, ref)
    # transposed storage of b with broadcast c over the whole batch
    bt = f32(np.swapaxes(b, 1, 2))
    c = f32(rng.standard_normal(N))
    k.gemm_f32(y, a, bt, c, B, M, N, K, 0, 1, 1.0, 1.0, 0 if bcast == "a" else M * K,
               0 if bcast == "b" else K * N, 0, 1)
    close(y, ref + t(c))


def test_gemm_beta_zero_ignores_c(k, g):
    y = g.out(1, 1)
    k.gemm_f32(y, f32([[2]]), f32([[3]]), f32([np.nan]), 1, 1, 1, 1, 0, 0, 1.0, 0.0, 0, 0, 0, 0)
    assert y[0, 0] == 6.0


# ---- eg_eltwise: arithmetic ---------------------------------------------------------------------

BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_hand_and_exact(k, g, rng, op):
    a, b = f32([1, 2, 3, 4]), f32([4, 3, 2, 1])
    y = g.out(4)
    getattr(k, f"{op}_f32")(y, a, b, 4)
    close(y, {"add": [5, 5, 5, 5], "sub": [-3, -1, 1, 3], "mul": [4, 6, 6, 4], "div": [0.25, 2 / 3, 1.5, 4]}[op],
          rtol=0, atol=1e-7)
    a, b = f32(rng.standard_normal(257)), f32(rng.standard_normal(257) + 3)
    y = g.out(257)
    getattr(k, f"{op}_f32")(y, a, b, 257)
    np.testing.assert_array_equal(y, BINARY[op](a, b))  # IEEE ops: bit-exact


BCAST_SHAPES = [
    ((2, 3, 4, 5), (2, 1, 4, 1), (3, 1, 5)),
    ((4, 6), (4, 6), (6,)),
    ((3, 1, 2, 2, 2, 3), (1, 1, 2, 1, 2, 3), (3, 1, 1, 2, 1, 1)),  # 6 dims
    ((5,), (1,), (5,)),
    ((), (), ()),                                                    # scalars
]


@pytest.mark.parametrize("op", sorted(BINARY))
@pytest.mark.parametrize("shapes", BCAST_SHAPES)
def test_binary_bcast(k, g, rng, op, shapes):
    out, sa, sb = shapes
    a = f32(rng.standard_normal(sa))
    b = f32(rng.standard_normal(sb) + 3)
    y = g.out(*out) if out else g.out(1)
    getattr(k, f"{op}_f32_bcast")(y, a, b, len(out), out, bcast_strides(sa, out), bcast_strides(sb, out))
    np.testing.assert_array_equal(y.reshape(out), BINARY[op](a, b))


def test_scale_fill_copy_accumulate(k, g):
    x = f32([1, -2, 3])
    y = g.out(3)
    k.scale_f32(y, x, 3, -0.5)
    close(y, [-0.5, 1, -1.5], rtol=0, atol=0)
    k.fill_f32(y, 3, 7.0)
    close(y, [7, 7, 7], rtol=0, atol=0)
    k.copy_f32(y, x, 3)
    close(y, x, rtol=0, atol=0)
    k.accumulate_f32(y, f32([10, 10, 10]), 3)
    close(y, [11, 8, 13], rtol=0, atol=0)


def test_eltwise_in_place(k, rng):
    """The eltwise kernels take no restrict: the memory planner may run them in place."""
    x = f32(rng.standard_normal(50))
    ref = np.maximum(x, 0)
    k.relu_f32_fw(x, x, 50)
    np.testing.assert_array_equal(x, ref)
    a, b = f32(rng.standard_normal((4, 6))), f32(rng.standard_normal(6))
    ref = a + b
    k.add_f32_bcast(a, a, b, 2, (4, 6), (6, 1), (0, 1))
    np.testing.assert_array_equal(a, ref)
    d = f32(rng.standard_normal((2, 3)))
    x = f32([[-1, 2, -3], [4, -5, 6]])
    ref = np.where(x > 0, d, np.float32(0.25) * d)
    k.prelu_f32_bw_input(d, d, x, f32([0.25]), 2, (2, 3), (0, 0))
    np.testing.assert_array_equal(d, ref)


# ---- eg_eltwise: activations ------------------------------------------------------------------

def act_check(k, g, name, x, torch_fn, fw_args=(), bw_from="x", rtol=RTOL, atol=ATOL):
    """fw vs torch_fn(x); bw vs autograd, feeding the kernel the saved tensor it asks for
    (torch's own output for y-based backward kernels)."""
    x = f32(x)
    n = x.size
    xt = t(x, True)
    yt = torch_fn(xt)
    y = g.like(x)
    getattr(k, f"{name}_f32_fw")(y, x, n, *fw_args)
    close(y, yt, rtol, atol)
    dy = f32(np.linspace(-1.5, 2.0, n).reshape(x.shape))
    yt.backward(t(dy))
    saved = x if bw_from == "x" else f32(yt.detach().numpy())
    dx = g.like(x)
    getattr(k, f"{name}_f32_bw")(dx, dy, saved, n, *fw_args)
    close(dx, xt.grad, rtol, atol)


def with_kinks(rng, kinks, n=200, scale=4.0):
    return np.concatenate([np.asarray(kinks, np.float32), f32(rng.standard_normal(n) * scale)])


def test_relu(k, g, rng):
    x = f32([-1, 0, 2])
    y, dx = g.out(3), g.out(3)
    k.relu_f32_fw(y, x, 3)
    k.relu_f32_bw(dx, f32([5, 5, 5]), y, 3)
    close(y, [0, 0, 2], rtol=0, atol=0)
    close(dx, [0, 0, 5], rtol=0, atol=0)
    act_check(k, g, "relu", with_kinks(rng, [0.0, -0.0]), torch.relu, bw_from="y")


@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (0.0, 6.0), (-0.5, 0.25)])
def test_clip(k, g, rng, lo, hi):
    x = f32([lo - 1, lo, 0.5 * (lo + hi), hi, hi + 1])
    dx = g.out(5)
    y = g.out(5)
    k.clip_f32_fw(y, x, 5, lo, hi)
    k.clip_f32_bw(dx, f32([1, 1, 1, 1, 1]), y, 5, lo, hi)
    close(dx, [0, 0, 1, 0, 0], rtol=0, atol=0)  # strict at both ends, from y: torch's hardtanh_backward
    act_check(k, g, "clip", with_kinks(rng, [lo, hi]), lambda v: F.hardtanh(v, lo, hi), (lo, hi), bw_from="y")


@pytest.mark.parametrize("alpha", [0.01, 0.2, -0.5])
def test_leakyrelu(k, g, rng, alpha):
    x = f32([-2, 0, 3])
    y = g.out(3)
    k.leakyrelu_f32_fw(y, x, 3, alpha)
    close(y, [-2 * alpha, 0, 3])
    act_check(k, g, "leakyrelu", with_kinks(rng, [0.0]), lambda v: F.leaky_relu(v, alpha), (alpha,))


def test_sigmoid(k, g, rng):
    y = g.out(3)
    k.sigmoid_f32_fw(y, f32([0, 100, -100]), 3)
    close(y, [0.5, 1.0, math.exp(-100)], rtol=1e-5, atol=0)
    act_check(k, g, "sigmoid", with_kinks(rng, [0.0, 20.0, -20.0, -87.0]), torch.sigmoid, bw_from="y",
              rtol=RTOL_TRANS, atol=ATOL_TRANS)


def test_tanh(k, g, rng):
    y = g.out(3)
    k.tanh_f32_fw(y, f32([0, 20, -20]), 3)
    close(y, [0, 1, -1], rtol=0, atol=0)
    act_check(k, g, "tanh", with_kinks(rng, [0.0, 0.625, -0.625, 9.5]), torch.tanh, bw_from="y",
              rtol=RTOL_TRANS, atol=ATOL_TRANS)


def test_hardsigmoid(k, g, rng):
    # torch's hardsigmoid is alpha = 1/6, beta = 1/2 (ONNX default is alpha = 0.2)
    act_check(k, g, "hardsigmoid", with_kinks(rng, [-3.0, 3.0, 0.0]), F.hardsigmoid, (1 / 6, 0.5))
    x = f32([-10, -2.5, 0, 2.5, 10, -2.4, 2.4])  # alpha 0.2, beta 0.5: ramp on (-2.5, 2.5)
    y, dx = g.like(x), g.like(x)
    k.hardsigmoid_f32_fw(y, x, 7, 0.2, 0.5)
    k.hardsigmoid_f32_bw(dx, f32(np.full(7, 2.0)), x, 7, 0.2, 0.5)
    close(y, np.clip(0.2 * x.astype(np.float64) + 0.5, 0, 1))
    close(dx, [0, 0, 0.4, 0, 0, 0.4, 0.4], rtol=1e-6, atol=0)


def test_hardswish(k, g, rng):
    x = f32([-4, -3, 0, 1.5, 3, 4])
    y = g.like(x)
    k.hardswish_f32_fw(y, x, 6)
    close(y, [0, 0, 0, 1.5 * 4.5 / 6, 3, 4])
    act_check(k, g, "hardswish", with_kinks(rng, [-3.0, 3.0, 0.0, -1.5]), F.hardswish)


@pytest.mark.parametrize("slope_shape", [(3, 1, 1), (1,), (4, 5)])
def test_prelu(k, g, rng, slope_shape):
    shape = (2, 3, 4, 5)
    x = f32(rng.standard_normal(shape))
    x.reshape(-1)[:6] = 0.0  # values at the kink
    slope = f32(rng.uniform(0.05, 0.5, slope_shape))
    ss = bcast_strides(slope_shape, shape)
    xt, st = t(x, True), t(slope, True)
    yt = torch.where(xt > 0, xt, st * xt)  # ONNX PRelu with a broadcast slope
    if slope_shape == (3, 1, 1):
        close(F.prelu(t(x), t(slope.reshape(3))), yt)  # same as torch's per-channel prelu
    y = g.like(x)
    k.prelu_f32_fw(y, x, slope, 4, shape, ss)
    close(y, yt)
    dy = f32(rng.standard_normal(shape))
    yt.backward(t(dy))
    dx = g.like(x)
    k.prelu_f32_bw_input(dx, dy, x, slope, 4, shape, ss)
    close(dx, xt.grad)
    terms, dslope = g.like(x), g.like(slope)
    k.prelu_f32_bw_slope_terms(terms, dy, x, x.size)
    k.reduce_sum_f32(dslope, terms, 4, shape, ss, contiguous_strides(shape), slope.size)
    close(dslope, st.grad, RTOL_TRANS, ATOL_TRANS)


def test_prelu_hand(k, g):
    x = f32([[-2, 0, 3], [-1, 1, -4]])
    slope = f32([0.5, 0.25])  # per row
    y, dx, terms = g.like(x), g.like(x), g.like(x)
    k.prelu_f32_fw(y, x, slope, 2, (2, 3), (1, 0))
    close(y, [[-1, 0, 3], [-0.25, 1, -1]], rtol=0, atol=0)
    k.prelu_f32_bw_input(dx, f32(np.ones((2, 3))), x, slope, 2, (2, 3), (1, 0))
    close(dx, [[0.5, 0.5, 1], [0.25, 1, 0.25]], rtol=0, atol=0)
    k.prelu_f32_bw_slope_terms(terms, f32(np.full((2, 3), 2.0)), x, 6)
    close(terms, [[-4, 0, 0], [-2, 0, -8]], rtol=0, atol=0)


# ---- eg_shape ---------------------------------------------------------------------------------

def test_copy_strided_transpose(k, g, rng):
    x = f32(rng.standard_normal((2, 3, 4)))
    perm = (2, 0, 1)
    yshape = tuple(x.shape[p] for p in perm)
    y = g.out(*yshape)
    xs = contiguous_strides(x.shape)
    k.copy_strided_f32(y, x, 3, yshape, contiguous_strides(yshape), [xs[p] for p in perm])
    np.testing.assert_array_equal(y, x.transpose(perm))


def test_copy_strided_slice_pad_concat(k, g, rng):
    x = f32(rng.standard_normal((4, 6)))
    # Slice x[1:3, 2:6:2]: the x pointer moves to element (1, 2), strides scale by the steps
    y = g.out(2, 2)
    k.copy_strided_f32(y, x.reshape(-1)[1 * 6 + 2:], 2, (2, 2), (2, 1), (6, 2))
    np.testing.assert_array_equal(y, x[1:3, 2:6:2])
    # Pad by (1, 2) on the left/right of the last dim: fill, then copy into the interior
    p = g.out(4, 9)
    k.fill_f32(p, 36, 0.0)
    k.copy_strided_f32(p.reshape(-1)[1:], x, 2, (4, 6), (9, 1), (6, 1))
    np.testing.assert_array_equal(p, np.pad(x, ((0, 0), (1, 2))))
    # Concat along axis 1 of x and a [4, 2] tensor
    z = f32(rng.standard_normal((4, 2)))
    c = g.out(4, 8)
    k.copy_strided_f32(c, x, 2, (4, 6), (8, 1), (6, 1))
    k.copy_strided_f32(c.reshape(-1)[6:], z, 2, (4, 2), (8, 1), (2, 1))
    np.testing.assert_array_equal(c, np.concatenate([x, z], axis=1))
    s = g.out(1)
    k.copy_strided_f32(s, f32([4.5]), 0, (), (), ())
    assert s[0] == 4.5


@pytest.mark.parametrize("shape", [(3, 4, 5), (3, 2, 45)])  # 45: the 8-way partial sums + tail
@pytest.mark.parametrize("axes", [(0, 2), (2,), (1,), (0, 1, 2), ()])
def test_reduce_sum(k, g, rng, axes, shape):
    x = f32(rng.standard_normal(shape))
    ref = x.astype(np.float64).sum(axis=axes, keepdims=True)
    y = g.out(*ref.shape)
    sy = [0 if d in axes else s for d, s in enumerate(contiguous_strides(ref.shape))]
    k.reduce_sum_f32(y, x, 3, x.shape, sy, contiguous_strides(x.shape), y.size)
    close(y, ref)


def test_reduce_sum_hand(k, g):
    y = g.out(2)
    k.reduce_sum_f32(y, f32([[1, 2, 3], [4, 5, 6]]), 2, (2, 3), (1, 0), (3, 1), 2)
    close(y, [6, 15], rtol=0, atol=0)
    k.reduce_sum_f32(y, f32([[1, 2, 3], [4, 5, 6]]), 2, (2, 3), (0, 0), (3, 1), 2)
    close(y, [21, 0], rtol=0, atol=0)  # everything into y[0]; y[1] zeroed only


def test_broadcast(k, g, rng):
    x = f32(rng.standard_normal((3, 1)))
    out = (2, 3, 4)
    y = g.out(*out)
    k.broadcast_f32(y, x, 3, out, bcast_strides(x.shape, out), -2.0)
    np.testing.assert_array_equal(y, np.broadcast_to(np.float32(-2.0) * x, out))
    s = g.out(1)
    k.broadcast_f32(s, f32([3.0]), 0, (), (), 0.5)
    assert s[0] == 1.5


# ---- eg_pool ----------------------------------------------------------------------------------

def test_maxpool_hand(k, g):
    x = f32([[[[1, 3, 3, 0], [2, 0, 1, 5], [7, 7, 2, 2], [0, 1, 2, 2]]]])
    y = g.out(1, 1, 2, 2)
    k.maxpool2d_f32_fw(y, x, 1, 1, 4, 4, 2, 2, 2, 2, 2, 2, 0, 0, 1, 1)
    close(y, [[3, 5], [7, 2]], rtol=0, atol=0)
    dx = g.like(x)
    k.maxpool2d_f32_bw(dx, f32([[[[1, 2], [3, 4]]]]), x, 1, 1, 4, 4, 2, 2, 2, 2, 2, 2, 0, 0, 1, 1)
    # ties: the first max in row-major order gets the gradient
    close(dx, [[[[0, 1, 0, 0], [0, 0, 0, 2], [3, 0, 4, 0], [0, 0, 0, 0]]]], rtol=0, atol=0)


# N, C, H, W, (KH, KW), (sh, sw), (pt, pl, pb, pr), (dh, dw), ceil_mode
POOL_CASES = [
    (2, 3, 8, 8, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), False),
    (1, 2, 7, 9, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),    # ceil_mode with pads
    (1, 2, 9, 7, (3, 2), (2, 3), (1, 1, 1, 1), (1, 1), True),    # rectangular
    (2, 2, 10, 9, (3, 3), (1, 2), (1, 0, 1, 0), (2, 1), False),  # dilation (max only)
    (1, 3, 6, 7, (3, 3), (2, 2), (1, 0, 2, 1), (1, 1), False),   # asymmetric pads
    (1, 1, 5, 5, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), True),    # ceil_mode, window past edge
    (1, 3, 7, 9, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), False),   # 2x2 fast path, odd: cells left over
    (2, 4, 25, 5, (25, 5), (1, 1), (0, 0, 0, 0), (1, 1), False), # one window over the image (dscnn)
]


def test_maxpool_2x2_ties(k, g, rng):
    """The 2x2 stride-2 path (write-first backward) keeps the first-maximum rule on many ties."""
    x = f32(rng.integers(0, 3, (2, 4, 9, 11)))
    dy = f32(rng.standard_normal((2, 4, 4, 5)))
    sizes = (2, 4, 9, 11, 4, 5, 2, 2, 2, 2, 0, 0, 1, 1)
    y = g.out(2, 4, 4, 5)
    k.maxpool2d_f32_fw(y, x, *sizes)
    dx = g.like(x)
    k.maxpool2d_f32_bw(dx, dy, x, *sizes)
    ref = np.zeros_like(x)
    for n, c, oh, ow in np.ndindex(2, 4, 4, 5):
        win = x[n, c, 2 * oh:2 * oh + 2, 2 * ow:2 * ow + 2].ravel()
        j = int(np.argmax(win))  # numpy's argmax: the first maximum
        assert y[n, c, oh, ow] == win[j]
        ref[n, c, 2 * oh + j // 2, 2 * ow + j % 2] = dy[n, c, oh, ow]
    np.testing.assert_array_equal(dx, ref)


def torch_pool_sym(pads):
    pt, pl, pb, pr = pads
    return pt == pb and pl == pr


@pytest.mark.parametrize("case", POOL_CASES)
def test_maxpool_random(k, g, rng, case):
    N, C, H, W, (KH, KW), (sh, sw), pads, (dh, dw_), ceil = case
    pt, pl, pb, pr = pads
    x = f32(rng.standard_normal((N, C, H, W)))
    xt = t(x, True)
    if torch_pool_sym(pads):
        yt = F.max_pool2d(xt, (KH, KW), (sh, sw), (pt, pl), (dh, dw_), ceil_mode=ceil)
    else:
        assert not ceil
        yt = F.max_pool2d(F.pad(xt, (pl, pr, pt, pb), value=-math.inf), (KH, KW), (sh, sw), 0, (dh, dw_))
    OH, OW = yt.shape[2:]
    y = g.out(N, C, OH, OW)
    sizes = (N, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw_)
    k.maxpool2d_f32_fw(y, x, *sizes)
    close(y, yt, rtol=0, atol=0)
    dy = f32(rng.standard_normal((N, C, OH, OW)))
    yt.backward(t(dy))
    dx = g.like(x)
    k.maxpool2d_f32_bw(dx, dy, x, *sizes)
    close(dx, xt.grad)


def test_avgpool_hand(k, g):
    x = f32(np.arange(1, 10).reshape(1, 1, 3, 3))
    y = g.out(1, 1, 2, 2)
    # 2x2 windows, stride 2, pad 1 on top/left: the windows see 1, (2+3), (4+7), (5+6+8+9)
    k.avgpool2d_f32_fw(y, x, 1, 1, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1, 0, 0, 1)
    close(y, [[1 / 4, 5 / 4], [11 / 4, 28 / 4]])
    k.avgpool2d_f32_fw(y, x, 1, 1, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1, 0, 0, 0)
    close(y, [[1, 5 / 2], [11 / 2, 28 / 4]])
    dx = g.like(x)
    k.avgpool2d_f32_bw(dx, f32([[[[4, 8], [12, 16]]]]), 1, 1, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1, 0, 0, 0)
    close(dx, [[[[4, 4, 4], [6, 4, 4], [6, 4, 4]]]])


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("case", [c for c in POOL_CASES if c[7] == (1, 1)])
def test_avgpool_random(k, g, rng, case, count_include_pad):
    N, C, H, W, (KH, KW), (sh, sw), pads, _, ceil = case
    pt, pl, pb, pr = pads
    x = f32(rng.standard_normal((N, C, H, W)))
    xt = t(x, True)
    if torch_pool_sym(pads):
        yt = F.avg_pool2d(xt, (KH, KW), (sh, sw), (pt, pl), ceil_mode=ceil,
                          count_include_pad=bool(count_include_pad))
    else:
        # asymmetric pads: pool the zero-padded input; the divisor is the pooled count of the
        # cells that count (all padded cells, or only the image)
        assert not ceil
        padded = F.pad(xt, (pl, pr, pt, pb))
        mask = F.pad(torch.ones(1, 1, H, W), (pl, pr, pt, pb), value=float(count_include_pad))
        yt = (F.avg_pool2d(padded, (KH, KW), (sh, sw)) / F.avg_pool2d(mask, (KH, KW), (sh, sw)))
    OH, OW = yt.shape[2:]
    y = g.out(N, C, OH, OW)
    sizes = (N, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, pb, pr, count_include_pad)
    k.avgpool2d_f32_fw(y, x, *sizes)
    close(y, yt)
    dy = f32(rng.standard_normal((N, C, OH, OW)))
    yt.backward(t(dy))
    dx = g.like(x)
    k.avgpool2d_f32_bw(dx, dy, *sizes)
    close(dx, xt.grad)


# ---- eg_softmax -------------------------------------------------------------------------------

def test_softmax_hand(k, g):
    y = g.out(2, 2)
    k.softmax_f32_fw(y, f32([[0, math.log(3)], [1000, 1000]]), 2, 2, 1)  # no overflow at 1000
    close(y, [[0.25, 0.75], [0.5, 0.5]], rtol=1e-6, atol=0)
    dx = g.out(2)
    k.softmax_f32_bw(dx, f32([1, 0]), f32([0.25, 0.75]), 1, 2, 1)
    close(dx, [0.25 * (1 - 0.25), 0.75 * (0 - 0.25)], rtol=1e-6, atol=0)


@pytest.mark.parametrize("shape,axis", [((2, 5, 3), 1), ((4, 7), 1), ((6, 2), 0), ((2, 3, 4, 2), 2)])
def test_softmax_random(k, g, rng, shape, axis):
    x = f32(rng.standard_normal(shape) * 3)
    outer, n, inner = int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:]))
    xt = t(x, True)
    yt = torch.softmax(xt, dim=axis)
    y = g.like(x)
    k.softmax_f32_fw(y, x, outer, n, inner)
    close(y, yt, RTOL_TRANS, ATOL_TRANS)
    dy = f32(rng.standard_normal(shape))
    yt.backward(t(dy))
    dx = g.like(x)
    k.softmax_f32_bw(dx, dy, f32(yt.detach().numpy()), outer, n, inner)
    close(dx, xt.grad, RTOL_TRANS, ATOL_TRANS)


def test_softmax_xent(k, g, rng):
    loss, d = g.out(1), g.out(4)
    k.softmax_xent_f32(loss, d, f32([0, 0, 0, 0]), 2, 4)
    close(loss, [math.log(4)], rtol=1e-6, atol=0)
    close(d, [0.25, 0.25, -0.75, 0.25], rtol=1e-6, atol=0)
    for n, label, scale in [(10, 3, 1.0), (10, 9, 20.0), (3, 0, 50.0), (1, 0, 1.0)]:
        z = f32(rng.standard_normal(n) * scale)
        zt = t(z, True)
        lt = F.cross_entropy(zt.view(1, n), torch.tensor([label]))
        lt.backward()
        loss, d = g.out(1), g.out(n)
        k.softmax_xent_f32(loss, d, z, label, n)
        close(loss, lt, RTOL_TRANS, ATOL_TRANS)
        close(d, zt.grad, RTOL_TRANS, ATOL_TRANS)
        loss2 = g.out(1)
        k.softmax_xent_f32(loss2, None, z, label, n)
        assert loss2[0] == loss[0]


def test_mse(k, g, rng):
    loss, d = g.out(1), g.out(2)
    k.mse_f32(loss, d, f32([1, 3]), f32([0, 1]), 2)
    close(loss, [2.5], rtol=0, atol=0)
    close(d, [1, 2], rtol=0, atol=0)
    y, tg = f32(rng.standard_normal(37)), f32(rng.standard_normal(37))
    yt = t(y, True)
    lt = F.mse_loss(yt, t(tg))
    lt.backward()
    loss, d = g.out(1), g.like(y)
    k.mse_f32(loss, d, y, tg, 37)
    close(loss, lt)
    close(d, yt.grad)
    k.mse_f32(loss, None, y, tg, 37)
    close(loss, lt)


# ---- eg_norm ----------------------------------------------------------------------------------

def test_batchnorm_hand(k, g):
    x = f32([[[1, 3]], [[5, 7]]]).reshape(2, 1, 2)  # N=2, C=1, HW=2
    args = (f32([2]), f32([1]), f32([4]), f32([4]), 0.0)  # scale, bias, mean, var (std 2), eps
    y = g.like(x)
    k.batchnorm_f32_fw(y, x, *args, 2, 1, 2)
    close(y, [[[-2, 0]], [[2, 4]]], rtol=0, atol=0)
    dx, ds, db = g.like(x), g.out(1), g.out(1)
    k.batchnorm_f32_bw_input(dx, f32(np.ones((2, 1, 2))), f32([2]), f32([4]), 0.0, 2, 1, 2)
    close(dx, np.ones((2, 1, 2)), rtol=0, atol=0)
    k.batchnorm_f32_bw_params(ds, db, f32(np.ones((2, 1, 2))), x, f32([4]), f32([4]), 0.0, 2, 1, 2)
    close(ds, [(-3 - 1 + 1 + 3) / 2], rtol=0, atol=0)
    close(db, [4], rtol=0, atol=0)


@pytest.mark.parametrize("N,C,HW", [(2, 3, 5), (4, 6, 1), (1, 2, 49)])
def test_batchnorm_random(k, g, rng, N, C, HW):
    eps = 1e-5
    x = f32(rng.standard_normal((N, C, HW)) * 2 + 1)
    scale, bias = f32(rng.standard_normal(C)), f32(rng.standard_normal(C))
    mean, var = f32(rng.standard_normal(C)), f32(rng.uniform(0.1, 3.0, C))
    xt, st, bt = t(x, True), t(scale, True), t(bias, True)
    yt = F.batch_norm(xt, t(mean), t(var), st, bt, training=False, eps=eps)
    # the inference formula written out, as the gradient rule sees it
    yf = (xt - t(mean).view(1, C, 1)) / torch.sqrt(t(var).view(1, C, 1) + eps) * st.view(1, C, 1) \
        + bt.view(1, C, 1)
    close(yf, yt, RTOL_TRANS, ATOL_TRANS)
    y = g.like(x)
    k.batchnorm_f32_fw(y, x, scale, bias, mean, var, eps, N, C, HW)
    close(y, yt, RTOL_TRANS, ATOL_TRANS)
    dy = f32(rng.standard_normal((N, C, HW)))
    yf.backward(t(dy))
    dx, ds, db = g.like(x), g.out(C), g.out(C)
    k.batchnorm_f32_bw_input(dx, dy, scale, var, eps, N, C, HW)
    close(dx, xt.grad, RTOL_TRANS, ATOL_TRANS)
    k.batchnorm_f32_bw_params(ds, db, dy, x, mean, var, eps, N, C, HW)
    close(ds, st.grad, RTOL_TRANS, ATOL_TRANS)
    close(db, bt.grad, RTOL_TRANS, ATOL_TRANS)
    ds2, db2 = g.out(C), g.out(C)
    k.batchnorm_f32_bw_params(ds2, None, dy, x, mean, var, eps, N, C, HW)
    k.batchnorm_f32_bw_params(None, db2, dy, x, mean, var, eps, N, C, HW)
    np.testing.assert_array_equal(ds2, ds)
    np.testing.assert_array_equal(db2, db)


# ---- eg_optim ---------------------------------------------------------------------------------

def test_optim_hand(k):
    w = f32([1, 2, 3, 4])
    k.sgd_f32(w, f32([1, 1]), 2, 1, 2, 0.5)  # rows 0 and 2 of a [4,1] block with stride 2
    close(w, [0.5, 2, 2.5, 4], rtol=0, atol=0)
    w, v = f32([1, 1]), f32([1, -1])
    k.momentum_f32(w, v, f32([1, 1]), 1, 2, 2, 0.1, 0.9)  # v = 0.9 v + g = [1.9, 0.1]
    close(v, [1.9, 0.1], rtol=1e-6, atol=0)
    close(w, [1 - 0.19, 1 - 0.01], rtol=1e-6, atol=0)
    w, m, v = f32([1.0]), f32([0.0]), f32([0.0])
    k.adam_f32(w, m, v, f32([2.0]), 1, 1, 1, 0.1, 0.9, 0.999, 0.0, 0.1, 0.001)
    close(m, [0.2], rtol=1e-6, atol=0)
    # (1 - beta2) is formed from the float beta2 = 0.99900001: 0.00099998713, not torch's 0.001
    close(v, [4 * (1 - np.float32(0.999))], rtol=1e-6, atol=0)
    close(w, [0.9], rtol=1e-6, atol=0)  # first Adam step moves by lr * sign(g) when eps = 0


@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("block", ["full", "partial"])
def test_optim_vs_torch(k, rng, opt, block):
    R, S = 6, 10
    rows, inner = (R, S) if block == "full" else (4, 7)  # the partial block is w[:4, :7]
    w0 = f32(rng.standard_normal((R, S)))
    lr, mu, b1, b2, eps = 0.05, 0.9, 0.9, 0.999, 1e-8
    p = torch.nn.Parameter(t(w0))
    torch_opt = {"sgd": lambda: torch.optim.SGD([p], lr=lr),
                 "momentum": lambda: torch.optim.SGD([p], lr=lr, momentum=mu),
                 "adam": lambda: torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps)}[opt]()
    w = w0.copy()
    m, v = f32(np.zeros(rows * inner)), f32(np.zeros(rows * inner))
    for step in range(1, 4):
        gblock = f32(rng.standard_normal((rows, inner)))
        full = np.zeros((R, S), np.float32)
        full[:rows, :inner] = gblock  # outside the block torch sees zero gradient: no change
        p.grad = t(full)
        torch_opt.step()
        if opt == "sgd":
            k.sgd_f32(w, gblock, rows, inner, S, lr)
        elif opt == "momentum":
            k.momentum_f32(w, v, gblock, rows, inner, S, lr, mu)
            close(v.reshape(rows, inner), torch_opt.state[p]["momentum_buffer"][:rows, :inner])
        else:
            k.adam_f32(w, m, v, gblock, rows, inner, S, lr, b1, b2, eps, 1 - b1 ** step, 1 - b2 ** step)
            st = torch_opt.state[p]
            # torch forms 1 - beta in double; the kernel gets beta2 as a float (0.99900001),
            # so v differs by up to 1.3e-5 relative; w by far less (sqrt(v), then + eps).
            close(m.reshape(rows, inner), st["exp_avg"][:rows, :inner], rtol=1e-5, atol=1e-12)
            close(v.reshape(rows, inner), st["exp_avg_sq"][:rows, :inner], rtol=2e-5, atol=1e-12)
        close(w, p.detach(), RTOL, ATOL)
    if block == "partial":
        np.testing.assert_array_equal(w[rows:], w0[rows:])
        np.testing.assert_array_equal(w[:, inner:], w0[:, inner:])



@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_reduce_rows_update_equals_reduce_sum_then_update(k, rng, opt):
    """reduce_rows_<opt>_f32 (a bias gradient's row sums fused into its update, passes/fuse.py) gives
    bit for bit what reduce_sum_f32 into a gradient buffer and then <opt>_f32 give, on a partial block."""
    R, S, rows, inner, n = 6, 10, 4, 7, 37
    x = f32(rng.standard_normal((rows * inner, n)))
    w0 = f32(rng.standard_normal((R, S)))
    state0 = [f32(rng.random(rows * inner)) for _ in range(2)]
    g = f32(np.zeros(rows * inner))
    k.reduce_sum_f32(g, x, 2, x.shape, (1, 0), contiguous_strides(x.shape), g.size)
    w_ref, w = w0.copy(), w0.copy()
    ref_state, state = [s.copy() for s in state0], [s.copy() for s in state0]
    lr, mu, b1, b2, eps = 0.05, 0.9, 0.9, 0.999, 1e-8
    if opt == "sgd":
        k.sgd_f32(w_ref, g, rows, inner, S, lr)
        k.reduce_rows_sgd_f32(w, x, rows, inner, S, n, lr)
    elif opt == "momentum":
        k.momentum_f32(w_ref, ref_state[0], g, rows, inner, S, lr, mu)
        k.reduce_rows_momentum_f32(w, state[0], x, rows, inner, S, n, lr, mu)
    else:
        k.adam_f32(w_ref, *ref_state, g, rows, inner, S, lr, b1, b2, eps, 1 - b1 ** 3, 1 - b2 ** 3)
        k.reduce_rows_adam_f32(w, *state, x, rows, inner, S, n, lr, b1, b2, eps, 1 - b1 ** 3, 1 - b2 ** 3)
    np.testing.assert_array_equal(w, w_ref)
    for a, b in zip(state, ref_state):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(w, w0)


# ---- build ------------------------------------------------------------------------------------

ACTIVATIONS = ["relu", "clip", "leakyrelu", "sigmoid", "tanh", "hardsigmoid", "hardswish"]
CALLED_BY_NAME = {f"{op}_f32{sfx}" for op in BINARY for sfx in ("", "_bcast")} | \
    {f"{a}_f32_{p}" for a in ACTIVATIONS for p in ("fw", "bw")}


def test_every_kernel_is_tested(k):
    """Each prototype in the headers is called somewhere in this file."""
    import inspect
    import sys
    src = inspect.getsource(sys.modules[__name__])
    missing = [n for n in k.signatures
               if not n.startswith("vec_") and f"k.{n}(" not in src and n not in CALLED_BY_NAME]
    assert not missing, missing
