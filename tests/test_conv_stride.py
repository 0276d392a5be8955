"""Strided convolutions of the host implicit kernels (runtime_c/eg_conv_tiled.c) against the fp32
reference kernels and PyTorch autograd (float64), every element.

The input gradient of a strided layer runs as one stride-1 implicit GEMM per phase (ih % sh,
iw % sw) of dx (conv2d_f32_bw_input_implicit); the forward reads one plane of x per row phase and
kernel column, OW wide, and writes y in place. The sweep covers strides 2..4
(also sh != sw), kernels 1..5 (even, KH != KW), pads 0..2 (asymmetric), dilation 1..2, groups 1 and 2,
odd image sizes (ragged phases: H % sh != 0, phases no tap reaches, a phase with fewer rows than
another) and channel counts that are not multiples of 8 or 16, batch 1 and 2.

Tolerance, as tests/test_kernels_tiled.py: the sums run in another order (blocked, FMAs), so
    |kernel - expected| <= 1e-5 * conv(|inputs|) + 1e-6
with conv(|inputs|) the same operation on absolute values (float64). Scratch is exactly
implicit_kind_scratch floats of NaN between guard words; outputs sit between guards.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from kernel_harness import Guarded
from test_kernels_tiled import ATOL, RTOL, Scratch, TiledKernels, assert_close, build_lib, out_size, sizes_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compiler.kernels_tiled import implicit_applies, implicit_kind_scratch, phase_geometry, use_implicit

# (name, N, C, H, W, M, KH, KW, sh, sw, pt, pl, pb, pr, dil_h, dil_w, G)
FIXED = [
    ("resnet8 16->32 3x3 s2", 1, 16, 32, 32, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1),
    ("resnet8 32->64 3x3 s2", 1, 32, 16, 16, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1),
    ("resnet8 1x1 16->32 s2", 1, 16, 32, 32, 32, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1),
    ("1x1 s3 odd, two of three phases empty", 2, 5, 11, 13, 7, 1, 1, 3, 3, 0, 0, 0, 0, 1, 1, 1),
    ("1x1 s2 padded (planes not dy)", 1, 6, 9, 8, 10, 1, 1, 2, 2, 1, 0, 1, 1, 1, 1, 1),
    ("2x2 s2 (every tap its own phase)", 1, 7, 10, 9, 9, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 1),
    ("4x2 s3x2 asym pads", 2, 9, 13, 11, 5, 4, 2, 3, 2, 2, 0, 1, 1, 1, 1, 1),
    ("5x5 s2 dil2 G=2", 1, 10, 17, 15, 6, 5, 5, 2, 2, 2, 1, 2, 0, 2, 2, 2),
    ("3x5 s4 dil2", 1, 3, 19, 23, 11, 3, 5, 4, 4, 1, 2, 2, 1, 2, 2, 1),
    ("3x3 s2 H < sh rows", 1, 4, 1, 12, 6, 1, 3, 2, 2, 0, 1, 0, 1, 1, 1, 1),
    ("mbv2 stem 3->16 s2", 1, 3, 30, 34, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1),
    ("many dy channels (taps split per call)", 1, 3, 9, 9, 200, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1),
]


def sweep(n: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < n:
        G = int(rng.choice([1, 2]))
        Cg, Mg = int(rng.integers(1, 21)), int(rng.integers(1, 21))
        KH, KW = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        sh, sw = int(rng.integers(2, 5)), int(rng.integers(2, 5))
        if rng.random() < 0.5:
            sw = sh
        dh, dw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        H, W = int(rng.integers(1, 24)), int(rng.integers(1, 26))
        pads = [int(rng.integers(0, 3)) for _ in range(4)]
        case = (f"sweep s{sh}x{sw} k{KH}x{KW}", int(rng.integers(1, 3)), Cg * G, H, W, Mg * G, KH, KW, sh, sw,
                *pads, dh, dw, G)
        if min(out_size(case)) > 0 and implicit_applies(*_applies_args(case), "bw_input"):
            cases.append(case)
    return cases


def _applies_args(case):
    _, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, _, _, G = sizes_of(case)
    return C, M, H, W, OH, OW, KH, KW, sh, sw, pt, pl, G


CASES = FIXED + sweep(48, 2026)


@pytest.fixture(scope="module")
def k(tmp_path_factory) -> TiledKernels:
    return TiledKernels(build_lib(tmp_path_factory.mktemp("egstride")))


def torch_conv(case, x, w, dy):
    """y, dx, dW of the layer in float64 PyTorch autograd (ONNX pads: top, left, bottom, right)."""
    _, _, _, _, _, _, _, _, sh, sw, pt, pl, pb, pr, dh, dw, G = case
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    xp = torch.nn.functional.pad(xt, (pl, pr, pt, pb))
    y = torch.nn.functional.conv2d(xp, wt, stride=(sh, sw), dilation=(dh, dw), groups=G)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_strided_implicit_matches_reference_and_torch(k, case):
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    sizes = sizes_of(case)
    N, C, H, W, M, OH, OW, KH, KW, *_, G = sizes
    assert (OH, OW) == out_size(case)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((M, C // G, KH, KW)).astype(np.float32)
    dy = rng.standard_normal((N, M, OH, OW)).astype(np.float32)
    y_t, dx_t, dw_t = torch_conv(case, x, w, dy)
    mag_y, mag_dx, mag_dw = torch_conv(case, np.abs(x), np.abs(w), np.abs(dy))

    def run(kind, out_shape, args, extra=(), scratch_kw=None):
        s = Scratch(implicit_kind_scratch(kind, *sizes, **(scratch_kw or {})))
        g = Guarded()
        out = g.out(*out_shape)
        getattr(k, f"conv2d_f32_{kind}_implicit")(out, *args, *sizes, *extra, s.buf)
        g.check()
        s.check()
        ref = np.zeros(out_shape, np.float32)
        getattr(k, f"conv2d_f32_{kind}")(ref, *args, *sizes, *extra)
        return out, ref

    args = _applies_args(case)
    if implicit_applies(*args, "fw"):
        y, ref = run("fw", (N, M, OH, OW), (x, w, None))
        assert_close(y, ref, mag_y, f"fw_implicit vs reference {case[0]}")
        assert_close(y, y_t, mag_y, f"fw_implicit vs torch {case[0]}")
    dx, ref = run("bw_input", (N, C, H, W), (dy, w))
    assert_close(dx, ref, mag_dx, f"bw_input_implicit vs reference {case[0]}")
    assert_close(dx, dx_t, mag_dx, f"bw_input_implicit vs torch {case[0]}")
    Cg = C // G
    dw_, ref = run("bw_weight", (M, Cg, KH, KW), (dy, x), (M, Cg, C))
    assert_close(dw_, ref, mag_dw, f"bw_weight_implicit vs reference {case[0]}")
    assert_close(dw_, dw_t, mag_dw, f"bw_weight_implicit vs torch {case[0]}")


def test_sweep_covers_the_awkward_shapes():
    """The sweep reaches what the phase kernel special-cases (so the test above can fail on them)."""
    sw_cases = [sizes_of(c) for c in CASES]
    assert {s[9] for s in sw_cases} >= {2, 3, 4} and any(s[9] != s[10] for s in sw_cases)
    assert any(s[7] % 2 == 0 for s in sw_cases) and any(s[7] != s[8] for s in sw_cases)
    assert any(s[13] == 2 for s in sw_cases) and any(s[15] == 2 for s in sw_cases)
    assert any(s[2] % s[9] for s in sw_cases)  # ragged phases
    assert any(c[10] != c[12] or c[11] != c[13] for c in CASES)  # asymmetric pads
    direct = [phase_geometry(*(s[2], s[3], s[5], s[6], s[7], s[8], s[9], s[10], s[11], s[12], s[13], s[14]))[2]
              for s in sw_cases]
    assert any(direct) and not all(direct)
    assert RTOL == 1e-5 and ATOL == 1e-6


def test_strided_selection():
    """use_implicit picks the phases / in-place forward where they measured faster (kernelbench)."""
    # input gradients: resnet8 16->32 s2 (256 pixels a phase) and its 1x1 shortcut; not at 8x8 phases
    assert use_implicit(1, 16, 32, 32, 32, 16, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, kind="bw_input")
    assert use_implicit(1, 16, 32, 32, 32, 16, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1, kind="bw_input")
    assert not use_implicit(1, 32, 16, 16, 64, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, kind="bw_input")
    # forward: one plane per row phase and kernel column, OW wide (y written in place, no band)
    assert implicit_kind_scratch("fw", 1, 16, 32, 32, 32, 16, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1) == 16 * 16 * 16
    assert implicit_kind_scratch("fw", 1, 16, 32, 32, 32, 16, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1) == 16 * 3 * 2 * 17 * 16
    assert use_implicit(1, 16, 32, 32, 32, 16, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1)
    # the RGB stems: MobileNetV2's (3 * 3 * 2 * 49 * 48 floats, 7x the im2col tile) and DS-CNN's 10x4 s2
    assert use_implicit(1, 3, 96, 96, 16, 48, 48, 3, 3, 2, 2, 1, 1, 1, 1, 1)
    assert use_implicit(1, 1, 49, 10, 64, 25, 5, 10, 4, 2, 2, 4, 1, 1, 1, 1)
    assert not use_implicit(1, 3, 224, 224, 16, 112, 112, 3, 3, 2, 2, 1, 1, 1, 1, 1)  # 1.1 MiB of planes
    # the stems' weight gradients: 3*4*49*49 planes + (47*49 + 48)*16 of dy transposed (260 KiB)
    assert use_implicit(1, 3, 96, 96, 16, 48, 48, 3, 3, 2, 2, 1, 1, 1, 1, 1, kind="bw_weight")
    assert use_implicit(1, 3, 128, 128, 16, 64, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1, kind="bw_weight")
    assert not use_implicit(1, 3, 224, 224, 16, 112, 112, 3, 3, 2, 2, 1, 1, 1, 1, 1, kind="bw_weight")
