"""Winograd convolutions (runtime_c/eg_winograd.h): where they apply, their scratch, and which
tile (F(2x2,3x3) or F(4x4,3x3)) the compiler picks per layer.

The kernels take 3x3, stride-1, undilated, ungrouped convolutions with pads 0..2 on every side
(the input gradient runs a forward convolution of dy with pads 2 - p, which stay in 0..2).
``winograd_scratch_floats`` mirrors the C exactly (tests/test_winograd.py checks the kernels stay
inside it, with guard words). ``winograd_tile`` is the compile-time choice: a measured table
(``tools/kernelbench.py --winograd`` on the host, an AVX-512 Zen 5 core; the implicit-GEMM
kernel against F2 and F4 per ResNet-8 shape) keyed by (kind, C, M, output size), and for other
shapes a small cost model fitted to the same measurements.

No side effects on import.
"""

from __future__ import annotations

import numpy as np

BAND_TILES = 128  # EG_WTILES in runtime_c/eg_winograd.c: about this many tiles per band
TILES = (2, 4)
PAD = 16  # EG_WPAD: floats between the NX blocks of U, V and the products


def winograd_applies(C: int, H: int, W: int, M: int, OH: int, OW: int, KH: int, KW: int, sh: int,
                     sw: int, pt: int, pl: int, dh: int, dw: int, G: int, kind: str = "fw") -> bool:
    """conv2d_f32_<kind>_winograd handles these sizes (kind fw or bw_input)."""
    if kind not in ("fw", "bw_input") or (KH, KW, sh, sw, dh, dw, G) != (3, 3, 1, 1, 1, 1, 1):
        return False
    if min(C, M, H, W, OH, OW) <= 0:
        return False
    pb, pr = OH + 2 - H - pt, OW + 2 - W - pl
    return all(0 <= p <= 2 for p in (pt, pl, pb, pr))


def _run_sizes(kind: str, C: int, M: int, H: int, W: int, OH: int, OW: int) -> tuple[int, int, int, int]:
    """(Ci, Co, OHr, OWr) of the forward convolution the kernel runs (bw_input: dy -> dx)."""
    return (C, M, OH, OW) if kind == "fw" else (M, C, H, W)


