"""When the NEON depthwise kernels apply, and the scratch they take (runtime_c/neon/eg_dw_neon.h).

``conv2d_f32_<kind>_dw_neon`` handles a depthwise convolution (C == M == G: one 2-D filter per
channel) with width stride 1 or 2, no dilation and at most DW_NEON_TAPS taps; any height stride,
filter size and padding. Its scratch is one zero-padded plane of one channel; the formulas mirror
the C exactly (tests/test_aarch64_kernels.py puts guard words right after this many floats).

No side effects on import.
"""

from __future__ import annotations

from .kernels_tiled import CONV_KINDS, is_depthwise

DW_NEON_TAPS = 64  # EG_DW_NEON_TAPS in runtime_c/neon/eg_dw_neon.h


def _ceil8(v: int) -> int:
    return (v + 7) & ~7


def dw_neon_applies(N: int, C: int, H: int, W: int, M: int, OH: int, OW: int, KH: int, KW: int, sh: int, sw: int,
                    pt: int, pl: int, dh: int, dw: int, G: int, **_) -> bool:
    return is_depthwise(C, M, G) and sw in (1, 2) and sh >= 1 and (dh, dw) == (1, 1) and KH * KW <= DW_NEON_TAPS


def dw_neon_scratch_floats(kind: str, N: int, C: int, H: int, W: int, M: int, OH: int, OW: int, KH: int, KW: int,
                           sh: int, sw: int, pt: int, pl: int, dh: int, dw: int, G: int, **_) -> int:
    """Floats of scratch ``conv2d_f32_<kind>_dw_neon`` needs: the padded plane of one channel (x for
    fw and bw_weight, dy for the stride-1 bw_input, the dx accumulator for the other bw_input)."""
    if kind not in CONV_KINDS:
        raise ValueError(f"dw_neon_scratch_floats: kind {kind!r} not in {CONV_KINDS}")
    if kind == "bw_input" and sh == 1 and sw == 1:
        return (H + KH - 1) * (_ceil8(W) + KW + 8)
    if OH <= 0 or OW <= 0:
        return 0
    return ((OH - 1) * sh + KH) * (sw * _ceil8(OW) + KW + 8)
