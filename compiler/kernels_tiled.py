"""Scratch requirements of the tiled convolution kernels (runtime_c/eg_conv_tiled.h).

The compiler allocates this many floats in the arena for each ``conv2d_f32_*_tiled`` call and
passes them as the last argument. The rules mirror the C code exactly (the header states the
same formulas; tests/test_kernels_tiled.py checks the kernels stay inside them):

* depthwise (Cg == Mg == 1): direct loops, no scratch;
* pointwise (1x1, stride 1, no top/left padding, same output size): a GEMM straight on x, no
  scratch;
* otherwise an im2col tile of the patch rows (Cg * KH * KW, or Cg_upd * KH * KW for the weight
  gradient) times the pixels of a tile of whole output rows, min(OH, max(1, PTILE // OW)) * OW.

``conv2d_f32_fw_implicit`` (stride-1 forward as an implicit GEMM on a zero-padded copy of the
image, no im2col) has its own scratch: ``implicit_scratch_floats``; ``use_implicit`` is the
compile-time rule that picks it.

No side effects on import.
"""

from __future__ import annotations

PTILE = 256  # about this many output pixels per im2col tile; EG_PTILE in runtime_c/eg_conv_tiled.c

CONV_KINDS = ("fw", "bw_input", "bw_weight")


def is_depthwise(C: int, M: int, G: int) -> bool:
    return C == G and M == G


def is_pointwise(H: int, W: int, OH: int, OW: int, KH: int, KW: int, sh: int, sw: int, pt: int,
                 pl: int) -> bool:
    return (KH, KW, sh, sw, pt, pl) == (1, 1, 1, 1, 0, 0) and (OH, OW) == (H, W)


def conv_scratch_floats(kind: str, N: int, C: int, H: int, W: int, M: int, OH: int, OW: int, KH: int,
                        KW: int, sh: int, sw: int, pt: int, pl: int, dh: int, dw: int, G: int,
                        M_upd: int | None = None, Cg_upd: int | None = None,
                        Cx: int | None = None) -> int:
    """Floats of scratch ``conv2d_f32_<kind>_tiled`` needs for these sizes (the reference
    kernel's arguments; dh/dw are the dilations). M_upd and Cx do not change it; Cg_upd
    (default C // G) does, for bw_weight."""
    if kind not in CONV_KINDS:
        raise ValueError(f"conv_scratch_floats: kind {kind!r} not in {CONV_KINDS}")
    if is_depthwise(C, M, G) or is_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl):
        return 0
    rows = C // G
    if kind == "bw_weight":
        rows = C // G if Cg_upd is None else Cg_upd
    if OH * OW <= 0:
        return 0
    return rows * KH * KW * min(OH, max(1, PTILE // OW)) * OW


IMPLICIT_TAPS = 64  # EG_IMPLICIT_TAPS in runtime_c/eg_conv_tiled.c


def implicit_applies(C: int, M: int, H: int, W: int, OH: int, OW: int, KH: int, KW: int, sh: int,
                     sw: int, pt: int, pl: int, G: int) -> bool:
    """conv2d_f32_fw_implicit handles these sizes (stride 1, not depthwise, not pointwise)."""
    return ((sh, sw) == (1, 1) and KH * KW <= IMPLICIT_TAPS and OH > 0 and OW > 0
            and not is_depthwise(C, M, G) and not is_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl))


def implicit_scratch_floats(C: int, M: int, OH: int, OW: int, KH: int, KW: int, dh: int, dw: int,
                            G: int) -> int:
    """Floats of scratch conv2d_f32_fw_implicit needs: the padded image group plus one band of
    R wide output rows (runtime_c/eg_conv_tiled.h)."""
    Hp, Wp = OH + (KH - 1) * dh, OW + (KW - 1) * dw
    R = min(OH, max(1, PTILE // Wp))
    return (C // G) * Hp * Wp + 16 + (M // G) * (-(-R * Wp // 16) * 16)


def implicit_kind_scratch(kind: str, N: int, C: int, H: int, W: int, M: int, OH: int, OW: int, KH: int,
                          KW: int, sh: int, sw: int, pt: int, pl: int, dh: int, dw: int, G: int) -> int:
    """Floats of scratch conv2d_f32_<kind>_implicit needs (kind fw or bw_input); bw_input runs
    the forward core on dy (roles of C/M and the image sizes swapped) after the transposed weights."""
    if kind == "fw":
        return implicit_scratch_floats(C, M, OH, OW, KH, KW, dh, dw, G)
    return (C // G) * (M // G) * KH * KW + implicit_scratch_floats(M, C, H, W, KH, KW, dh, dw, G)


def use_implicit(N: int, C: int, H: int, W: int, M: int, OH: int, OW: int, KH: int, KW: int, sh: int,
                 sw: int, pt: int, pl: int, dh: int, dw: int, G: int, kind: str = "fw") -> bool:
    """Pick the implicit-GEMM variant (kind fw or bw_input) where it applies and its scratch is at
    most twice the im2col tile's (a large image with few channels, e.g. an RGB stem, keeps im2col)."""
    if kind not in ("fw", "bw_input") or not implicit_applies(C, M, H, W, OH, OW, KH, KW, sh, sw, pt, pl, G):
        return False
    sizes = (N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G)
    return implicit_kind_scratch(kind, *sizes) <= 2 * conv_scratch_floats(kind, *sizes)