def winograd_scratch_floats(kind: str, C: int, M: int, H: int, W: int, OH: int, OW: int, tile: int,
                            pre: bool = False) -> int:
    """Floats of scratch conv2d_f32_<kind>_winograd needs (the formula of eg_winograd.h); ``pre``: the
    ``_winograd_pre`` kernel's, whose transformed weights U come in their own buffer."""
    if tile not in TILES:
        raise ValueError(f"winograd tile must be one of {TILES}, got {tile}")
    Ci, Co, OHr, OWr = _run_sizes(kind, C, M, H, W, OH, OW)
    S, NX = tile, (tile + 2) ** 2
    TH, TW = -(-OHr // S), -(-OWr // S)
    Wl = -(-(TW + 1) // 16) * 16
    R = min(TH, max(1, BAND_TILES // TW))
    NT = R * TW
    rows = Ci * (S * R + 2) * S * Wl  # the planes, and the padded rows (sharing the products' space)
    u = 0 if pre else winograd_weights_floats(kind, C, M, tile)
    return u + rows + 16 + NX * (Ci * (NT + 16) + PAD) + max(NX * (Co * NT + PAD) + 16, rows)


def winograd_weights_floats(kind: str, C: int, M: int, tile: int) -> int:
    """Floats of the transformed weights U (NX blocks of Co*Ci, EG_WPAD apart)."""
    return (tile + 2) ** 2 * (C * M + PAD)


_G = {2: np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]),
      4: np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                   [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])}


def winograd_weights(w: np.ndarray, kind: str, tile: int) -> np.ndarray:
    """U = G g G^T of every channel pair in the layout the ``_winograd_pre`` kernels read (eg_winograd.h):
    U[xi][co][ci] at xi*(Co*Ci + 16) + co*Ci + ci, xi = i*(tile + 2) + j, the 16 floats between blocks zero.
    w is the conv weight [M, C, 3, 3]; fw: g = w[co][ci]; bw_input (the run dy -> dx): Co = C, Ci = M,
    g = w[ci][co] rotated by 180 degrees. Computed in float64, rounded once to float32."""
    if tile not in TILES:
        raise ValueError(f"winograd tile must be one of {TILES}, got {tile}")
    g = np.asarray(w, np.float64)
    if kind == "bw_input":
        g = g.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
    G = _G[tile]
    Co, Ci, n = g.shape[0], g.shape[1], tile + 2
    u = np.einsum("ik,ockl,jl->ijoc", G, g, G).reshape(n * n, Co * Ci)
    return np.concatenate([u, np.zeros((n * n, PAD))], axis=1).astype(np.float32).reshape(-1)


# Measured per-call times in us (tools/kernelbench.py --winograd, ResNet-8 shapes, batch 1):
# (kind, Ci, Co, output side) -> (implicit, F2, F4). Filled from the measurement; the choice is
# the fastest column, None (implicit) when neither Winograd tile wins by 5%.
MEASURED: dict[tuple[str, int, int, int], tuple[float, float, float]] = {
    ("fw", 3, 16, 32): (6.7, 10.0, 10.1),
    ("bw_input", 16, 3, 32): (10.0, 12.5, 9.7),
    ("fw", 16, 16, 32): (24.7, 19.7, 19.4),
    ("bw_input", 16, 16, 32): (25.3, 20.0, 19.4),
    ("fw", 32, 32, 16): (25.3, 16.3, 20.6),
    ("bw_input", 32, 32, 16): (26.9, 16.9, 21.3),
    ("fw", 64, 64, 8): (29.8, 27.3, 69.3),
    ("bw_input", 64, 64, 8): (33.2, 26.9, 72.5),
}


# The same for the _pre kernels (frozen weights transformed at compile time, passes/wino_frozen.py):
# (kind, Ci, Co, output side) -> (F2 pre, F4 pre), tools/kernelbench.py --winograd "F2/F4 pre" columns.
# Without the per-call weight transform F4 (36 products a 4x4 tile, 4x the weight-transform work of F2)
# can win where F2 won before.
MEASURED_PRE: dict[tuple[str, int, int, int], tuple[float, float]] = {
    ("fw", 3, 16, 32): (10.8, 9.9),
    ("bw_input", 16, 3, 32): (14.9, 11.3),
    ("fw", 16, 16, 32): (19.6, 18.0),
    ("bw_input", 16, 16, 32): (20.2, 17.8),
    ("fw", 32, 32, 16): (16.5, 15.0),
    ("bw_input", 32, 32, 16): (16.5, 15.0),
    ("fw", 64, 64, 8): (14.4, 40.6),
    ("bw_input", 64, 64, 8): (14.4, 39.6),
}


def winograd_tile_frozen(tile: int, N: int, C: int, H: int, W: int, M: int, OH: int, OW: int, *args,
                         kind: str = "fw", **_) -> int:
    """The tile for a layer winograd_tile put on Winograd ``tile`` whose weights are frozen (the _pre
    kernel): MEASURED_PRE's faster tile where measured (by 5%), else ``tile``."""
    Ci, Co, OHr, OWr = _run_sizes(kind, C, M, H, W, OH, OW)
    key = (kind, Ci, Co, max(OHr, OWr))
    if key in MEASURED_PRE and OHr == OWr:
        f2, f4 = MEASURED_PRE[key]
        if min(f2, f4) < 0.95 * MEASURED_PRE[key][TILES.index(tile)]:
            return 2 if f2 <= f4 else 4
    return tile


MAX_SCRATCH = 1 << 20  # floats (4 MiB): wide layers keep the implicit kernel rather than this much arena


def winograd_tile(N: int, C: int, H: int, W: int, M: int, OH: int, OW: int, KH: int, KW: int, sh: int,
                  sw: int, pt: int, pl: int, dh: int, dw: int, G: int, kind: str = "fw", **_) -> int | None:
    """The Winograd tile (2 or 4) to use for this conv node, or None to keep the implicit GEMM."""
    if not winograd_applies(C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G, kind):
        return None
    Ci, Co, OHr, OWr = _run_sizes(kind, C, M, H, W, OH, OW)
    key = (kind, Ci, Co, max(OHr, OWr))
    if key in MEASURED and OHr == OWr:
        imp, f2, f4 = MEASURED[key]
        tile = None if min(f2, f4) > 0.95 * imp else (2 if f2 <= f4 else 4)
    else:
        tile = _model_tile(Ci, Co, OHr, OWr)
    if tile is not None and winograd_scratch_floats(kind, C, M, H, W, OH, OW, tile) > MAX_SCRATCH:
        return None
    return tile


def model_us(Ci: int, Co: int, OHr: int, OWr: int) -> tuple[float, float]:
    """(implicit, F2) microseconds by a cost model fitted to MEASURED (within ~20% there, tools/kernelbench.py --winograd prints both): the
    implicit GEMM at 95 MAC/ns; F2's 16 GEMMs at 100 MAC/ns, plus its transforms per channel and
    vector of 16 tiles of a tile row (input, output: 0.014 us), planes per padded row (0.002 us)
    and the weight transform per channel pair (0.0016 us), plus 2 us per call (16 GEMM calls per band,
    the edges). Checked on shapes outside the table (C = M, stride-1 3x3, a C driver on the same core):
    48ch 24x24 implicit 107 / F2 82 us (model 126 / 77: picks F2), 24ch 20x20 20 / 22 (model 22 / 20:
    keeps implicit), 8ch 40x40 10 / 22 (model 10 / 16: keeps implicit)."""
    TH, TW = -(-OHr // 2), -(-OWr // 2)
    # vectors of 16 tiles: tile rows of 4 or 8 tiles share one (eg_wino_rows_per_vector)
    vecs = -(-TH * TW // 16) if TW in (4, 8) else TH * -(-TW // 16)
    implicit = 9 * Co * Ci * OHr * OWr / 95e3
    f2 = (16 * Co * Ci * TH * TW / 100e3 + 0.014 * (Ci + Co) * vecs + 0.002 * Ci * (OHr + 2)
          + 0.0016 * Co * Ci + 2.0)
    return implicit, f2


def _model_tile(Ci: int, Co: int, OHr: int, OWr: int) -> int | None:
    """Shapes not in the table: F2 where the model says it saves 10% (F4 lost to F2 or the implicit
    kernel on every measured shape, so the model never picks it)."""
    implicit, f2 = model_us(Ci, Co, OHr, OWr)
    return 2 if f2 < 0.9 * implicit else None
