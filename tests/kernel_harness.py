"""Build the fp32 reference kernels (runtime_c/eg_*.c) into one shared library and call them
through ctypes.

The ctypes signatures are read from the prototypes in the family headers, so a test calls
``k.conv2d_f32_fw(y, x, w, None, 1, 1, ...)`` exactly as C would, and a header change that
the tests do not follow fails loudly instead of passing garbage pointers.

Arguments: a float pointer takes a float32 C-contiguous numpy array (a 1-D slice of a flat
buffer points into the middle of it) or None; a ``const int *`` takes a sequence of ints;
``int``/``float`` take Python numbers. Output buffers made with :func:`Guarded.out` sit
between guard words and are pre-filled with NaN, so a kernel that writes out of bounds or
leaves an element unwritten is caught.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import numpy as np

RUNTIME = Path(__file__).resolve().parent.parent / "runtime_c"
FAMILIES = ["conv", "gemm", "eltwise", "shape", "pool", "softmax", "norm", "optim"]
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-shared"]

# eg_math.h is header-only (static inline); export array versions of it for the tests.
MATH_SHIM = """
#include "eg_math.h"
#define EG_VEC(name, fn) \\
    void name(float *restrict y, const float *restrict x, int n) \\
    { for (int i = 0; i < n; i++) y[i] = fn(x[i]); }
EG_VEC(vec_expf, eg_expf)
EG_VEC(vec_logf, eg_logf)
EG_VEC(vec_tanhf, eg_tanhf)
EG_VEC(vec_sigmoidf, eg_sigmoidf)
EG_VEC(vec_sqrtf, eg_sqrtf)
"""

_PROTO = re.compile(r"^void\s+(\w+)\s*\(([^;{]*)\)\s*;", re.MULTILINE)


def parse_prototypes(header_text: str) -> dict[str, list[str]]:
    """name -> argument kinds ('fp' float pointer, 'ip' int array, 'i' int, 'f' float)."""
    text = re.sub(r"/\*.*?\*/", "", header_text, flags=re.DOTALL)
    protos = {}
    for name, params in _PROTO.findall(text):
        kinds = []
        for p in " ".join(params.split()).split(","):
            p = p.strip()
            if "*" in p:
                kinds.append("ip" if re.search(r"\bint\b", p) else "fp")
            elif re.match(r"(const\s+)?int\b", p):
                kinds.append("i")
            elif re.match(r"(const\s+)?float\b", p):
                kinds.append("f")
            else:
                raise ValueError(f"{name}: unsupported parameter {p!r}")
        protos[name] = kinds
    return protos


def build(tmp: Path) -> Path:
    """Compile every family .c plus the math shim into tmp/libegk.so with the project flags."""
    shim = tmp / "eg_math_shim.c"
    shim.write_text(MATH_SHIM)
    sources = [str(RUNTIME / f"eg_{f}.c") for f in FAMILIES] + [str(shim)]
    lib = tmp / "libegk.so"
    # -lm: on x86 __builtin_sqrtf falls back to libm's sqrtf for negative inputs (errno).
    subprocess.run(["gcc", *CFLAGS, f"-I{RUNTIME}", *sources, "-o", str(lib), "-lm"], check=True,
                   capture_output=True, text=True)
    return lib


class Kernels:
    """Typed access to the kernels of one built library: ``Kernels(lib).relu_f32_fw(y, x, n)``."""

    def __init__(self, lib_path: Path, families=FAMILIES, math_shim: bool = True):
        self._lib = ctypes.CDLL(str(lib_path))
        self.signatures: dict[str, list[str]] = {}
        for fam in families:
            self.signatures.update(parse_prototypes((RUNTIME / f"eg_{fam}.h").read_text()))
        if math_shim:
            for fn in ["vec_expf", "vec_logf", "vec_tanhf", "vec_sigmoidf", "vec_sqrtf"]:
                self.signatures[fn] = ["fp", "fp", "i"]
        for name, kinds in self.signatures.items():
            f = getattr(self._lib, name)
            f.restype = None
            f.argtypes = [{"fp": ctypes.c_void_p, "ip": ctypes.POINTER(ctypes.c_int), "i": ctypes.c_int,
                           "f": ctypes.c_float}[k] for k in kinds]

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in self.signatures:
            raise AttributeError(name)
        kinds, f = self.signatures[name], getattr(self._lib, name)

        def call(*args):
            assert len(args) == len(kinds), f"{name}: {len(args)} args, header has {len(kinds)}"
            return f(*[_convert(name, i, k, a) for i, (k, a) in enumerate(zip(kinds, args))])
        return call


def _convert(name: str, i: int, kind: str, arg):
    if kind == "fp":
        if arg is None:
            return None
        assert isinstance(arg, np.ndarray) and arg.dtype == np.float32, f"{name} arg {i}: float32 array"
        assert arg.flags.c_contiguous, f"{name} arg {i}: not C-contiguous"
        return arg.ctypes.data
    if kind == "ip":
        vals = [int(v) for v in arg]
        return (ctypes.c_int * max(len(vals), 1))(*vals)
    if kind == "i":
        return int(arg)
    return float(arg)


class Guarded:
    """Output buffers with guard words on both sides, checked by :meth:`check`."""

    GUARD = 64
    SENTINEL = np.float32(-7.25e33)

    def __init__(self):
        self._bufs: list[tuple[np.ndarray, int]] = []

    def out(self, *shape: int, fill: float = np.nan) -> np.ndarray:
        n = int(np.prod(shape, dtype=np.int64))
        raw = np.full(n + 2 * self.GUARD, self.SENTINEL, np.float32)
        raw[self.GUARD:self.GUARD + n] = fill
        self._bufs.append((raw, n))
        return raw[self.GUARD:self.GUARD + n].reshape(shape)

    def like(self, a: np.ndarray, fill: float = np.nan) -> np.ndarray:
        return self.out(*a.shape, fill=fill)

    def check(self) -> None:
        for raw, n in self._bufs:
            g = self.GUARD
            assert (raw[:g] == self.SENTINEL).all() and (raw[g + n:] == self.SENTINEL).all(), \
                "kernel wrote outside its output buffer"
        self._bufs.clear()


def contiguous_strides(shape) -> list[int]:
    strides, s = [], 1
    for d in reversed(shape):
        strides.append(s)
        s *= d
    return strides[::-1]


def bcast_strides(in_shape, out_shape) -> list[int]:
    """Element strides of a contiguous in_shape tensor broadcast (numpy rules) to out_shape."""
    in_shape = [1] * (len(out_shape) - len(in_shape)) + list(in_shape)
    return [0 if d == 1 else s for d, s in zip(in_shape, contiguous_strides(in_shape))]
