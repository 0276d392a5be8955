"""The Winograd F(3x3, 2x2) weight gradient (runtime_c/eg_winograd_wgrad.h): where it applies, its
exact scratch, and the compile-time rule that picks it over the implicit GEMM.

``conv2d_f32_bw_weight_winograd`` (and its fused SGD form ``conv2d_f32_bw_weight_sgd_winograd``)
take the reference kernel's arguments plus a scratch buffer of ``winograd_scratch_floats`` floats:
the zero-padded planes of one image, then per chunk of tile rows (about TILE_BLOCK tiles) the
transformed dy tiles (16 floats per 2x2 tile and updated output channel) and image tiles (16 per
tile and updated input channel), and the pairs' partial sums between chunks.

``use_winograd`` is the measured rule (tools/kernelbench.py --wgrad, AVX-512 host): the Winograd
kernel does 16 products per 2x2 tile and channel pair (9 * 4 = 36 for the implicit GEMM) plus
transforms per tile and channel, so it loses only where very few input channels share the dy transforms.

No side effects on import.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

TILE_BLOCK = 64  # EG_WG_TB in runtime_c/eg_winograd_wgrad.c: about this many tiles per chunk


def winograd_applies(C: int, M: int, H: int, W: int, OH: int, OW: int, KH: int, KW: int, sh: int, sw: int,
                     pt: int, pl: int, dh: int, dw: int, G: int) -> bool:
    """A 3x3, stride-1, undilated, ungrouped convolution with pads 0..2 and a non-empty output."""
    return ((KH, KW, sh, sw, dh, dw, G) == (3, 3, 1, 1, 1, 1, 1) and 0 <= pt <= 2 and 0 <= pl <= 2
            and OH > 0 and OW > 0 and C > 0 and M > 0)


def tiles(N: int, OH: int, OW: int) -> int:
    """The 2x2 dy tiles (= 4x4 image tiles) of a batch: N * ceil(OH / 2) * ceil(OW / 2)."""
    return N * ((OH + 1) // 2) * ((OW + 1) // 2)


def chunk_rows(OH: int, OW: int) -> int:
    """Tile rows per chunk of the GEMM: about TILE_BLOCK tiles (at least one row, at most all)."""
    TH, TW = (OH + 1) // 2, (OW + 1) // 2
    return min(TH, max(1, TILE_BLOCK // TW))


def winograd_scratch_floats(N: int, C: int, H: int, W: int, M: int, OH: int, OW: int, KH: int, KW: int,
                            sh: int, sw: int, pt: int, pl: int, dh: int, dw: int, G: int,
                            M_upd: int | None = None, Cg_upd: int | None = None, Cx: int | None = None) -> int:
    """Floats of scratch conv2d_f32_bw_weight_(sgd_)winograd needs (eg_winograd_wgrad.h): the zero-padded
    planes of the updated channels of one image, Cg_upd * (2*TH + 2) * (2*TW + 2); the transformed tiles of
    one chunk of RT tile rows, 16 * RT * TW * (M_upd + Cg_upd); and, when a batch has more than one chunk,
    the partial sums 16 * M_upd * Cg_upd."""
    m_upd = M if M_upd is None else M_upd
    cg_upd = C // G if Cg_upd is None else Cg_upd
    if N <= 0 or OH <= 0 or OW <= 0:
        return 0
    TH, TW = (OH + 1) // 2, (OW + 1) // 2
    RT = chunk_rows(OH, OW)
    chunks = N * -(-TH // RT)
    partial = 16 * m_upd * cg_upd if chunks > 1 else 0
    return cg_upd * (2 * TH + 2) * (2 * TW + 2) + 16 * RT * TW * (m_upd + cg_upd) + partial


@functools.cache
def host_has_avx512() -> bool:
    """The host target's compiler and flags (targets/host/target.json: -march=native) define __AVX512F__: the
    kernel's register block and lane permutes are written for 32 zmm registers; with AVX2 its 16-float
    vectors split into ymm pairs and it measured 4x slower than the implicit GEMM (so it is not picked)."""
    spec = json.loads((Path(__file__).resolve().parent.parent / "targets" / "host" / "target.json").read_text())
    flags = [f for f in spec["cflags"] if f.startswith(("-march", "-mcpu", "-mtune"))]
    try:
        out = subprocess.run([*spec["cc"], *flags, "-dM", "-E", "-x", "c", "-"], input="", capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return False
    return "__AVX512F__" in out


def use_winograd(N: int, C: int, H: int, W: int, M: int, OH: int, OW: int, KH: int, KW: int, sh: int, sw: int,
                 pt: int, pl: int, dh: int, dw: int, G: int, M_upd: int | None = None, Cg_upd: int | None = None,
                 Cx: int | None = None) -> bool:
    """Pick the Winograd weight gradient where it applies and measured faster than the implicit GEMM
    (tools/kernelbench.py --wgrad, and a sweep of C, M in 2..64 over 4x4..32x32 images, AVX-512 host): it
    wins 1.03-3x everywhere except two input channels under many outputs (2 -> 16 at 32x32 ties: the dy
    transforms are shared by too few channel pairs), so: at least 3 updated input channels, or at most 4
    output channels per input channel. Its scratch stays within 4 MiB. (select_kernels asks only where
    host_has_avx512.)"""
    if not winograd_applies(C, M, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G):
        return False
    m_upd = M if M_upd is None else M_upd
    cg_upd = C // G if Cg_upd is None else Cg_upd
    floats = winograd_scratch_floats(N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G, M_upd, Cg_upd, Cx)
    return (cg_upd >= 3 or m_upd <= 4 * cg_upd) and floats <= 1 << 20
