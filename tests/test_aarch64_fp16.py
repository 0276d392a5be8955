"""--dtype fp16 on the Raspberry Pi 5 (rpi --board pi5: -mcpu=cortex-a76+fp16, under
qemu-aarch64 -cpu cortex-a76): the native fp16 conv/GEMM kernels' NEON variants
(runtime_c/neon/eg_f16_neon.c) against the portable fp16 references on random shapes, and zoo
models trained 3 steps by the fp16 pi5 build against PyTorch's fp32 SGD at the fp16 tolerance
of tests/test_fp16.py (losses rtol 2e-3; each trained tensor's update within 1e-2 of torch's in
relative L2 norm, every element within atol 2e-3 * max|torch update| + rtol 2e-2).

Kernel tolerance: the NEON variants sum the same fp32 terms as the reference in another order and
round once to fp16, so an fp16 output may differ by one fp16 rounding step (2^-10 relative,
plus ATOL near zero): |neon - ref| <= 2^-10 * (ref(|inputs|) + |ref|) + 1e-6; fp32 outputs (weight
gradients) to 1e-5 * ref(|inputs|) + 1e-6.
"""

from __future__ import annotations

import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from edgegrad.pipeline import kernel_sources
from test_aarch64_kernels import Calls, _bits
from test_fp16 import _check_fp16
from test_kernels_tiled import CASES, sizes_of

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "runtime_c"

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(
    not (shutil.which("qemu-aarch64") and shutil.which("aarch64-linux-gnu-gcc")),
    reason="qemu-aarch64 / aarch64-linux-gnu-gcc missing: run tools/setup.sh")]

# neon_driver.c function codes: reference fp16 kernel, its _neon variant
FW, BWI, BWW, GEMM, GEMM_Y32 = 11, 13, 15, 17, 19
NEON = 1


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("neon_f16") / "neon_driver_a76"
    sources = [*kernel_sources("rpi")[0], ROOT / "tests" / "neon_driver.c"]
    subprocess.run(["aarch64-linux-gnu-gcc", "-std=c99", "-O2", "-mcpu=cortex-a76+fp16", "-Wall", "-Wextra", "-Werror",
                    "-static", "-pthread", f"-I{RUNTIME}", f"-I{RUNTIME / 'neon'}", *map(str, sources), "-o", str(exe), "-lm"],
                   check=True, capture_output=True, text=True)
    return exe


def _h(rng, shape) -> np.ndarray:
    """Random values exactly representable in fp16 (the driver converts them exactly)."""
    return rng.standard_normal(shape).astype(np.float16).astype(np.float32)


def _queue(calls: Calls, fn: int, ints, args, shape, fp16_out: bool, jobs: list, what: str) -> None:
    r = calls.add(fn, ints, args, shape)
    m = calls.add(fn, ints, [None if a is None else np.abs(a) for a in args], shape)
    n = calls.add(fn + NEON, ints, args, shape)
    jobs.append((what, r, m, n, fp16_out))


def _check(results, jobs) -> None:
    for what, r, m, n, fp16_out in jobs:
        ref, mag, got = results[r], results[m], results[n]
        bound = (2.0 ** -10 * (mag + np.abs(ref)) if fp16_out else 1e-5 * mag) + 1e-6
        bad = np.abs(got - ref) > bound
        assert not bad.any(), f"{what}: {bad.sum()} elements off, worst {np.max(np.abs(got - ref) - bound)}"


def test_f16_conv_neon_matches_reference(driver):
    calls, jobs = Calls(), []
    for case in CASES[::2]:
        rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
        sizes = sizes_of(case)
        N, C, H, W, M, OH, OW, KH, KW, *_, G = sizes
        Cg = C // G
        x, w, dy = _h(rng, (N, C, H, W)), _h(rng, (M, Cg, KH, KW)), _h(rng, (N, M, OH, OW))
        b = rng.standard_normal(M).astype(np.float32)
        _queue(calls, FW, sizes, [x, w, b], (N, M, OH, OW), True, jobs, f"fw {sizes}")
        _queue(calls, BWI, sizes, [dy, w], (N, C, H, W), True, jobs, f"bw_input {sizes}")
        M_upd, Cg_upd = max(1, (M + 1) // 2), max(1, Cg - 1)
        _queue(calls, BWW, [*sizes, M_upd, Cg_upd, C], [dy, x], (M_upd, Cg_upd, KH, KW), False, jobs,
               f"bw_weight {sizes}")
    assert len(jobs) > 100
    _check(calls.run(driver, cpu="cortex-a76"), jobs)


def test_f16_gemm_neon_matches_reference(driver):
    calls, jobs = Calls(), []
    for i, (batch, M, N, K, ta, tb, alpha, beta, ckind) in enumerate([
            (1, 1, 10, 40, 0, 1, 1.0, 1.0, "row"), (1, 7, 33, 5, 0, 0, 1.0, 0.0, None),
            (2, 13, 70, 30, 0, 1, 1.0, 1.0, "row"), (2, 6, 16, 8, 1, 0, 0.5, 2.0, "full"),
            (1, 20, 45, 19, 1, 1, -1.5, 0.0, "full"), (1, 64, 10, 200, 0, 1, 1.0, 1.0, "col"),
            (1, 10, 130, 64, 1, 0, 1.0, 0.0, None), (1, 5, 3, 0, 0, 0, 1.0, 1.0, "row")]):
        rng = np.random.default_rng(i)
        a = _h(rng, (batch, *((K, M) if ta else (M, K))))
        b = _h(rng, (batch, *((N, K) if tb else (K, N))))
        c, c_sm, c_sn = None, 0, 0
        if ckind == "full":
            c, c_sm, c_sn = rng.standard_normal((M, N)).astype(np.float32), N, 1
        elif ckind == "row":
            c, c_sm, c_sn = rng.standard_normal(N).astype(np.float32), 0, 1
        elif ckind == "col":
            c, c_sm, c_sn = rng.standard_normal(M).astype(np.float32), 1, 0
        ints = [batch, M, N, K, ta, tb, _bits(alpha), _bits(beta), M * K, K * N, c_sm, c_sn]
        abs_ints = [*ints[:6], _bits(abs(alpha)), _bits(abs(beta)), *ints[8:]]
        for fn, fp16_out in ((GEMM, True), (GEMM_Y32, False)):
            r = calls.add(fn, ints, [a, b, c], (batch, M, N))
            m = calls.add(fn, abs_ints, [np.abs(a), np.abs(b), None if c is None else np.abs(c)], (batch, M, N))
            n = calls.add(fn + NEON, ints, [a, b, c], (batch, M, N))
            jobs.append((f"gemm {fn} {(batch, M, N, K, ta, tb, alpha, beta, ckind)}", r, m, n, fp16_out))
    _check(calls.run(driver, cpu="cortex-a76"), jobs)


@pytest.mark.parametrize("name,scheme", [("mlp_har", "all"), ("cnn_fashion", "all"), ("dscnn", "last:3"),
                                         ("resnet8", "all"), ("mobilenetv2_w035_96", "last:3")])
def test_fp16_pi5_matches_torch_fp32(name, scheme, tmp_path):
    _check_fp16(name, scheme, tmp_path, target="rpi", board="pi5")
