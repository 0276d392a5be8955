"""Tiled conv / GEMM kernels (runtime_c/eg_*_tiled.c) against the fp32 reference kernels.

Reference and tiled kernels are built into one library with the host target's flags and
compared element by element on random inputs over many shapes: every zoo conv layer (resnet8,
dscnn, mobilenetv2_w035_96) and the awkward cases (groups, channel multipliers, strides,
dilation, asymmetric and oversized pads, 1-D, batch > 1, im2col tiles that split an output row,
k blocks, partial weight gradients with M_upd < M, Cg_upd < Cg, Cx < C).

Tolerance: both kernels compute the same sums in a different order (blocked, FMAs), so the
error bound scales with the sum of |terms|, not with the result:
    |tiled - ref| <= 1e-5 * ref(|inputs|) + 1e-6
where ref(|inputs|) is the reference kernel run on the absolute values of its inputs.
Scratch: the buffer has exactly conv_scratch_floats(...) floats, pre-filled with NaN (reading
it before writing poisons the output) and followed and preceded by guard words that must
stay untouched; outputs sit between guards too (kernel_harness.Guarded).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from kernel_harness import RUNTIME, Guarded, Kernels

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compiler.kernels_tiled import (
    conv_scratch_floats,
    implicit_applies,
    implicit_kind_scratch,
    use_implicit,
)

HOST_CFLAGS = ["-std=c99", "-O3", "-march=native", "-fno-math-errno", "-Wall", "-Wextra", "-Werror",
               "-fPIC", "-shared"]
FAMILIES = ["conv", "gemm", "conv_tiled", "dwconv_tiled", "gemm_tiled", "gemv"]
RTOL, ATOL = 1e-5, 1e-6  # relative to the reference run on |inputs| (see module docstring)
GUARD = 64
GUARD_BITS = np.uint32(0x7FC0DEAD)  # a NaN with a payload no kernel produces


def build_lib(out_dir: Path, cflags=HOST_CFLAGS) -> Path:
    lib = out_dir / "libegtiled.so"
    sources = [str(RUNTIME / f"eg_{f}.c") for f in FAMILIES]
    subprocess.run(["gcc", *cflags, f"-I{RUNTIME}", *sources, "-o", str(lib)], check=True,
                   capture_output=True, text=True)
    return lib


class TiledKernels(Kernels):
    """ctypes access to the reference + tiled conv/gemm kernels, typed from their headers."""

    def __init__(self, lib_path: Path):
        super().__init__(lib_path, families=FAMILIES, math_shim=False)


class Scratch:
    """n floats of NaN between GUARD_BITS guard words (the trailing guard is as long as the
    buffer, so a kernel that needs more scratch than stated fails the check, not the process)."""

    def __init__(self, n: int):
        self.n = n
        self.raw = np.full(n + GUARD + (GUARD + n), np.nan, np.float32)
        bits = self.raw.view(np.uint32)
        bits[:GUARD] = GUARD_BITS
        bits[GUARD + n:] = GUARD_BITS
        self.buf = self.raw[GUARD:GUARD + n] if n else self.raw[GUARD:GUARD + 1]

    def check(self) -> None:
        bits = self.raw.view(np.uint32)
        assert (bits[:GUARD] == GUARD_BITS).all(), "kernel wrote before its scratch"
        assert (bits[GUARD + self.n:] == GUARD_BITS).all(), \
            f"kernel wrote past its stated scratch of {self.n} floats"


@pytest.fixture(scope="module")
def k(tmp_path_factory) -> TiledKernels:
    return TiledKernels(build_lib(tmp_path_factory.mktemp("egtiled")))


def assert_close(actual, expected, magnitude, what: str):
    err = np.abs(actual.astype(np.float64) - expected)
    bound = RTOL * magnitude + ATOL
    bad = ~(err <= bound)  # also catches NaN
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf) if not np.isnan(err).any()
                                        else np.isnan(err)), err.shape)
        raise AssertionError(f"{what}: {bad.sum()} of {bad.size} elements off, first at {i}: "
                             f"tiled {actual[i]} ref {expected[i]} bound {bound[i]}")


# (name, N, C, H, W, M, KH, KW, sh, sw, pt, pl, pb, pr, dil_h, dil_w, G)
ZOO = [
    ("resnet8 stem 3->16 32px", 1, 3, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    ("resnet8 16->16 32px", 1, 16, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    ("resnet8 16->32 s2", 1, 16, 32, 32, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1),
    ("resnet8 32->32 16px", 1, 32, 16, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    ("resnet8 1x1 16->32 s2", 1, 16, 32, 32, 32, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1),
    ("resnet8 32->64 s2", 1, 32, 16, 16, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1),
    ("resnet8 64->64 8px", 1, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    ("resnet8 1x1 32->64 s2", 1, 32, 16, 16, 64, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1),
    ("dscnn stem 10x4 s2", 1, 1, 49, 10, 64, 10, 4, 2, 2, 4, 1, 5, 1, 1, 1, 1),
    ("dscnn dw 3x3 25x5", 1, 64, 25, 5, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 64),
    ("dscnn pw 64->64 25x5", 1, 64, 25, 5, 64, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    ("mbv2 stem 3->16 s2 96px", 1, 3, 96, 96, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1),
    ("mbv2 dw16 48px", 1, 16, 48, 48, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 16),
    ("mbv2 pw 16->8 48px", 1, 16, 48, 48, 8, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    ("mbv2 pw 8->48 48px", 1, 8, 48, 48, 48, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    ("mbv2 dw48 s2 48px", 1, 48, 48, 48, 48, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 48),
    ("mbv2 pw 48->8 24px", 1, 48, 24, 24, 8, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    ("mbv2 dw48 24px", 1, 48, 24, 24, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 48),
    ("mbv2 dw96 12px", 1, 96, 12, 12, 96, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 96),
    ("mbv2 pw 16->96 12px", 1, 16, 12, 12, 96, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    ("mbv2 dw96 s2 12px", 1, 96, 12, 12, 96, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 96),
    ("mbv2 pw 144->24 6px", 1, 144, 6, 6, 24, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    ("mbv2 dw192 s2 6px", 1, 192, 6, 6, 192, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 192),
    ("mbv2 dw336 3px", 1, 336, 3, 3, 336, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 336),
    ("mbv2 pw 336->112 3px", 1, 336, 3, 3, 112, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    ("mbv2 last 112->1280 3px", 1, 112, 3, 3, 1280, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
]

EDGE = [
    ("grouped G=2", 1, 8, 9, 7, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2),
    ("grouped G=4 s2 dil2", 2, 16, 11, 13, 8, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 4),
    ("channel multiplier Cg=1 Mg=2", 1, 4, 7, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4),
    ("depthwise 5x5 s2 asym", 2, 6, 13, 11, 6, 5, 5, 2, 2, 2, 1, 1, 3, 1, 1, 6),
    ("depthwise dil2 s3", 1, 5, 17, 16, 5, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 5),
    ("depthwise 3x1 1-D", 1, 7, 1, 40, 7, 1, 3, 1, 1, 0, 1, 0, 1, 1, 1, 7),
    ("depthwise wide row", 1, 3, 5, 70, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3),
    ("depthwise pad beyond kernel", 1, 2, 4, 4, 2, 3, 3, 1, 1, 4, 4, 4, 4, 1, 1, 2),
    # channel blocks (eg_dwconv_tiled.c: C >= 8; a partial last block when C % 8 or C % 16 != 0)
    ("dw blocks 5x5 s2 asym C=20 N=2", 2, 20, 13, 11, 20, 5, 5, 2, 2, 2, 1, 1, 3, 1, 1, 20),
    ("dw blocks dil2 s3 C=12", 1, 12, 17, 16, 12, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 12),
    ("dw blocks 3x1 1-D C=24", 1, 24, 1, 40, 24, 1, 3, 1, 1, 0, 1, 0, 1, 1, 1, 24),
    ("dw blocks pad beyond kernel C=16", 1, 16, 4, 4, 16, 3, 3, 1, 1, 4, 4, 4, 4, 1, 1, 16),
    ("dw blocks 7x7 s2 bands C=40", 1, 40, 40, 40, 40, 7, 7, 2, 2, 3, 3, 3, 3, 1, 1, 40),
    ("dw blocks 3x3 s1 many bands C=8 N=3", 3, 8, 30, 31, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8),
    ("dw blocks rows too wide: planes", 1, 8, 4, 600, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 8),
    ("dw blocks 1x1 s2 no pad C=9", 1, 9, 7, 7, 9, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 9),
    ("1-D conv H=1 k5 s2", 2, 6, 1, 50, 10, 1, 5, 1, 2, 0, 2, 0, 2, 1, 1, 1),
    ("1-D conv k3 dil3", 1, 4, 1, 33, 5, 1, 3, 1, 1, 0, 3, 0, 3, 1, 3, 1),
    ("asym pads stride 3x2", 1, 3, 14, 15, 7, 4, 3, 3, 2, 3, 0, 1, 2, 1, 1, 1),
    ("pad beyond kernel", 1, 2, 3, 4, 3, 2, 2, 1, 1, 3, 3, 3, 3, 1, 1, 1),
    ("1x1 padded", 1, 5, 6, 6, 7, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    ("1x1 negative tail (OH<H)", 1, 5, 7, 7, 3, 1, 1, 1, 1, 0, 0, -1, -2, 1, 1, 1),
    ("1x1 grouped batch 3", 3, 12, 5, 9, 9, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 3),
    ("k blocks K=360 > KC", 1, 40, 6, 7, 13, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    ("tile splits rows P=900", 2, 3, 30, 30, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    ("big pointwise P=1200 K=300", 1, 300, 40, 30, 7, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    ("dilated 3x3 d2", 2, 4, 12, 10, 6, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1),
    ("kernel 1 row many M", 1, 2, 5, 5, 31, 3, 3, 2, 1, 0, 1, 0, 1, 1, 1, 1),
    ("weight gradient over 4096 wide pixels", 2, 2, 70, 70, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    # GEMMs with <= 12 columns computed transposed (eg_gemm_tiled.c EG_SWAP_N): a 3x3 image
    ("3x3 conv on a 3x3 image", 1, 8, 3, 3, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    ("1x1 on 3x4 pixels, 40 channels", 2, 40, 3, 4, 24, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    # pointwise forwards whose pixels past the 16-pixel blocks run with channels in the lanes (eg_conv_tiled.c
    # eg_pw_fw_small, AVX-512): runs of 8, 4, 2 pixels and one (9 = 8 + 1, 36 = 32 + 4, 7 = 4 + 2 + 1), channel
    # counts that leave a partial chunk, rows past a tile of 8, groups, batch
    ("1x1 lanes 3x3 image, 37 ch", 2, 37, 3, 3, 13, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    ("1x1 lanes 6x6 grouped, 2x27 ch", 1, 54, 6, 6, 10, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 2),
    ("1x1 lanes 7 pixels 1-D, 13 ch", 1, 13, 1, 7, 9, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    # pointwise weight gradients over >= 512 pixels: dot products (gemm_f32_tiled_nt), k tails
    ("pointwise 600 pixels 13->11", 2, 13, 20, 30, 11, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    ("pointwise 2401 pixels 5->70", 1, 5, 49, 49, 70, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
]


def random_cases(n: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < n:
        G = int(rng.choice([1, 1, 1, 2, 3]))
        dw = rng.random() < 0.25
        Cg = 1 if dw else int(rng.integers(1, 9))
        Mg = 1 if dw else int(rng.integers(1, 15))
        KH, KW = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        H, W = int(rng.integers(1, 20)), int(rng.integers(1, 24))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        dh, dwl = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        pads = [int(rng.integers(0, 4)) for _ in range(4)]
        case = ("random", int(rng.integers(1, 3)), Cg * G, H, W, Mg * G, KH, KW, sh, sw, *pads, dh, dwl, G)
        if out_size(case)[0] > 0 and out_size(case)[1] > 0:
            cases.append(case)
    return cases


def out_size(case) -> tuple[int, int]:
    _, _, _, H, W, _, KH, KW, sh, sw, pt, pl, pb, pr, dh, dw, _ = case
    return (H + pt + pb - dh * (KH - 1) - 1) // sh + 1, (W + pl + pr - dw * (KW - 1) - 1) // sw + 1


def sizes_of(case) -> list[int]:
    _, N, C, H, W, M, KH, KW, sh, sw, pt, pl, _, _, dh, dw, G = case
    OH, OW = out_size(case)
    return [N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G]


CASES = ZOO + EDGE + random_cases(40, 7)


def f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_conv_tiled_matches_reference(k, case):
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    sizes = sizes_of(case)
    N, C, H, W, M, OH, OW, KH, KW, *_, G = sizes
    x = f32(rng.standard_normal((N, C, H, W)))
    w = f32(rng.standard_normal((M, C // G, KH, KW)))
    b = f32(rng.standard_normal(M))
    dy = f32(rng.standard_normal((N, M, OH, OW)))
    g = Guarded()

    def run(ref_fn, tiled_fn, kind, out_shape, args, extra=(), scratch_kw=None):
        ref = np.zeros(out_shape, np.float32)
        getattr(k, ref_fn)(ref, *args, *sizes, *extra)
        mag = np.zeros(out_shape, np.float32)
        getattr(k, ref_fn)(mag, *[np.abs(a) if a is not None else None for a in args], *sizes, *extra)
        s = Scratch(conv_scratch_floats(kind, *sizes, **(scratch_kw or {})))
        out = g.out(*out_shape)
        getattr(k, tiled_fn)(out, *args, *sizes, *extra, s.buf)
        g.check()
        s.check()
        assert_close(out, ref, mag, f"{tiled_fn} {case[0]}")

    run("conv2d_f32_fw", "conv2d_f32_fw_tiled", "fw", (N, M, OH, OW), (x, w, b))
    run("conv2d_f32_fw", "conv2d_f32_fw_tiled", "fw", (N, M, OH, OW), (x, w, None))
    run("conv2d_f32_bw_input", "conv2d_f32_bw_input_tiled", "bw_input", (N, C, H, W), (dy, w))
    Cg = C // G
    run("conv2d_f32_bw_weight", "conv2d_f32_bw_weight_tiled", "bw_weight", (M, Cg, KH, KW), (dy, x),
        (M, Cg, C))
    # partial weight gradient: leading output channels / in-group input channels only
    M_upd, Cg_upd = max(1, (M + 1) // 2), max(1, Cg - 1)
    run("conv2d_f32_bw_weight", "conv2d_f32_bw_weight_tiled", "bw_weight", (M_upd, Cg_upd, KH, KW),
        (dy, x), (M_upd, Cg_upd, C), {"M_upd": M_upd, "Cg_upd": Cg_upd, "Cx": C})
    if G == 1 and Cg_upd < C:  # only a leading input share of x was kept: Cx == Cg_upd
        xs = f32(x[:, :Cg_upd])
        run("conv2d_f32_bw_weight", "conv2d_f32_bw_weight_tiled", "bw_weight", (M, Cg_upd, KH, KW),
            (dy, xs), (M, Cg_upd, Cg_upd), {"M_upd": M, "Cg_upd": Cg_upd, "Cx": Cg_upd})


DW_CASES = [c for c in ZOO + EDGE if c[2] == c[5] == c[16] and c[2] >= 8]


@pytest.mark.parametrize("case", DW_CASES, ids=[c[0] for c in DW_CASES])
@pytest.mark.parametrize("lo,hi", [(0.0, 6.0), (-0.5, 0.25), (-np.inf, np.inf)])
def test_depthwise_clip_matches_reference(k, case, lo, hi):
    """depthwise2d_f32_fw_clip (the fused depthwise + Clip) = clip_f32_fw of the reference conv,
    every element; the clamp itself is exact, so only the sums' order may differ."""
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    sizes = sizes_of(case)
    N, C, H, W, M, OH, OW, KH, KW, *_ = sizes
    x = f32(rng.standard_normal((N, C, H, W)))
    w = f32(rng.standard_normal((M, 1, KH, KW)))
    for b in (f32(rng.standard_normal(M)), None):
        ref = np.zeros((N, M, OH, OW), np.float32)
        k.conv2d_f32_fw(ref, x, w, b, *sizes)
        mag = np.zeros_like(ref)
        k.conv2d_f32_fw(mag, np.abs(x), np.abs(w), None if b is None else np.abs(b), *sizes)
        g = Guarded()
        out = g.out(N, M, OH, OW)
        k.depthwise2d_f32_fw_clip(out, x, w, b, *sizes, lo, hi)
        g.check()
        assert_close(out, np.clip(ref, lo, hi), mag, f"depthwise2d_f32_fw_clip {case[0]} [{lo}, {hi}]")
        # exactly clamped: nothing outside [lo, hi], and the clamped elements equal the bounds
        assert out.min() >= lo and out.max() <= hi
        np.testing.assert_array_equal(out[ref < lo - mag * 1e-4], np.float32(lo))
        np.testing.assert_array_equal(out[ref > hi + mag * 1e-4], np.float32(hi))


