"""Scratch requirements of the tiled convolution kernels (runtime_c/eg_conv_tiled.h).

The compiler allocates this many floats in the arena for each ``conv2d_f32_*_tiled`` call and
passes them as the last argument. The rules mirror the C code exactly (the header states the
same formulas; tests/test_kernels_tiled.py checks the kernels stay inside them):

* depthwise (Cg == Mg == 1): direct loops, no scratch;
* pointwise (1x1, stride 1, no top/left padding, same output size): a GEMM straight on x, no
  scratch;
* otherwise an im2col tile of the patch rows (Cg * KH * KW, or Cg_upd * KH * KW for the weight
  gradient) times the pixels of a tile of whole output rows, min(OH, max(1, PTILE // OW)) * OW.

The ``_implicit`` variants (host only) read the patches straight from zero-padded phase planes of
the image (no im2col): the forward (any stride), the stride-1 input gradient and the weight
gradient; their scratch is ``implicit_kind_scratch``; ``use_implicit`` is the compile-time rule
that picks them.

No side effects on import.
"""

from __future__ import annotations

PTILE = 256  # about this many output pixels per im2col tile; EG_PTILE in runtime_c/eg_conv_tiled.c
NT_PIXELS = 512  # EG_NT_PIXELS: a pointwise weight gradient over this many pixels runs gemm_f32_tiled_nt

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
PHASES = 16  # EG_PHASES: at most sh * sw phase planes per channel


def plane_geometry(OH: int, OW: int, KH: int, KW: int, sh: int, sw: int, dh: int, dw: int) -> tuple[int, int, int]:
    """(rows, Wq, np) of the phase planes (eg_planes_make): rows x Wq floats per plane, np planes
    per channel (the phases (qh % sh, qw % sw) some tap reads)."""
    phases = {((kh * dh) % sh, (kw * dw) % sw) for kh in range(KH) for kw in range(KW)}
    return OH + (KH - 1) * dh // sh, OW + (KW - 1) * dw // sw, len(phases)


