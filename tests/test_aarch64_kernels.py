"""NEON kernels (runtime_c/neon/) against the fp32 reference kernels, under qemu-aarch64.

Every conv shape of tests/test_kernels_tiled.py (zoo layers, awkward edge cases, 40 random
shapes; forward, input gradient, full and partial weight gradients) and its GEMM cases, plus
GEMMs that cross the NEON core's blocks (M > MC = 128 rows, K > KC = 256, ragged 8 x 12 tiles).
The depthwise NEON kernels (runtime_c/neon/eg_dw_neon.c: forward, input and weight gradients,
full and partial) on every depthwise shape of those tests they apply to plus 60 random ones (width
stride 1 and 2, height stride 1-3, filters 1x1..5x5, padding 0-4, widths 1-40).
One static driver program (tests/neon_driver.c) runs all calls of a test in one qemu-aarch64
process. Built twice: EG_NUM_THREADS=1 and 4 (Cortex-A72).

Tolerance (as the tiled kernels): |neon - ref| <= 1e-5 * ref(|inputs|) + 1e-6, ref(|inputs|) the
reference kernel run on absolute values. Threads: 4-thread results are bit-identical to 1 thread.
Scratch is exactly conv_scratch_floats(...) (dw_neon_scratch_floats(...)) floats of NaN followed by
guard words; outputs too.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from edgegrad.kernels_neon import dw_neon_applies, dw_neon_scratch_floats
from edgegrad.kernels_tiled import conv_scratch_floats
from edgegrad.pipeline import kernel_sources
from test_kernels_tiled import CASES, GEMM_CASES, out_size, sizes_of

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "runtime_c"
RTOL, ATOL = 1e-5, 1e-6

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(
    not (shutil.which("qemu-aarch64") and shutil.which("aarch64-linux-gnu-gcc")),
    reason="qemu-aarch64 / aarch64-linux-gnu-gcc missing: run tools/setup.sh")]

FW, FW_NEON, BWI, BWI_NEON, BWW, BWW_NEON, GEMM, GEMM_NEON, FW_DW, BWI_DW, BWW_DW = range(11)


@pytest.fixture(scope="module")
def drivers(tmp_path_factory) -> dict[int, Path]:
    out = tmp_path_factory.mktemp("neon")
    sources = [*kernel_sources("rpi")[0], ROOT / "tests" / "neon_driver.c"]
    exes = {}
    for threads in (1, 4):
        exe = out / f"neon_driver_t{threads}"
        subprocess.run(["aarch64-linux-gnu-gcc", "-std=c99", "-O2", "-mcpu=cortex-a72", "-Wall", "-Wextra", "-Werror",
                        "-static", "-pthread", f"-DEG_NUM_THREADS={threads}", f"-I{RUNTIME}", f"-I{RUNTIME / 'neon'}",
                        *map(str, sources), "-o", str(exe), "-lm"], check=True, capture_output=True, text=True)
        exes[threads] = exe
    return exes


class Calls:
    """A batch of kernel calls for one driver run."""

    def __init__(self):
        self.blob, self.outs = bytearray(), []

    def add(self, fn: int, ints, arrays, out_shape, scratch: int = 0) -> int:
        ints = [int(v) for v in ints]
        self.blob += struct.pack("<5i", fn, len(ints), len(arrays), int(np.prod(out_shape)), scratch)
        self.blob += struct.pack(f"<{len(ints)}i", *ints)
        for a in arrays:
            if a is None:
                self.blob += struct.pack("<i", -1)
            else:
                a = np.ascontiguousarray(a, np.float32).reshape(-1)
                self.blob += struct.pack("<i", a.size) + a.tobytes()
        self.outs.append(tuple(out_shape))
        return len(self.outs) - 1

    def run(self, exe: Path, cpu: str = "cortex-a72") -> list[np.ndarray]:
        p = subprocess.run(["qemu-aarch64", "-cpu", cpu, str(exe)], input=bytes(self.blob),
                           capture_output=True, timeout=600, check=False)
        assert p.returncode == 0, p.stderr.decode(errors="replace")
        res, off = [], 0
        for i, shape in enumerate(self.outs):
            status, = struct.unpack_from("<i", p.stdout, off)
            n = int(np.prod(shape))
            assert status == 0, f"call {i}: {'output' if status == 1 else 'scratch'} guard overwritten"
            res.append(np.frombuffer(p.stdout, np.float32, n, off + 4).reshape(shape))
            off += 4 + 4 * n
        assert off == len(p.stdout)
        return res


def _bits(f: float) -> int:
    return struct.unpack("<i", struct.pack("<f", f))[0]


def _conv_calls(calls: Calls, case, variant: str = "neon") -> list[tuple[str, int, int, int]]:
    """Queue ref, |ref| and neon (or dw_neon) calls for every conv kind of a case; returns
    (what, ref, mag, neon)."""
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    sizes = sizes_of(case)
    N, C, H, W, M, OH, OW, KH, KW, *_, G = sizes
    Cg = C // G
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((M, Cg, KH, KW)).astype(np.float32)
    b = rng.standard_normal(M).astype(np.float32)
    dy = rng.standard_normal((N, M, OH, OW)).astype(np.float32)
    M_upd, Cg_upd = max(1, (M + 1) // 2), max(1, Cg - 1)
    jobs = [("fw", FW, FW_NEON, [x, w, b], (N, M, OH, OW), [], {}),
            ("bw_input", BWI, BWI_NEON, [dy, w], (N, C, H, W), [], {}),
            ("bw_weight", BWW, BWW_NEON, [dy, x], (M, Cg, KH, KW), [M, Cg, C], {}),
            ("bw_weight", BWW, BWW_NEON, [dy, x], (M_upd, Cg_upd, KH, KW), [M_upd, Cg_upd, C],
             {"M_upd": M_upd, "Cg_upd": Cg_upd, "Cx": C})]
    if G == 1 and Cg_upd < C:  # only a leading input share of x kept: Cx == Cg_upd
        jobs.append(("bw_weight", BWW, BWW_NEON, [dy, x[:, :Cg_upd]], (M, Cg_upd, KH, KW), [M, Cg_upd, Cg_upd],
                     {"M_upd": M, "Cg_upd": Cg_upd, "Cx": Cg_upd}))
    out = []
    dw_fn = {FW: FW_DW, BWI: BWI_DW, BWW: BWW_DW}
    for kind, ref_fn, neon_fn, args, shape, extra, kw in jobs:
        ints = [*sizes, *extra]
        r = calls.add(ref_fn, ints, args, shape)
        m = calls.add(ref_fn, ints, [np.abs(a) for a in args], shape)
        if variant == "dw_neon":
            n = calls.add(dw_fn[ref_fn], ints, args, shape, dw_neon_scratch_floats(kind, *sizes))
        else:
            n = calls.add(neon_fn, ints, args, shape, conv_scratch_floats(kind, *sizes, **kw))
        out.append((f"{kind} {case[0]} {sizes}", r, m, n))
    return out


def _check(results_1, results_4, jobs):
    for what, r, m, n in jobs:
        ref, mag, got = results_1[r], results_1[m], results_1[n]
        bound = RTOL * mag + ATOL
        bad = np.abs(got - ref) > bound
        assert not bad.any(), f"{what}: {bad.sum()} elements off, worst {np.max(np.abs(got - ref) - bound)}"
        assert got.tobytes() == results_4[n].tobytes(), f"{what}: 4 threads differ from 1"


def test_conv_neon_matches_reference(drivers):
    calls = Calls()
    jobs = [j for case in CASES for j in _conv_calls(calls, case)]
    _check(calls.run(drivers[1]), calls.run(drivers[4]), jobs)


def _random_depthwise(n: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < n:
        C = int(rng.integers(1, 6))
        KH, KW = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        case = ("random depthwise", int(rng.integers(1, 3)), C, int(rng.integers(1, 20)), int(rng.integers(1, 41)), C,
                KH, KW, int(rng.integers(1, 4)), int(rng.integers(1, 3)), *[int(rng.integers(0, 5)) for _ in range(4)],
                1, 1, C)
        if min(out_size(case)) > 0:
            cases.append(case)
    return cases


DW_CASES = [c for c in CASES if dw_neon_applies(*sizes_of(c))] + _random_depthwise(60, 5)


def test_depthwise_neon_matches_reference(drivers):
    assert len(DW_CASES) > 70 and {sizes_of(c)[10] for c in DW_CASES} == {1, 2}
    calls = Calls()
    jobs = [j for case in DW_CASES for j in _conv_calls(calls, case, "dw_neon")]
    _check(calls.run(drivers[1]), calls.run(drivers[4]), jobs)


# batch, M, N, K, transA, transB, alpha, beta, a per batch, b per batch, c kind (as test_kernels_tiled)
NEON_GEMM_CASES = GEMM_CASES + [
    (1, 200, 50, 40, 0, 0, 1.0, 0.0, True, True, None),      # M > MC: two packed row blocks
    (1, 9, 13, 520, 1, 1, 1.0, 1.0, True, True, "row"),      # K > 2 KC, ragged tiles, both transposed
    (1, 37, 300, 70, 0, 1, 1.0, 0.0, True, True, None),      # threaded by columns, ragged last panel
    (1, 300, 11, 90, 1, 0, 2.0, 1.0, True, True, "col"),     # too few columns: threaded by rows
    (1, 1, 700, 300, 0, 0, 1.0, 1.0, True, True, "row"),     # one row (linear layer, batch 1): by columns
    (1, 1, 333, 517, 0, 1, 1.0, 1.0, True, True, "row"),     # one row, b transposed: dot products
    (1, 1, 50, 7, 1, 1, 1.0, 0.0, True, True, None),         # one row, short K, scalar tails
    (1, 700, 1, 300, 0, 0, 1.0, 0.0, True, True, None),      # one column: the transposed row
    (2, 1, 37, 20, 0, 1, 0.5, 1.0, True, False, "full"),     # batched rows, broadcast b
]


def test_gemm_neon_matches_reference(drivers):
    calls = Calls()
    jobs = []
    for case in NEON_GEMM_CASES:
        batch, M, N, K, ta, tb, alpha, beta, a_pb, b_pb, ckind = case
        rng = np.random.default_rng(M * 1000 + N * 10 + K)
        a = rng.standard_normal(((batch if a_pb else 1), *((K, M) if ta else (M, K)))).astype(np.float32)
        b = rng.standard_normal(((batch if b_pb else 1), *((N, K) if tb else (K, N)))).astype(np.float32)
        c, c_sm, c_sn = None, 0, 0
        if ckind == "full":
            c, c_sm, c_sn = rng.standard_normal((M, N)).astype(np.float32), N, 1
        elif ckind == "row":
            c, c_sm, c_sn = rng.standard_normal(N).astype(np.float32), 0, 1
        elif ckind == "col":
            c, c_sm, c_sn = rng.standard_normal(M).astype(np.float32), 1, 0
        head = [batch, M, N, K, ta, tb]
        tail = [M * K if a_pb else 0, K * N if b_pb else 0, c_sm, c_sn]
        ints = [*head, _bits(alpha), _bits(beta), *tail]
        abs_ints = [*head, _bits(abs(alpha)), _bits(abs(beta)), *tail]
        shape = (batch, M, N)
        r = calls.add(GEMM, ints, [a, b, c], shape)
        m = calls.add(GEMM, abs_ints, [np.abs(a), np.abs(b), None if c is None else np.abs(c)], shape)
        n = calls.add(GEMM_NEON, ints, [a, b, c], shape)
        jobs.append((f"gemm {case}", r, m, n))
    _check(calls.run(drivers[1]), calls.run(drivers[4]), jobs)
