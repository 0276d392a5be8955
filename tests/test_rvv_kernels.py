"""RVV (zve32f) kernel variants (runtime_c/rvv/) against the fp32 reference kernels on random
shapes: tests/rvv_harness.c runs both on the same inputs under qemu-riscv32 with a 128-bit
vector unit and returns both outputs, compared here on every element.

Shapes cover plain, grouped, depthwise and pointwise convolutions, strides 1-3, dilation,
asymmetric padding, rows longer than one vector (VLMAX 32 at LMUL 8), the weight gradient's
partial-update arguments (M_upd, Cg_upd, Cx), and every GEMM transpose/broadcast/C combination.

Tolerance (fp32, sums in a different order): |rvv - ref| <= 1e-5 * (1 + max|ref|) elementwise,
with inputs in [-1, 1); no NaN (outputs are pre-filled with NaN) and no write outside the output.

The native fp16 kernels (zvfh variants in runtime_c/rvv/eg_conv_f16_zvfh.c against the portable
eg_conv_f16.c / eg_gemm_f16.c built for scalar Zfh, i.e. the mcu's two fp16 builds) get the same
shapes with fp16 operands: an fp16 output within one fp16 rounding of the reference's
(|zvfh - ref| <= 2^-10 |ref| + 1e-5 (1 + max|ref|): the fp32 sums differ in order only, so the
two roundings can land on neighbouring fp16 values), an fp32 weight gradient within the fp32
tolerance above.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "runtime_c"
NP = 22  # int parameters per record (tests/rvv_harness.c EG_NP)
QEMU = ["qemu-riscv32", "-cpu", "rv32,v=true,vlen=128,elen=32,rvv_ta_all_1s=true"]
MCPU = "generic_rv32+m+a+f+c+zve32f+zvl128b"
RTOL = 1e-5
# qemu-user (7.2) has no Zvfh: the fp16 harness is a bare-metal firmware for qemu-system (10), UART on stdio
QEMU_F16 = ["qemu-system-riscv32", "-M", "virt", "-bios", "none", "-display", "none", "-monitor", "none",
            "-chardev", "stdio,id=s0,signal=off", "-serial", "chardev:s0",
            "-cpu", "rv32,v=true,vlen=128,elen=32,zfh=true,zvfh=true,rvv_ta_all_1s=true", "-kernel"]
F16_ULP = 2.0 ** -10

pytestmark = pytest.mark.skipif(shutil.which("qemu-riscv32") is None, reason="qemu-riscv32 (qemu-user) missing")


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, f16=False)


@pytest.fixture(scope="module")
def harness16(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, f16=True)


def _build(tmp_path_factory, f16: bool) -> Path:
    out = tmp_path_factory.mktemp("rvv") / "rvv_harness"
    extra = []
    if f16:
        import json

        from edgegrad.build import render_linker_script
        mcu = ROOT / "targets" / "mcu"
        mem = json.loads((mcu / "target.json").read_text())["memory"]
        (out.parent / "link.ld").write_text(render_linker_script(
            enforce=False, flash_origin=int(mem["flash_origin"], 0), flash_length=mem["flash_window"],
            sram_origin=int(mem["sram_origin"], 0), sram_length=mem["sram_window"], flash_budget=mem["flash_window"],
            sram_budget=mem["sram_window"], stack_size=mem["stack_bytes"]))
        extra = ["-DEG_F16", "-DEG_BAREMETAL", f"-I{mcu}", str(mcu / "startup.S"), str(mcu / "uart_16550.c"),
                 *(str(RUNTIME / f) for f in ("eg_conv_f16.c", "eg_gemm_f16.c", "eg_f16.c")),
                 *map(str, sorted((RUNTIME / "rvv").glob("eg_*_zvfh.c"))), "-T", str(out.parent / "link.ld")]
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "riscv32-freestanding-none", "-mabi=ilp32f",
           f"-mcpu={MCPU}" + ("+zfh+zvfh" if f16 else ""), "-ffreestanding", "-nostdlib", "-static", "-O2", "-std=c99",
           "-Wall", "-Wextra", "-Werror", f"-I{RUNTIME}", f"-I{RUNTIME / 'rvv'}", str(ROOT / "tests" / "rvv_harness.c"),
           str(RUNTIME / "eg_conv.c"), str(RUNTIME / "eg_gemm.c"), *map(str, sorted((RUNTIME / "rvv").glob("eg_*_rvv.c"))),
           *extra, "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def _conv_shape(rng, style: str) -> dict:
    G = 1
    if style == "depthwise":
        G = C = M = int(rng.integers(1, 9))
    elif style == "grouped":
        G = int(rng.integers(2, 4))
        C, M = G * int(rng.integers(1, 4)), G * int(rng.integers(1, 4))
    else:
        C, M = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    if style == "pointwise":
        KH = KW = sh = sw = dh = dw = 1
        pt = pl = pb = pr = 0
    else:
        KH, KW = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        dh, dw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        pt, pb = int(rng.integers(0, KH)), int(rng.integers(0, KH))
        pl, pr = int(rng.integers(0, KW)), int(rng.integers(0, KW))
    while True:
        H, W = int(rng.integers(1, 20)), int(rng.choice([rng.integers(1, 20), rng.integers(30, 80)]))
        OH = (H + pt + pb - dh * (KH - 1) - 1) // sh + 1
        OW = (W + pl + pr - dw * (KW - 1) - 1) // sw + 1
        if OH >= 1 and OW >= 1:
            break
    N = int(rng.integers(1, 3))
    return {"N": N, "C": C, "H": H, "W": W, "M": M, "OH": OH, "OW": OW, "KH": KH, "KW": KW, "sh": sh, "sw": sw,
            "pt": pt, "pl": pl, "dh": dh, "dw": dw, "G": G}


def _conv_record(rng, kind: int, s: dict) -> tuple[list[int], list[int]]:
    """(sizes [n_out, n_in0, n_in1, n_in2], params) for conv fw (0), bw_input (1), bw_weight (2)."""
    p = [s[k] for k in ("N", "C", "H", "W", "M", "OH", "OW", "KH", "KW", "sh", "sw", "pt", "pl", "dh", "dw", "G")]
    nx, ny = s["N"] * s["C"] * s["H"] * s["W"], s["N"] * s["M"] * s["OH"] * s["OW"]
    nw = s["M"] * (s["C"] // s["G"]) * s["KH"] * s["KW"]
    if kind == 0:
        return [ny, nx, nw, s["M"] if rng.random() < 0.7 else 0], p
    if kind == 1:
        return [nx, ny, nw, 0], p
    Cg = s["C"] // s["G"]
    m_upd, cg_upd = int(rng.integers(1, s["M"] + 1)), int(rng.integers(1, Cg + 1))
    cx = cg_upd if s["G"] == 1 and rng.random() < 0.5 else s["C"]
    return [m_upd * cg_upd * s["KH"] * s["KW"], ny, s["N"] * cx * s["H"] * s["W"], 0], p + [m_upd, cg_upd, cx]


def _gemm_record(rng) -> tuple[list[int], list[int]]:
    batch = int(rng.integers(1, 4))
    M, N, K = (int(rng.choice([rng.integers(1, 8), rng.integers(20, 100)])) for _ in range(3))
    ta, tb = int(rng.integers(0, 2)), int(rng.integers(0, 2))
    a_bs = M * K if batch > 1 and rng.random() < 0.7 else 0
    b_bs = K * N if batch > 1 and rng.random() < 0.7 else 0
    alpha = float(rng.choice([1.0, 0.5, -1.25]))
    beta, c_sm, c_sn, nc = 0.0, 0, 0, 0
    if rng.random() < 0.6:
        beta = float(rng.choice([1.0, 0.75]))
        c_sm, c_sn = [(N, 1), (0, 1), (1, 0), (0, 0)][int(rng.integers(0, 4))]
        nc = (M - 1) * c_sm + (N - 1) * c_sn + 1
    bits = [struct.unpack("<i", struct.pack("<f", v))[0] for v in (alpha, beta)]
    na, nb = (batch - 1) * a_bs + M * K, (batch - 1) * b_bs + K * N
    return [batch * M * N, na, nb, nc], [batch, M, N, K, ta, tb, *bits, a_bs, b_bs, c_sm, c_sn]


def _run(harness: Path, records: list[tuple[int, list[int], list[int]]], qemu=QEMU):
    """[(status, reference output, variant output)] per record; a bare-metal harness (qemu-system)
    also appends the two calls' instruction counts, dropped here."""
    data = b""
    for i, (kind, sizes, params) in enumerate(records):
        rec = [kind, 12345 + 7919 * i, *sizes, *params] + [0] * (NP - len(params))
        data += struct.pack(f"<{len(rec)}i", *rec)
    data += struct.pack(f"<{NP + 6}i", -1, *[0] * (NP + 5))  # end of the records
    out = subprocess.run([*qemu, str(harness)], input=data, capture_output=True, check=True, timeout=600).stdout
    results, pos = [], 0
    for _, sizes, _ in records:
        n = sizes[0]
        status, = struct.unpack_from("<i", out, pos)
        ref = np.frombuffer(out, np.float32, n, pos + 4)
        rvv = np.frombuffer(out, np.float32, n, pos + 4 + 4 * n)
        results.append((status, ref, rvv))
        pos += 4 + 8 * n + (8 if qemu is QEMU_F16 else 0)
    assert pos == len(out), "harness output length does not match the records"
    return results