def phase_offsets(K: int, s: int, pad: int, dil: int) -> tuple[int, int]:
    """(lo, hi): the least and largest dy row offset (pad + phase - k*dil) / s over the taps k of every
    phase of a strided input gradient (eg_phase_taps_make in runtime_c/eg_conv_tiled.c)."""
    offs = [(p + pad - k * dil) // s for p in range(s) for k in range(K) if (k * dil - pad) % s == p]
    return min(offs), max(offs)


def phase_geometry(H: int, W: int, OH: int, OW: int, KH: int, KW: int, sh: int, sw: int, pt: int, pl: int,
                   dh: int, dw: int) -> tuple[int, int, bool]:
    """(Hd, nco, direct) of the dy planes of conv2d_f32_bw_input_implicit with stride > 1: nco planes of
    Hd x ceil(W / sw) floats per dy channel (one per column offset); direct when they would be dy itself
    (read in place, no planes in scratch)."""
    lo_h, hi_h = phase_offsets(KH, sh, pt, dh)
    lo_w, hi_w = phase_offsets(KW, sw, pl, dw)
    Hd, nco = -(-H // sh) + hi_h - lo_h, hi_w - lo_w + 1
    return Hd, nco, (nco, lo_h, lo_w, Hd, -(-W // sw)) == (1, 0, 0, OH, OW)


def implicit_applies(C: int, M: int, H: int, W: int, OH: int, OW: int, KH: int, KW: int, sh: int,
                     sw: int, pt: int, pl: int, G: int, kind: str = "fw") -> bool:
    """conv2d_f32_<kind>_implicit handles these sizes: not depthwise, KH*KW <= 64 taps, sh*sw <= 16
    phases; fw and bw_input not pointwise (a plain GEMM there)."""
    if is_depthwise(C, M, G) or KH * KW > IMPLICIT_TAPS or sh * sw > PHASES or OH <= 0 or OW <= 0:
        return False
    if kind == "bw_weight":
        return True
    return not is_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl)


def implicit_scratch_floats(C: int, M: int, OH: int, OW: int, KH: int, KW: int, dh: int, dw: int,
                            G: int, sh: int = 1, sw: int = 1) -> int:
    """Floats of scratch conv2d_f32_fw_implicit needs: the phase planes of an image group plus
    one band of R wide output rows, none when the wide rows are the output rows (Wq == OW)
    (runtime_c/eg_conv_tiled.h)."""
    if (sh, sw) != (1, 1):  # one plane per row phase and kernel column, OW wide: y written in place
        return (C // G) * KW * len({(kh * dh) % sh for kh in range(KH)}) * (OH + (KH - 1) * dh // sh) * OW
    rows, Wq, np_ = plane_geometry(OH, OW, KH, KW, sh, sw, dh, dw)
    R = min(OH, max(1, PTILE // Wq))
    band = 0 if Wq == OW else (M // G) * (-(-R * Wq // 16) * 16)  # no junk columns: y written in place
    return (C // G) * np_ * rows * Wq + 16 + band


def implicit_kind_scratch(kind: str, N: int, C: int, H: int, W: int, M: int, OH: int, OW: int, KH: int,
                          KW: int, sh: int, sw: int, pt: int, pl: int, dh: int, dw: int, G: int,
                          M_upd: int | None = None, Cg_upd: int | None = None, Cx: int | None = None) -> int:
    """Floats of scratch conv2d_f32_<kind>_implicit needs. bw_input runs the forward core on dy
    (roles of C/M and the image sizes swapped) after the transposed weights; bw_weight holds the
    planes of the Cg_upd updated channels (none when pointwise: it reads x) and dy transposed."""
    if kind == "fw":
        return implicit_scratch_floats(C, M, OH, OW, KH, KW, dh, dw, G, sh, sw)
    if kind == "bw_input" and (sh, sw) != (1, 1):  # the phases: transposed weights, dy planes, one band
        Hd, nco, direct = phase_geometry(H, W, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw)
        Wq = -(-W // sw)
        R = min(-(-H // sh), max(1, PTILE // Wq))
        weights = (C // G) * (M // G) * KH * KW if KH * KW > 1 else 0  # a 1x1 layer reads w in place
        planes = 0 if direct else (M // G) * nco * Hd * Wq + 16
        bands = len({(kw * dw - pl) % sw for kw in range(KW)})  # column phases some tap reaches
        return weights + planes + bands * (C // G) * (-(-R * Wq // 16) * 16)
    if kind == "bw_input":
        return (C // G) * (M // G) * KH * KW + implicit_scratch_floats(M, C, H, W, KH, KW, dh, dw, G)
    rows, Wq, np_ = plane_geometry(OH, OW, KH, KW, sh, sw, dh, dw)
    cg_upd = C // G if Cg_upd is None else Cg_upd
    m_rows = min(M // G, M if M_upd is None else M_upd)
    planes = 0 if is_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl) else cg_upd * np_ * rows * Wq
    return planes + ((OH - 1) * Wq + OW) * m_rows


# A strided forward (column-tap planes, no junk columns) or weight gradient takes the implicit GEMM up to
# this much scratch (512 KiB) even beyond the im2col rule: kernelbench, MobileNetV2's RGB stem 3->16 3x3 s2
# at 96x96 forward 24.0 -> 14.6 us (165 KiB of planes), weight gradient 39.4 -> 17.9 us (260 KiB); at
# 128x128 39.0 -> 25.5 and 65.3 -> 30.1 us (293 and 458 KiB); DS-CNN's 10x4 s2 stem forward 7.0 -> 4.8 us.
STRIDED_SCRATCH = 131072

# A strided input gradient takes the phases where a phase has at least this many pixels and the GEMMs
# (one row per input channel of a group) this many rows: below them the per-call weight transposition and
# short GEMM rows cost more than im2col's col2im saves (kernelbench: resnet8 16->32 s2 at 32x32
# 24.0 -> 13.8 us; 32->64 s2 at 16x16, 64-pixel phases, 17.5 vs 16.6 us; DS-CNN's 1-channel 10x4 s2 stem
# 4.7 vs 29 us).
PHASE_MIN_PIXELS = 128
PHASE_MIN_ROWS = 4


def use_implicit(N: int, C: int, H: int, W: int, M: int, OH: int, OW: int, KH: int, KW: int, sh: int,
                 sw: int, pt: int, pl: int, dh: int, dw: int, G: int, kind: str = "fw",
                 M_upd: int | None = None, Cg_upd: int | None = None, Cx: int | None = None) -> bool:
    """Pick the implicit-GEMM variant (kind fw, bw_input or bw_weight) where it applies and its scratch
    is at most twice the im2col tile's, or the layer has at most 32 patch rows (an RGB stem: its forward and
    weight gradient) and at most 128 Ki floats of scratch (a larger image keeps im2col); a strided forward or
    weight gradient may take up to STRIDED_SCRATCH; a strided input gradient needs PHASE_MIN_PIXELS per phase;
    a pointwise weight gradient, whose im2col path needs no scratch, takes it for at least 144 pixels and at
    most 16 output rows and fewer than NT_PIXELS pixels, where it measured faster, with its dy copy at most
    64 KiB)."""
    if kind not in CONV_KINDS or not implicit_applies(C, M, H, W, OH, OW, KH, KW, sh, sw, pt, pl, G, kind):
        return False
    if kind == "bw_input" and (sh, sw) != (1, 1) and (-(-H // sh) * -(-W // sw) < PHASE_MIN_PIXELS
                                                      or C // G < PHASE_MIN_ROWS):
        return False
    sizes = (N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G)
    extra = {"M_upd": M_upd, "Cg_upd": Cg_upd, "Cx": Cx} if kind == "bw_weight" else {}
    floats = implicit_kind_scratch(kind, *sizes, **extra)
    im2col = conv_scratch_floats(kind, *sizes, **extra)
    if im2col == 0:  # pointwise weight gradient: measured (kernelbench) to win only over many pixels, few rows,
        # and below NT_PIXELS, where the tiled kernel's dot products win (48->8 at 24x24: 5.4 vs 6.9 us)
        rows = min(M // G, M if M_upd is None else M_upd)
        return kind == "bw_weight" and floats <= 16384 and 144 <= OH * OW < NT_PIXELS and rows <= 16
    if kind != "bw_input" and (sh, sw) != (1, 1) and floats <= STRIDED_SCRATCH:
        return True
    if kind != "bw_input" and (C // G if Cg_upd is None else Cg_upd) * KH * KW <= 32 and floats <= 131072:
        # few patch rows (an RGB stem: 27): im2col copies the image KH*KW times for a short GEMM; measured on
        # MobileNetV2's 3->16 3x3/2 96x96 stem: weight gradient 2.2x faster implicit (36 -> 16 us, 66k floats
        # of scratch), forward 1.5x (22.7 -> 15.0 us, 33k floats)
        return True
    return floats <= (4 if kind == "bw_weight" else 2) * im2col