def implicit_case(case, kind: str = "bw_weight") -> bool:
    _, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, _, _, G = sizes_of(case)
    return implicit_applies(C, M, H, W, OH, OW, KH, KW, sh, sw, pt, pl, G, kind)


def random_implicit_cases(n: int, seed: int, strides: tuple[int, ...]) -> list[tuple]:
    """Convolutions of odd sizes: every tile edge of the implicit GEMMs (wide rows not a multiple
    of the vector width, bands that split the image, K across k blocks, phase planes a tap skips)."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < n:
        G = int(rng.choice([1, 1, 2]))
        Cg, Mg = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        KH, KW = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        H, W = int(rng.integers(1, 30)), int(rng.integers(1, 40))
        dh, dwl = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        sh, sw = int(rng.choice(strides)), int(rng.choice(strides))
        pads = [int(rng.integers(0, 4)) for _ in range(4)]
        case = (f"random s{sh}x{sw}", int(rng.integers(1, 3)), Cg * G, H, W, Mg * G, KH, KW, sh, sw, *pads, dh,
                dwl, G)
        if min(out_size(case)) > 0 and implicit_case(case):
            cases.append(case)
    return cases


IMPLICIT_CASES = ([c for c in CASES if implicit_case(c)] + random_implicit_cases(30, 11, (1,))
                  + random_implicit_cases(20, 12, (1, 2, 3)))


@pytest.mark.parametrize("case", IMPLICIT_CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(IMPLICIT_CASES)])
def test_conv_implicit_matches_reference(k, case):
    """Every _implicit kernel that applies to the case, element by element against the reference,
    with exactly implicit_kind_scratch floats of NaN-filled scratch."""
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    sizes = sizes_of(case)
    N, C, H, W, M, OH, OW, KH, KW, *_, G = sizes
    x = f32(rng.standard_normal((N, C, H, W)))
    w = f32(rng.standard_normal((M, C // G, KH, KW)))
    dy = f32(rng.standard_normal((N, M, OH, OW)))

    def run(kind, out_shape, args, extra=(), scratch_kw=None):
        ref = np.zeros(out_shape, np.float32)
        getattr(k, f"conv2d_f32_{kind}")(ref, *args, *sizes, *extra)
        mag = np.zeros(out_shape, np.float32)
        getattr(k, f"conv2d_f32_{kind}")(mag, *[None if a is None else np.abs(a) for a in args], *sizes, *extra)
        s = Scratch(implicit_kind_scratch(kind, *sizes, **(scratch_kw or {})))
        g = Guarded()
        out = g.out(*out_shape)
        getattr(k, f"conv2d_f32_{kind}_implicit")(out, *args, *sizes, *extra, s.buf)
        g.check()
        s.check()
        assert_close(out, ref, mag, f"conv2d_f32_{kind}_implicit {case[0]}")

    if implicit_case(case, "fw"):
        run("fw", (N, M, OH, OW), (x, w, f32(rng.standard_normal(M))))
        run("fw", (N, M, OH, OW), (x, w, None))
    if implicit_case(case, "bw_input"):
        run("bw_input", (N, C, H, W), (dy, w))
    Cg = C // G
    run("bw_weight", (M, Cg, KH, KW), (dy, x), (M, Cg, C))
    M_upd, Cg_upd = max(1, (M + 1) // 2), max(1, Cg - 1)
    kw = {"M_upd": M_upd, "Cg_upd": Cg_upd, "Cx": C}
    run("bw_weight", (M_upd, Cg_upd, KH, KW), (dy, x), (M_upd, Cg_upd, C), kw)
    if G == 1 and Cg_upd < C:  # only a leading input share of x was kept: Cx == Cg_upd
        kw = {"M_upd": M, "Cg_upd": Cg_upd, "Cx": Cg_upd}
        run("bw_weight", (M, Cg_upd, KH, KW), (dy, f32(x[:, :Cg_upd])), (M, Cg_upd, Cg_upd), kw)
    # the SGD step fused into the weight gradient (passes/fuse.py): w[:M_upd, :Cg_upd] -= lr * dW, the
    # rest of w bit-identical; the update reaches w in parts, so the bound adds the rounding of w
    lr = 0.03
    for m_upd, cg_upd in ((M, Cg), (M_upd, Cg_upd)):
        ref = np.zeros((m_upd, cg_upd, KH, KW), np.float32)
        k.conv2d_f32_bw_weight(ref, dy, x, *sizes, m_upd, cg_upd, C)
        mag = np.zeros_like(ref)
        k.conv2d_f32_bw_weight(mag, np.abs(dy), np.abs(x), *sizes, m_upd, cg_upd, C)
        w0 = f32(rng.standard_normal((M, Cg, KH, KW)))
        expect = w0.astype(np.float64)
        expect[:m_upd, :cg_upd] -= lr * ref.astype(np.float64)
        s = Scratch(implicit_kind_scratch("bw_weight", *sizes, M_upd=m_upd, Cg_upd=cg_upd, Cx=C))
        g = Guarded()
        out = g.out(M, Cg, KH, KW)
        out[...] = w0
        k.conv2d_f32_bw_weight_sgd_implicit(out, dy, x, *sizes, m_upd, cg_upd, C, Cg * KH * KW, lr, s.buf)
        g.check()
        s.check()
        bound = lr * (RTOL * mag + ATOL) + 4 * np.finfo(np.float32).eps * (np.abs(w0[:m_upd, :cg_upd]) + lr * mag)
        err = np.abs(out[:m_upd, :cg_upd] - expect[:m_upd, :cg_upd])
        assert (err <= bound).all(), f"sgd_implicit {case[0]}: {(~(err <= bound)).sum()} elements off"
        rest = np.ones(out.shape, bool)
        rest[:m_upd, :cg_upd] = False
        np.testing.assert_array_equal(out[rest], w0[rest])



PW_SGD_CASES = [c for c in ZOO + EDGE if c[0] in (
    "mbv2 pw 144->24 6px", "mbv2 last 112->1280 3px", "mbv2 pw 48->8 24px", "1x1 grouped batch 3",
    "1x1 on 3x4 pixels, 40 channels")]


@pytest.mark.parametrize("case", PW_SGD_CASES, ids=[c[0] for c in PW_SGD_CASES])
def test_pointwise_sgd_tiled_matches_reference(k, case):
    """conv2d_f32_bw_weight_sgd_tiled (passes/fuse.py, pointwise layers): w[:M_upd, :Cg_upd] -= lr * dW with dW
    the reference weight gradient, every element within lr * (the tiled bound) + the rounding of w (the update
    reaches w per image and k block of 128 pixels: 24px has P = 576), the rest of w bit-identical; also with only a
    leading input share of x kept (Cx == Cg_upd)."""
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    sizes = sizes_of(case)
    N, C, H, W, M, OH, OW, *_, G = sizes
    Cg, lr = C // G, 0.03
    x = f32(rng.standard_normal((N, C, H, W)))
    dy = f32(rng.standard_normal((N, M, OH, OW)))
    runs = [(M, Cg, C, x), (max(1, (M + 1) // 2), max(1, Cg - 1), C, x)]
    if G == 1:
        runs.append((M, Cg - 1, Cg - 1, f32(x[:, :Cg - 1])))
    for m_upd, cg_upd, cx, xs in runs:
        ref = np.zeros((m_upd, cg_upd, 1, 1), np.float32)
        k.conv2d_f32_bw_weight(ref, dy, xs, *sizes, m_upd, cg_upd, cx)
        mag = np.zeros_like(ref)
        k.conv2d_f32_bw_weight(mag, np.abs(dy), np.abs(xs), *sizes, m_upd, cg_upd, cx)
        w0 = f32(rng.standard_normal((M, Cg, 1, 1)))
        expect = w0.astype(np.float64)
        expect[:m_upd, :cg_upd] -= lr * ref.astype(np.float64)
        g = Guarded()
        out = g.out(M, Cg, 1, 1)
        out[...] = w0
        k.conv2d_f32_bw_weight_sgd_tiled(out, dy, xs, *sizes, m_upd, cg_upd, cx, Cg, lr, None)
        g.check()
        bound = lr * (RTOL * mag + ATOL) + 4 * np.finfo(np.float32).eps * (np.abs(w0[:m_upd, :cg_upd]) + lr * mag)
        err = np.abs(out[:m_upd, :cg_upd] - expect[:m_upd, :cg_upd])
        assert (err <= bound).all(), f"sgd_tiled {case[0]} {m_upd}x{cg_upd}: {(~(err <= bound)).sum()} elements off"
        rest = np.ones(out.shape, bool)
        rest[:m_upd, :cg_upd] = False
        np.testing.assert_array_equal(out[rest], w0[rest])

def test_implicit_selection_rule():
    # resnet8 16->16 at 32x32: padded image + band (16*34*34 + 16*7*34) vs im2col 144*256
    assert use_implicit(1, 16, 32, 32, 16, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1)
    assert use_implicit(1, 64, 8, 8, 64, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1)
    # an RGB stem at 224x224 keeps im2col (its padded copy: > 2x the im2col tile and > 128 Ki floats); at
    # 96x96 (27 patch rows, 33k floats) it takes the implicit GEMM (measured 55 -> 53 us)
    assert not use_implicit(1, 3, 224, 224, 16, 224, 224, 3, 3, 1, 1, 1, 1, 1, 1, 1)
    assert use_implicit(1, 3, 96, 96, 16, 96, 96, 3, 3, 1, 1, 1, 1, 1, 1, 1)
    # stride 2: a plane per row phase and kernel column (16*2*3*17*16) vs im2col 144*256
    assert use_implicit(1, 16, 32, 32, 32, 16, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1)
    # stride-2 input gradient: the phases (weights 16*32*9, two dy planes 32*2*17*16 + 16, two bands 16*256)
    assert implicit_kind_scratch("bw_input", 1, 16, 32, 32, 32, 16, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1) == \
        16 * 32 * 9 + 32 * 2 * 17 * 16 + 16 + 2 * 16 * 256
    assert use_implicit(1, 16, 32, 32, 32, 16, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, kind="bw_input")
    # 1x1 stride 2: the planes are dy itself (no scratch for them)
    assert implicit_kind_scratch("bw_input", 1, 16, 32, 32, 32, 16, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1) == \
        16 * 256
    assert use_implicit(1, 16, 32, 32, 32, 16, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1, kind="bw_input")
    assert not use_implicit(1, 8, 9, 9, 8, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 8)  # depthwise
    assert not use_implicit(1, 8, 9, 9, 8, 9, 9, 1, 1, 1, 1, 0, 0, 1, 1, 1)  # pointwise
    assert use_implicit(1, 16, 32, 32, 16, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, kind="bw_input")
    # weight gradient: planes + dy transposed (16*34*34 + 1022*16) within 4x the im2col tile
    assert use_implicit(1, 16, 32, 32, 16, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, kind="bw_weight")
    assert implicit_kind_scratch("bw_weight", 1, 16, 32, 32, 16, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1) == \
        16 * 34 * 34 + (31 * 34 + 32) * 16
    # a 1x1 stride-2 layer keeps one phase plane of four
    assert implicit_kind_scratch("bw_weight", 1, 16, 32, 32, 32, 16, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1) == \
        16 * 16 * 16 + 256 * 32
    # pointwise stride 1 reads x itself: only dy transposed; taken for >= 144 pixels, <= 16 rows, <= 64 KiB
    assert implicit_kind_scratch("bw_weight", 1, 8, 9, 9, 8, 9, 9, 1, 1, 1, 1, 0, 0, 1, 1, 1) == 81 * 8
    assert not use_implicit(1, 8, 9, 9, 8, 9, 9, 1, 1, 1, 1, 0, 0, 1, 1, 1, kind="bw_weight")  # 81 pixels
    assert use_implicit(1, 48, 12, 12, 8, 12, 12, 1, 1, 1, 1, 0, 0, 1, 1, 1, kind="bw_weight")
    # from NT_PIXELS (512) pixels on the tiled kernel's dot products (gemm_f32_tiled_nt) are faster
    assert not use_implicit(1, 48, 24, 24, 8, 24, 24, 1, 1, 1, 1, 0, 0, 1, 1, 1, kind="bw_weight")
    assert not use_implicit(1, 16, 12, 12, 96, 12, 12, 1, 1, 1, 1, 0, 0, 1, 1, 1, kind="bw_weight")  # 96 rows
    assert not use_implicit(1, 16, 48, 48, 16, 48, 48, 1, 1, 1, 1, 0, 0, 1, 1, 1, kind="bw_weight")  # 144 KiB
    assert not use_implicit(1, 8, 9, 9, 8, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 8, kind="bw_weight")  # depthwise
    # an RGB stem (27 patch rows): forward and weight gradient implicit up to 128 Ki floats (32924 and
    # 66428 here); larger images keep im2col
    assert use_implicit(1, 3, 96, 96, 16, 48, 48, 3, 3, 2, 2, 1, 1, 1, 1, 1, kind="bw_weight")
    assert use_implicit(1, 3, 96, 96, 16, 48, 48, 3, 3, 2, 2, 1, 1, 1, 1, 1)
    assert not use_implicit(1, 3, 224, 224, 16, 112, 112, 3, 3, 2, 2, 1, 1, 1, 1, 1, kind="bw_weight")


def test_scratch_formula_examples():
    # 3x3 16->16 at 32x32: 144 patch rows x a 256-pixel tile; 1x1 stride 1 and depthwise: none
    assert conv_scratch_floats("fw", 1, 16, 32, 32, 16, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1) == 144 * 256
    assert conv_scratch_floats("bw_input", 1, 64, 8, 8, 64, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1) == 576 * 64
    assert conv_scratch_floats("fw", 1, 112, 3, 3, 1280, 3, 3, 1, 1, 1, 1, 0, 0, 1, 1, 1) == 0
    assert conv_scratch_floats("bw_weight", 1, 48, 48, 48, 48, 24, 24, 3, 3, 2, 2, 1, 1, 1, 1, 48) == 0
    assert conv_scratch_floats("bw_weight", 1, 16, 32, 32, 32, 16, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1,
                               M_upd=32, Cg_upd=4, Cx=16) == 4 * 256
    with pytest.raises(ValueError):
        conv_scratch_floats("bw", 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1)


GEMM_CASES = [  # batch, M, N, K, transA, transB, alpha, beta, a_bs, b_bs(0: broadcast), c kind
    (1, 1, 1, 1, 0, 0, 1.0, 0.0, True, True, None),
    (1, 7, 33, 5, 0, 0, 1.0, 0.0, True, True, None),
    (2, 13, 17, 300, 0, 1, 1.0, 1.0, True, True, "row"),
    (2, 6, 16, 8, 1, 0, 0.5, 2.0, True, False, "full"),
    (3, 20, 45, 19, 1, 1, -1.5, 0.0, False, True, "full"),
    (1, 64, 10, 1024, 0, 1, 1.0, 1.0, True, True, "col"),
    (1, 10, 1024, 64, 1, 0, 1.0, 0.0, True, True, None),
    (1, 5, 3, 0, 0, 0, 1.0, 1.0, True, True, "row"),
    (1, 128, 96, 600, 0, 0, 1.0, 0.0, True, True, None),
    (1, 40, 9, 50, 1, 0, 1.0, 0.0, True, True, None),  # <= 12 columns, a transposed: out^T computed
    (2, 33, 12, 300, 1, 1, 0.5, 1.0, True, True, "row"),  # ... over k blocks, b transposed too
    (1, 32, 1, 7, 1, 0, -1.0, 0.0, True, True, None),
]


GEMV_CASES = [  # the gemv variant's shapes (M == 1 or K == 1), same fields as GEMM_CASES
    (1, 1, 48, 768, 0, 1, 1.0, 1.0, True, True, "row"),  # mlp_har forward: dot products
    (1, 1, 10, 1280, 0, 1, 1.0, 1.0, True, True, "row"),
    (1, 1, 7, 21, 1, 1, 2.0, 0.5, True, True, "full"),  # ragged rows and k tails
    (1, 1, 1, 3, 0, 1, 1.0, 0.0, True, True, None),
    (1, 1, 784, 10, 0, 0, 1.0, 0.0, True, True, None),  # input gradient dy . W: axpy
    (1, 1, 45, 6, 1, 0, -1.0, 0.0, True, True, None),
    (2, 1, 33, 17, 0, 0, 1.0, 1.0, True, False, "row"),
    (1, 48, 768, 1, 1, 0, 1.0, 0.0, True, True, None),  # weight gradient dy^T x: outer product
    (1, 6, 13, 1, 1, 1, 0.5, 1.0, True, True, "col"),
    (3, 5, 9, 1, 0, 0, 1.0, 1.0, False, True, "full"),
    (1, 1, 4, 0, 0, 1, 1.0, 1.0, True, True, "row"),  # no terms
    (1, 3, 20, 9, 0, 1, 1.0, 0.0, True, True, None),  # neither: computed row by row
]


@pytest.mark.parametrize("case", GEMM_CASES + GEMV_CASES)
@pytest.mark.parametrize("fn", ["gemm_f32_tiled", "gemm_f32_gemv"])
def test_gemm_tiled_matches_reference(k, case, fn):
    batch, M, N, K, ta, tb, alpha, beta, a_per_batch, b_per_batch, ckind = case
    rng = np.random.default_rng(M * 1000 + N * 10 + K)
    a_shape = (K, M) if ta else (M, K)
    b_shape = (N, K) if tb else (K, N)
    a = f32(rng.standard_normal(((batch if a_per_batch else 1), *a_shape)))
    b = f32(rng.standard_normal(((batch if b_per_batch else 1), *b_shape)))
    a_bs = M * K if a_per_batch else 0
    b_bs = K * N if b_per_batch else 0
    c, c_sm, c_sn = None, 0, 0
    if ckind == "full":
        c, c_sm, c_sn = f32(rng.standard_normal((M, N))), N, 1
    elif ckind == "row":
        c, c_sm, c_sn = f32(rng.standard_normal(N)), 0, 1
    elif ckind == "col":
        c, c_sm, c_sn = f32(rng.standard_normal(M)), 1, 0
    args = (batch, M, N, K, ta, tb, alpha, beta, a_bs, b_bs, c_sm, c_sn)
    ref = np.zeros((batch, M, N), np.float32)
    k.gemm_f32(ref, a, b, c, *args)
    mag = np.zeros((batch, M, N), np.float32)
    k.gemm_f32(mag, np.abs(a), np.abs(b), None if c is None else np.abs(c), *args[:6], abs(alpha),
               abs(beta), *args[8:])
    g = Guarded()
    out = g.out(batch, M, N)
    getattr(k, fn)(out, a, b, c, *args)
    g.check()
    assert_close(out, ref, mag, f"{fn} {case}")


# Depthwise gradients (eg_dwconv_tiled.c channel blocks: bw_input a gather per input pixel, stride
# phases as tap lists; bw_weight one accumulator per tap): odd sizes, channel counts that are not
# multiples of 8 or 16 (a partial last block), strides 1/2/3 and 2x1, dilation, asymmetric pads and
# pads beyond the kernel, bands that split the image, rows too wide for a band (the fallbacks).
DW_GRAD_CASES = [
    ("dwg mbv2 3x3 s2 48px C=48", 1, 48, 48, 48, 48, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 48),
    ("dwg 3x3 s2 odd 23x17 C=21", 1, 21, 23, 17, 21, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 21),
    ("dwg 3x3 s1 13x11 C=37 N=2", 2, 37, 13, 11, 37, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 37),
    ("dwg 5x5 s2 dil2 pads 2,3,1,0 C=19", 1, 19, 20, 22, 19, 5, 5, 2, 2, 2, 3, 1, 0, 2, 2, 19),
    ("dwg 3x3 s1 dil3 C=16", 1, 16, 14, 15, 16, 3, 3, 1, 1, 3, 3, 3, 3, 3, 3, 16),
    ("dwg 7x7 s3 C=10", 1, 10, 25, 26, 10, 7, 7, 3, 3, 3, 2, 3, 1, 1, 1, 10),
    ("dwg 3x3 s2 no pad 12x12 C=33", 1, 33, 12, 12, 33, 3, 3, 2, 2, 0, 0, 0, 0, 1, 1, 33),
    ("dwg 3x3 s2 pads beyond kernel C=17", 1, 17, 5, 6, 17, 3, 3, 2, 2, 4, 4, 4, 4, 1, 1, 17),
    ("dwg 1x3 1-D s2 C=9", 1, 9, 1, 41, 9, 1, 3, 1, 2, 0, 1, 0, 1, 1, 1, 9),
    ("dwg 3x3 s2x1 C=12", 1, 12, 15, 14, 12, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 12),
    ("dwg 3x3 s1 64px bands C=8", 1, 8, 64, 64, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8),
    ("dwg 3x3 s2 96px bands C=24", 1, 24, 96, 96, 24, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 24),
    ("dwg 3x3 s1 C=3", 1, 3, 9, 10, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3),
    ("dwg mbv2 3x3 s1 3px C=336", 1, 336, 3, 3, 336, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 336),
    ("dwg rows too wide: fallback", 1, 8, 4, 700, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8),
]


@pytest.fixture(scope="module")
def k_avx2(tmp_path_factory) -> TiledKernels:
    """The same kernels built without AVX-512 (8-wide channel blocks, element-wise transposes, the
    narrower dot-product tile): the build an x86-64 host without AVX-512 gets."""
    return TiledKernels(build_lib(tmp_path_factory.mktemp("egtiled_avx2"), HOST_CFLAGS + ["-mno-avx512f"]))


@pytest.mark.parametrize("build", ["native", "no-avx512"])
@pytest.mark.parametrize("case", DW_GRAD_CASES, ids=[c[0] for c in DW_GRAD_CASES])
def test_depthwise_grads_match_reference_and_torch(k, k_avx2, case, build):
    """conv2d_f32_bw_input_tiled / _bw_weight_tiled on depthwise layers, every element against the
    reference kernels and against PyTorch autograd (both within RTOL * sum|terms| + ATOL)."""
    import torch
    import torch.nn.functional as F

    kk = k if build == "native" else k_avx2
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    sizes = sizes_of(case)
    N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw_, G = sizes
    pb, pr = case[12], case[13]
    x = f32(rng.standard_normal((N, C, H, W)))
    w = f32(rng.standard_normal((M, 1, KH, KW)))
    dy = f32(rng.standard_normal((N, M, OH, OW)))
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    y = F.conv2d(F.pad(xt, (pl, pr, pt, pb)), wt, None, (sh, sw), 0, (dh, dw_), G)
    assert tuple(y.shape) == (N, M, OH, OW)
    y.backward(torch.tensor(dy))
    for m_upd in (M, M // 2 + 1):
        for kind, shape, args, extra, theirs in (
                ("bw_input", (N, C, H, W), (dy, w), (), xt.grad.numpy()),
                ("bw_weight", (m_upd, 1, KH, KW), (dy, x), (m_upd, 1, C), wt.grad.numpy()[:m_upd])):
            if kind == "bw_input" and m_upd != M:
                continue
            ref = np.zeros(shape, np.float32)
            getattr(kk, f"conv2d_f32_{kind}")(ref, *args, *sizes, *extra)
            mag = np.zeros(shape, np.float32)
            getattr(kk, f"conv2d_f32_{kind}")(mag, *[np.abs(a) for a in args], *sizes, *extra)
            g = Guarded()
            out = g.out(*shape)
            getattr(kk, f"conv2d_f32_{kind}_tiled")(out, *args, *sizes, *extra, None)
            g.check()
            assert_close(out, ref, mag, f"{kind} {case[0]} vs reference ({build})")
            assert_close(out, theirs.astype(np.float64), mag, f"{kind} {case[0]} vs torch ({build})")


@pytest.mark.parametrize("build", ["native", "no-avx512"])
def test_gemm_nt_matches_numpy(k, k_avx2, build):
    """gemm_f32_tiled_nt (out (+)= a . b^T, both contiguous along k): k tails, k blocks, rows and
    columns past the register tile, columns beyond the partial-sum buffer, transposed output,
    accumulate, every element."""
    kk = k if build == "native" else k_avx2
    rng = np.random.default_rng(5)
    for M, N, K, transposed, acc in ((1, 1, 1, False, 0), (3, 5, 15, False, 0), (48, 8, 2304, False, 0),
                                     (7, 13, 1200, True, 1), (13, 300, 530, False, 1), (5, 9, 16, True, 0),
                                     (2, 3, 0, False, 0)):
        a = f32(rng.standard_normal((M, K + 3)))  # row stride K + 3: rows apart, not packed
        b = f32(rng.standard_normal((N, K + 1)))
        expect = a[:, :K].astype(np.float64) @ b[:, :K].astype(np.float64).T
        mag = np.abs(a[:, :K]).astype(np.float64) @ np.abs(b[:, :K]).astype(np.float64).T
        g = Guarded()
        out = g.out(N, M) if transposed else g.out(M, N)
        base = f32(rng.standard_normal(out.shape))
        if acc:
            out[...] = base
            expect = expect + (base.T if transposed else base)
            mag = mag + np.abs(base.T if transposed else base)
        ldc, ldn = (1, M) if transposed else (N, 1)
        kk.gemm_f32_tiled_nt(out, a, b, M, N, K, ldc, ldn, K + 3, K + 1, acc)
        g.check()
        assert_close(out.T if transposed else out, expect, mag, f"gemm_f32_tiled_nt {M}x{N}x{K} ({build})")


@pytest.mark.parametrize("cc", [
    ["aarch64-linux-gnu-gcc", "-std=c99", "-O3", "-march=armv8.2-a+fp16", "-Wall", "-Wextra", "-Werror"],
    [sys.executable, "-m", "ziglang", "cc", "-target", "riscv32-freestanding-none",
     "-mcpu=generic_rv32+m+a+f+c", "-mabi=ilp32f", "-ffreestanding", "-O2", "-std=c99", "-Wall",
     "-Wextra", "-Werror"],
    ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"],  # no -march: no AVX
], ids=["aarch64", "riscv32", "x86-generic"])
def test_tiled_sources_compile_for_other_targets(cc, tmp_path):
    have = importlib.util.find_spec("ziglang") if cc[0] == sys.executable else shutil.which(cc[0])
    if not have:
        pytest.skip(f"{cc[0:4]} not available")
    for fam in ("conv_tiled", "dwconv_tiled", "gemm_tiled", "gemv"):
        subprocess.run([*cc, f"-I{RUNTIME}", "-c", str(RUNTIME / f"eg_{fam}.c"), "-o",
                        str(tmp_path / f"{fam}.o")], check=True, capture_output=True, text=True)
