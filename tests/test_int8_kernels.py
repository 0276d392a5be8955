"""eg_int8.c fixed-point primitives and bridges against hand-checked values and the numpy references
(compiler/ops_int8.py). Exact: integer arithmetic has no tolerance."""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np
import pytest
from edgegrad.ops_int8 import mbqm, quantize_f32, quantize_multiplier, rdbpot, srdhm

RUNTIME = Path(__file__).resolve().parent.parent / "runtime_c"


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = tmp_path_factory.mktemp("int8") / "libegint8.so"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-shared",
                    str(RUNTIME / "eg_int8.c"), "-I", str(RUNTIME), "-o", str(so)], check=True)
    lib = ctypes.CDLL(str(so))
    i32 = ctypes.c_int32
    lib.eg_srdhm.argtypes, lib.eg_srdhm.restype = [i32, i32], i32
    lib.eg_rdbpot.argtypes, lib.eg_rdbpot.restype = [i32, ctypes.c_int], i32
    lib.eg_mbqm.argtypes, lib.eg_mbqm.restype = [i32, i32, ctypes.c_int], i32
    return lib


def test_fixed_point_hand_checked(lib):
    # 0.5 * 0.5 in Q31 is 0.25: (2^30 * 2^30 * 2) >> 32 = 2^29
    assert lib.eg_srdhm(1 << 30, 1 << 30) == 1 << 29
    assert lib.eg_srdhm(-(1 << 31), -(1 << 31)) == (1 << 31) - 1  # the one overflow case saturates
    assert [lib.eg_rdbpot(v, 1) for v in (5, -5, 3, -3, 4)] == [3, -3, 2, -2, 2]  # halves away from zero
    m, shift = quantize_multiplier(0.75)  # 0.75 = 0.75 * 2^0: M = 0.75 * 2^31
    assert (m, shift) == (3 << 29, 0)
    assert lib.eg_mbqm(100, m, shift) == 75
    assert lib.eg_mbqm(-2, m, shift) == -1  # gemmlowp's SRDHM nudge: a negative tie goes toward zero
    assert lib.eg_mbqm(2, m, shift) == 2  # a positive tie goes up
    m, shift = quantize_multiplier(3.0)  # 0.75 * 2^2
    assert (m, shift) == (3 << 29, 2) and lib.eg_mbqm(7, m, shift) == 21


def test_fixed_point_random_vs_numpy(lib):
    rng = np.random.default_rng(0)
    acc = rng.integers(-(1 << 24), 1 << 24, 2000)
    for real in (1e-6, 3.7e-4, 0.0123, 0.49999, 0.5, 0.9999999, 1.7, 40.0):
        m, shift = quantize_multiplier(real)
        ours = np.array([lib.eg_mbqm(int(a), m, shift) for a in acc])
        np.testing.assert_array_equal(ours, mbqm(acc, m, shift))
        # within one step of the exact product
        assert np.abs(ours - acc * real).max() <= 1.0
    a = rng.integers(-(1 << 31), 1 << 31, 500)
    b = rng.integers(-(1 << 31), 1 << 31, 500)
    np.testing.assert_array_equal([lib.eg_srdhm(int(x), int(y)) for x, y in zip(a, b)], srdhm(a, b))
    e = rng.integers(0, 31, 500)
    np.testing.assert_array_equal([lib.eg_rdbpot(int(x), int(k)) for x, k in zip(a, e)], rdbpot(a, e))


def test_quantize_rounds_half_to_even_like_onnx(lib):
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49, 200.0, -200.0, 1e9, -1e9], np.float32)
    y = np.zeros(x.size, np.int8)
    f = lib.quantize_f32_s8
    f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_int]
    f(y.ctypes.data, x.ctypes.data, x.size, 1.0, 0)
    np.testing.assert_array_equal(y, [0, 2, 2, 0, -2, -2, 0, 127, -128, 127, -128])
    np.testing.assert_array_equal(y, quantize_f32(x, 1.0, 0))
