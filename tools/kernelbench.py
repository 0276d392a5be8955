"""Time the reference conv kernels against the tiled ones (and PyTorch eager, 1 thread) on the
conv layers of the zoo models; prints a markdown table.

    python -m tools.kernelbench                    # resnet8, dscnn, mobilenetv2_w035_96
    python -m tools.kernelbench --models resnet8 --no-ref
    python -m tools.kernelbench --models resnet8 --winograd   # implicit vs Winograd F2 / F4
    python -m tools.kernelbench --wgrad --models resnet8   # weight gradients: implicit vs Winograd

The "tiled" columns time the fast variant select_kernels picks for the layer (marked in the kind
column when it is not the im2col one, e.g. ``fw (implicit)``). Each kernel call is timed on its own (ctypes for ours, so a call carries ~1 us of Python
overhead; torch eager pays its own dispatch overhead the same way); the median over repeats
is reported. Layer shapes come from the ONNX files (shape inference), batch 1; per-model
totals multiply each distinct shape by how often it occurs and add fw + bw_input + bw_weight
(bw_input of the stem included, though training does not need it).

``--wgrad`` times the weight gradients (the fused SGD kernels training runs) of every conv layer
the Winograd kernel applies to (3x3 stride 1), the implicit GEMM and conv2d_f32_bw_weight_sgd_winograd
side by side, alternating calls, and marks which one select_kernels picks (kernels_wgrad.use_winograd).
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "runtime_c"
sys.path.insert(0, str(ROOT))

from compiler.kernels_tiled import conv_scratch_floats, implicit_kind_scratch, use_implicit
from compiler.kernels_wgrad import use_winograd
from compiler.kernels_wgrad import winograd_applies as wgrad_applies
from compiler.kernels_wgrad import winograd_scratch_floats as wgrad_scratch_floats
from compiler.kernels_winograd import (
    winograd_applies,
    winograd_scratch_floats,
    winograd_tile,
    winograd_tile_frozen,
    winograd_weights,
)

HOST_CFLAGS = ["-std=c99", "-O3", "-march=native", "-fno-math-errno", "-Wall", "-Wextra", "-Werror",
               "-fPIC", "-shared"]
MODELS = ["resnet8", "dscnn", "mobilenetv2_w035_96"]
KINDS = ("fw", "bw_input", "bw_weight")


@dataclass(frozen=True)
class ConvShape:
    C: int
    H: int
    W: int
    M: int
    KH: int
    KW: int
    sh: int
    sw: int
    pt: int
    pl: int
    pb: int
    pr: int
    G: int

    @property
    def out(self) -> tuple[int, int]:
        return ((self.H + self.pt + self.pb - self.KH) // self.sh + 1,
                (self.W + self.pl + self.pr - self.KW) // self.sw + 1)

    @property
    def macs(self) -> int:
        OH, OW = self.out
        return self.M * OH * OW * (self.C // self.G) * self.KH * self.KW

    def label(self) -> str:
        kind = "dw" if self.G == self.C == self.M else ("pw" if self.KH == self.KW == 1 else "conv")
        return (f"{kind} {self.C}->{self.M} {self.KH}x{self.KW}/{self.sh} {self.H}x{self.W}")

    def sizes(self) -> list[int]:
        OH, OW = self.out
        return [1, self.C, self.H, self.W, self.M, OH, OW, self.KH, self.KW, self.sh, self.sw, self.pt,
                self.pl, 1, 1, self.G]


def zoo_convs(model: str) -> dict[ConvShape, int]:
    """Distinct conv shapes of a zoo model -> how many layers have it."""
    import onnx
    from onnx import numpy_helper, shape_inference

    m = shape_inference.infer_shapes(onnx.load(str(ROOT / "models" / "onnx" / f"{model}.onnx")))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*m.graph.value_info, *m.graph.input, *m.graph.output]}
    shapes.update({t.name: list(numpy_helper.to_array(t).shape) for t in m.graph.initializer})
    counts: dict[ConvShape, int] = {}
    for node in m.graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        _, C, H, W = shapes[node.input[0]]
        M, _, KH, KW = shapes[node.input[1]]
        sh, sw = attrs.get("strides", [1, 1])
        pt, pl, pb, pr = attrs.get("pads", [0, 0, 0, 0])
        s = ConvShape(C, H, W, M, KH, KW, sh, sw, pt, pl, pb, pr, attrs.get("group", 1))
        counts[s] = counts.get(s, 0) + 1
    return counts


def build(out_dir: Path) -> ctypes.CDLL:
    lib = out_dir / "libkb.so"
    srcs = [str(RUNTIME / f"eg_{f}.c") for f in ("conv", "gemm", "conv_tiled", "dwconv_tiled", "gemm_tiled",
                                                 "winograd", "winograd_wgrad")]
    subprocess.run(["gcc", *HOST_CFLAGS, f"-I{RUNTIME}", *srcs, "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib))


def median_us(fn, min_time: float = 0.05, min_reps: int = 5, max_reps: int = 2000) -> float:
    fn()  # warm caches
    times, start = [], time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def ptr(a: np.ndarray | None):
    return None if a is None else ctypes.c_void_p(a.ctypes.data)


def variant(s: ConvShape, kind: str) -> str:
    """The fast variant select_kernels picks for this layer: ``implicit`` or ``tiled``."""
    return "implicit" if use_implicit(*s.sizes(), kind=kind) else "tiled"


def time_ours(lib, s: ConvShape, kind: str, tiled: bool) -> float:
    rng = np.random.default_rng(0)
    sizes = s.sizes()
    N, C, H, W, M, OH, OW, KH, KW = sizes[:9]
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    w = rng.standard_normal((M, C // s.G, KH, KW), dtype=np.float32)
    b = rng.standard_normal(M, dtype=np.float32)
    dy = rng.standard_normal((N, M, OH, OW), dtype=np.float32)
    extra = [M, C // s.G, C] if kind == "bw_weight" else []
    var = variant(s, kind)
    floats = implicit_kind_scratch(kind, *sizes) if var == "implicit" else conv_scratch_floats(kind, *sizes)
    scratch = np.zeros(max(1, floats), np.float32)
    out, ins = {"fw": (np.empty_like(dy), [x, w, b]),
                "bw_input": (np.empty_like(x), [dy, w]),
                "bw_weight": (np.empty_like(w), [dy, x])}[kind]
    args = [ptr(out), *map(ptr, ins), *map(ctypes.c_int, sizes + extra)]
    name = f"conv2d_f32_{kind}"
    if tiled:
        name += f"_{var}"
        args.append(ptr(scratch))
    fn = getattr(lib, name)
    fn.restype = None
    return median_us(lambda: fn(*args))


def time_winograd(lib, s: ConvShape, kind: str, tile: int | None, pre: bool = False) -> float:
    """One call of conv2d_f32_<kind>_winograd with this tile (None: the implicit kernel); pre: the
    _winograd_pre kernel on weights transformed beforehand (a frozen layer, passes/wino_frozen.py)."""
    if tile is None:
        return time_ours(lib, s, kind, True)
    rng = np.random.default_rng(0)
    sizes = s.sizes()
    N, C, H, W, M, OH, OW = sizes[:7]
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    w = rng.standard_normal((M, C, 3, 3), dtype=np.float32)
    b = rng.standard_normal(M, dtype=np.float32)
    dy = rng.standard_normal((N, M, OH, OW), dtype=np.float32)
    scratch = np.zeros(winograd_scratch_floats(kind, C, M, H, W, OH, OW, tile, pre=pre), np.float32)
    out = np.empty_like(dy if kind == "fw" else x)  # kept alive: ctypes holds only the address
    if pre:
        w = winograd_weights(w, kind, tile)
    args = [ptr(out), ptr(x), ptr(w), ptr(b)] if kind == "fw" else [ptr(out), ptr(dy), ptr(w)]
    args += [*map(ctypes.c_int, sizes), ctypes.c_int(tile), ptr(scratch)] + ([ctypes.c_int(0)] if kind == "fw" else [])
    fn = getattr(lib, f"conv2d_f32_{kind}_winograd" + ("_pre" if pre else ""))
    fn.restype = None
    return median_us(lambda: fn(*args))


def winograd_table(lib, models: list[str]) -> None:
    """Per stride-1 3x3 layer shape: the implicit kernel vs Winograd F(2x2,3x3) and F(4x4,3x3),
    and the tile select_kernels picks (kernels_winograd.winograd_tile)."""
    print("| model | layer | kind | implicit us | F2 us | F4 us | best/implicit | picked | F2 pre us | F4 pre us | "
          "picked frozen |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for model in models:
        for s in zoo_convs(model):
            sizes = s.sizes()
            for kind in ("fw", "bw_input"):
                if not winograd_applies(*sizes[1:], kind=kind):
                    continue
                t = {tile: time_winograd(lib, s, kind, tile) for tile in (None, 2, 4)}
                tp = {tile: time_winograd(lib, s, kind, tile, pre=True) for tile in (2, 4)}
                pick = winograd_tile(*sizes, kind=kind)
                frozen = None if pick is None else winograd_tile_frozen(pick, *sizes, kind=kind)
                print(f"| {model} | {s.label()} | {kind} | {t[None]:.1f} | {t[2]:.1f} | {t[4]:.1f} | "
                      f"{min(t[2], t[4]) / t[None]:.2f} | {'implicit' if pick is None else f'F{pick}'} | "
                      f"{tp[2]:.1f} | {tp[4]:.1f} | {'implicit' if frozen is None else f'F{frozen}'} |")


def time_torch(s: ConvShape, kind: str) -> float:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    # asymmetric pads (dscnn stem): pre-pad x outside the timed call
    x = torch.randn(1, s.C, s.H + s.pt + s.pb, s.W + s.pl + s.pr, generator=g)
    w = torch.randn(s.M, s.C // s.G, s.KH, s.KW, generator=g)
    b = torch.randn(s.M, generator=g)
    OH, OW = s.out
    dy = torch.randn(1, s.M, OH, OW, generator=g)
    conv_args = ([s.sh, s.sw], [0, 0], [1, 1], False, [0, 0], s.G)
    with torch.no_grad():
        if kind == "fw":
            return median_us(lambda: F.conv2d(x, w, b, (s.sh, s.sw), 0, 1, s.G))
        mask = [True, False, False] if kind == "bw_input" else [False, True, False]
        return median_us(lambda: torch.ops.aten.convolution_backward(dy, x, w, None, *conv_args, mask))


def wgrad_rows(lib, s: ConvShape, rounds: int = 3) -> tuple[float, float]:
    """(implicit us, winograd us) of the fused-SGD weight gradient of layer s: the median of each,
    best of `rounds` alternating rounds (the machine is shared: alternating keeps the ratio fair)."""
    rng = np.random.default_rng(0)
    sizes = s.sizes()
    N, C, H, W, M, OH, OW = sizes[:7]
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    dy = rng.standard_normal((N, M, OH, OW), dtype=np.float32)
    w = np.zeros((M, C // s.G, s.KH, s.KW), np.float32)
    args = [ptr(w), ptr(dy), ptr(x), *map(ctypes.c_int, sizes + [M, C // s.G, C, C // s.G * s.KH * s.KW]),
            ctypes.c_float(1e-12)]
    calls = []
    for name, floats in (("implicit", implicit_kind_scratch("bw_weight", *sizes)),
                         ("winograd", wgrad_scratch_floats(*sizes))):
        scratch = np.zeros(max(1, floats), np.float32)
        fn = getattr(lib, f"conv2d_f32_bw_weight_sgd_{name}")
        fn.restype = None
        calls.append((fn, [*args, ptr(scratch)], scratch))
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for i, (fn, a, _s) in enumerate(calls):
            best[i] = min(best[i], median_us(lambda fn=fn, a=a: fn(*a)))
    return best[0], best[1]


def wgrad_main(lib, models: list[str]) -> None:
    print("| model | layer | n | MMAC | implicit us | GMAC/s | winograd us | GMAC/s-equiv | speedup | picked |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in models:
        tot, rows = [0.0, 0.0], 0
        for s, n in zoo_convs(model).items():
            sizes = s.sizes()
            if not wgrad_applies(*sizes[1:]) or not use_implicit(*sizes, kind="bw_weight"):
                continue
            imp, win = wgrad_rows(lib, s)
            rows += 1
            pick = use_winograd(*sizes)
            tot[0] += n * imp
            tot[1] += n * (win if pick else imp)
            print(f"| {model} | {s.label()} | {n} | {s.macs / 1e6:.3f} | {imp:.1f} | {s.macs / imp / 1e3:.0f} | "
                  f"{win:.1f} | {s.macs / win / 1e3:.0f} | {imp / win:.2f}x | {'winograd' if pick else 'implicit'} |")
        if rows:
            print(f"| **{model} total** | 3x3 stride-1 weight gradients | | | {tot[0]:.1f} | | {tot[1]:.1f} (picked) | | "
                  f"{tot[0] / tot[1]:.2f}x | |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--no-ref", action="store_true", help="skip the (slow) reference kernels")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    ap.add_argument("--winograd", action="store_true",
                    help="only the stride-1 3x3 layers: implicit GEMM vs Winograd F(2x2,3x3) / F(4x4,3x3)")
    ap.add_argument("--wgrad", action="store_true",
                    help="weight gradients only: the implicit GEMM vs the Winograd kernel, fused SGD form")
    opts = ap.parse_args(argv)
    if opts.wgrad:
        with tempfile.TemporaryDirectory() as tmp:
            wgrad_main(build(Path(tmp)), opts.models)
        return 0
    try:
        import torch  # noqa: F401
    except ImportError:
        opts.no_torch = True
    with tempfile.TemporaryDirectory() as tmp:
        lib = build(Path(tmp))
        if opts.winograd:
            winograd_table(lib, opts.models)
            return 0
        print("| model | layer | n | kind | MMAC | ref us | tiled us | speedup | tiled GMAC/s | torch us |"
              " tiled/torch |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for model in opts.models:
            tot = {"ref": 0.0, "tiled": 0.0, "torch": 0.0}
            for s, n in zoo_convs(model).items():
                for kind in KINDS:
                    ref = float("nan") if opts.no_ref else time_ours(lib, s, kind, False)
                    til = time_ours(lib, s, kind, True)
                    tor = float("nan") if opts.no_torch else time_torch(s, kind)
                    tot["ref"] += n * ref
                    tot["tiled"] += n * til
                    tot["torch"] += n * tor
                    kname = kind if variant(s, kind) == "tiled" else f"{kind} ({variant(s, kind)})"
                    print(f"| {model} | {s.label()} | {n} | {kname} | {s.macs / 1e6:.3f} | {ref:.1f} | "
                          f"{til:.1f} | {ref / til:.1f}x | {s.macs / til / 1e3:.1f} | {tor:.1f} | "
                          f"{til / tor:.2f} |")
            print(f"| **{model} total** | all convs, fw+bw_input+bw_weight | | | | {tot['ref']:.0f} | "
                  f"{tot['tiled']:.0f} | {tot['ref'] / tot['tiled']:.1f}x | | {tot['torch']:.0f} | "
                  f"{tot['tiled'] / tot['torch']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