def _check(records, results, f16_out=()):
    for (kind, sizes, params), (status, ref, rvv) in zip(records, results):
        what = f"kind {kind} sizes {sizes} params {params}"
        assert status == 0, f"{what}: wrote outside the output (status {status})"
        assert not np.isnan(ref).any(), f"{what}: reference left NaN"
        assert not np.isnan(rvv).any(), f"{what}: RVV variant left an element unwritten"
        rtol = F16_ULP if kind in f16_out else RTOL
        np.testing.assert_allclose(rvv, ref, rtol=rtol, atol=RTOL * (1 + float(np.abs(ref).max())), err_msg=what)


@pytest.mark.parametrize("kind,name", [(0, "fw"), (1, "bw_input"), (2, "bw_weight")])
@pytest.mark.parametrize("style", ["plain", "grouped", "depthwise", "pointwise"])
def test_conv_rvv_matches_reference(harness, kind, name, style):
    rng = np.random.default_rng(100 * kind + len(style))
    records = []
    for _ in range(12):
        sizes, params = _conv_record(rng, kind, _conv_shape(rng, style))
        records.append((kind, sizes, params))
    _check(records, _run(harness, records))


def test_gemm_rvv_matches_reference(harness):
    rng = np.random.default_rng(7)
    records = [(3, *_gemm_record(rng)) for _ in range(40)]
    # every transpose combination at least once, with a long K (the dot-product loop shape)
    for ta in (0, 1):
        for tb in (0, 1):
            bits = [struct.unpack("<i", struct.pack("<f", v))[0] for v in (1.0, 0.0)]
            records.append((3, [1 * 5 * 3, 5 * 300, 300 * 3, 0], [1, 5, 3, 300, ta, tb, *bits, 0, 0, 0, 0]))
    _check(records, _run(harness, records))



@pytest.mark.parametrize("kind,name", [(4, "fw"), (5, "bw_input"), (6, "bw_weight")])
@pytest.mark.parametrize("style", ["plain", "depthwise", "pointwise"])
def test_conv_f16_zvfh_matches_reference(harness16, kind, name, style):
    rng = np.random.default_rng(1000 + 100 * kind + len(style))
    records = []
    for _ in range(10):
        sizes, params = _conv_record(rng, kind - 4, _conv_shape(rng, style))
        records.append((kind, sizes, params))
    _check(records, _run(harness16, records, QEMU_F16), f16_out=(4, 5))


def test_gemm_f16_zvfh_matches_reference(harness16):
    rng = np.random.default_rng(17)
    records = [(7 + i % 2, *_gemm_record(rng)) for i in range(30)]
    for ta in (0, 1):
        for tb in (0, 1):
            bits = [struct.unpack("<i", struct.pack("<f", v))[0] for v in (1.0, 0.0)]
            for kind in (7, 8):
                records.append((kind, [1 * 5 * 3, 5 * 300, 300 * 3, 0], [1, 5, 3, 300, ta, tb, *bits, 0, 0, 0, 0]))
    _check(records, _run(harness16, records, QEMU_F16), f16_out=(7,))
