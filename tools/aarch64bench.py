"""Emulated measurements for the aarch64 targets (rpi, jetson), under qemu-aarch64 -cpu cortex-a72;
prints markdown tables:

1. guest instructions per call of the conv kernels on zoo layers: reference vs tiled (GCC vector
   extensions) vs NEON (the GEMM-core _neon kernels; the _dw_neon ones on depthwise layers), 1 thread. Counted exactly from QEMU's translation/execution trace
   (-d in_asm,exec,nochain: every executed translation block times its instruction count), as
   the difference between a run that calls the kernel once and one that does not.
2. (--wall) wall time per call of the same kernels, NEON with 1 and 4 threads.
3. wall time per training step of zoo models built for the Pi 4 with 1 and 4 threads.

4. guest instructions per training step on the Pi 5 (cortex-a76): fp32 NEON vs --dtype fp16 with
   the portable fp16 kernels vs with their NEON variants (fp16 loads widened by fcvtl).

    python -m edgegrad.tools.aarch64bench                  # instructions + steps + fp16
    python -m edgegrad.tools.aarch64bench --wall --no-steps --fp16-models ''
    python -m edgegrad.tools.aarch64bench --no-steps --fp16-models cnn_fashion:all

EMULATED: no Raspberry Pi or Jetson here, so no real-board timing. Instruction counts are exact
for the guest but say nothing of a Cortex-A72's issue width or memory system. QEMU emulates every
floating-point lane with a softfloat call, so emulated wall time follows the number of float
operations (about the same for every variant), not the instructions a Pi would issue; thread
speed-ups are capped by this shared 2-core machine, not the Pi's 4 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "runtime_c"
sys.path.insert(0, str(ROOT))

from compiler.kernels_neon import dw_neon_applies, dw_neon_scratch_floats
from compiler.kernels_tiled import conv_scratch_floats

QEMU = ["qemu-aarch64", "-cpu", "cortex-a72"]
# (name, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, G): zoo layers, batch 1
LAYERS = [
    ("resnet8 3x3 16->16 32px", 1, 16, 32, 32, 16, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1),
    ("resnet8 3x3 32->32 16px", 1, 32, 16, 16, 32, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1),
    ("resnet8 3x3 64->64 8px", 1, 64, 8, 8, 64, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1),
    ("dscnn pw 64->64 25x5", 1, 64, 25, 5, 64, 25, 5, 1, 1, 1, 1, 0, 0, 1, 1, 1),
    ("mbv2 pw 16->96 12px", 1, 16, 12, 12, 96, 12, 12, 1, 1, 1, 1, 0, 0, 1, 1, 1),
    ("mbv2 dw 48 24px", 1, 48, 24, 24, 48, 24, 24, 3, 3, 1, 1, 1, 1, 1, 1, 48),
    ("mbv2 dw 48 s2 48px", 1, 48, 48, 48, 48, 24, 24, 3, 3, 2, 2, 1, 1, 1, 1, 48),
    ("dscnn dw 64 25x5", 1, 64, 25, 5, 64, 25, 5, 3, 3, 1, 1, 1, 1, 1, 1, 64),
]
KINDS = ("fw", "bw_input", "bw_weight")
STEP_MODELS = [("cnn_fashion", "all"), ("resnet8", "all"), ("mobilenetv2_w035_96", "last:2")]
INSTR_MODELS = [("mlp_har", "all"), ("cnn_fashion", "all"), ("dscnn", "last:2"), ("dscnn", "all"),
                ("resnet8", "last:2"), ("mobilenetv2_w035_96", "last:2")]


def build_bench(out: Path, threads: int) -> Path:
    from edgegrad.pipeline import kernel_sources
    exe = out / f"aarch64_bench_t{threads}"
    sources = [*kernel_sources("rpi")[0], ROOT / "tools" / "aarch64_bench.c"]
    subprocess.run(["aarch64-linux-gnu-gcc", "-std=c99", "-O3", "-mcpu=cortex-a72", "-fno-math-errno", "-static",
                    "-pthread", f"-DEG_NUM_THREADS={threads}", f"-I{RUNTIME}", f"-I{RUNTIME / 'neon'}",
                    *map(str, sources), "-o", str(exe), "-lm"], check=True)
    return exe


def _layer_line(layer) -> str:
    dims = layer[1:]
    dw = dw_neon_applies(*dims)
    scratch = max(max(conv_scratch_floats(k, *dims), dw_neon_scratch_floats(k, *dims) if dw else 0) for k in KINDS)
    return " ".join(map(str, (*dims, scratch, int(dw))))


def count_trace(trace_path: Path) -> int:
    """Guest instructions in a QEMU -d in_asm,exec,nochain log (all of the run)."""
    return count_segments(trace_path)[0]


def count_segments(trace_path: Path, marker: int | None = None) -> list[int]:
    """Guest instructions in a QEMU -d in_asm,exec,nochain log, split where the translation block at
    `marker` starts (segment 0 is what ran before its first execution; no marker: one segment).
    Each `Trace` line is one executed block, whose instructions its `IN:` listing gave when it was
    translated."""
    sizes: dict[int, int] = {}
    segments: list[int] = []
    total, block = 0, None
    with open(trace_path, "rb") as trace:
        for line in trace:
            if line.startswith(b"Trace "):  # Trace 0: host [cpu/guest pc/flags/cflags] symbol
                pc = int(line.split(b"/")[1], 16)
                if pc == marker:
                    segments.append(total)
                    total = 0
                total += sizes[pc]
            elif line.startswith(b"IN:"):
                block = -1
            elif block is not None and line.startswith(b"0x"):
                if block == -1:
                    block = int(line[:line.index(b":")], 16)
                    sizes[block] = 0
                sizes[block] += 1
            elif not line.strip():
                block = None
    return [*segments, total]


TRACE_FLAGS = ["-d", "in_asm,exec,nochain"]


def guest_instructions(cmd: list[str], stdin: str) -> int:
    """Guest instructions a qemu-aarch64 run executes, from its exec trace (streamed through a FIFO)."""
    with tempfile.TemporaryDirectory() as tmp:
        fifo = Path(tmp) / "trace"
        os.mkfifo(fifo)
        proc = subprocess.Popen([QEMU[0], *TRACE_FLAGS, "-D", str(fifo), *QEMU[1:], *cmd],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc.stdin.write(stdin.encode())
        proc.stdin.close()
        total = count_trace(fifo)
        if proc.wait() != 0:
            raise RuntimeError(f"{cmd[0]} failed under qemu-aarch64 ({proc.returncode})")
        return total


def instruction_table() -> str:
    head = ("| layer | pass | MACs | ref instr | tiled instr | NEON instr | ref / NEON | tiled / NEON "
            "| MACs / NEON instr |")
    rows = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        exe = str(build_bench(Path(tmp), 1))
        for layer in LAYERS:
            stdin = _layer_line(layer) + "\n"
            base = guest_instructions([exe, "count", "0", "0", "0"], stdin)
            _, N, C, _, _, M, OH, OW, KH, KW, *_, G = layer
            macs = N * M * OH * OW * (C // G) * KH * KW
            for k, kind in enumerate(KINDS):
                n = [guest_instructions([exe, "count", str(v), str(k), "1"], stdin) - base for v in range(3)]
                rows.append(f"| {layer[0]} | {kind} | {macs:,} | {n[0]:,} | {n[1]:,} | {n[2]:,} | "
                            f"{n[0] / n[2]:.2f}x | {n[1] / n[2]:.2f}x | {macs / n[2]:.2f} |")
    return "\n".join(rows)


def kernel_table(budget_ms: float) -> str:
    stdin = "\n".join(_layer_line(layer) for layer in LAYERS) + "\n"
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for threads in (1, 4):
            exe = build_bench(Path(tmp), threads)
            out = subprocess.run([*QEMU, str(exe), str(budget_ms * 1000)], input=stdin, capture_output=True,
                                 text=True, check=True).stdout.split("\n")
            times[threads] = [list(map(float, ln.split()[1:])) for ln in out if ln.strip()]
    rows = ["| layer | pass | ref µs | tiled µs | NEON µs | NEON 4 thr µs | NEON / tiled | 4 thr / 1 thr |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for i, layer in enumerate(LAYERS):
        for k, kind in enumerate(KINDS):
            ref, tiled, neon = times[1][3 * i + k]
            neon4 = times[4][3 * i + k][2]
            rows.append(f"| {layer[0]} | {kind} | {ref:,.0f} | {tiled:,.0f} | {neon:,.0f} | {neon4:,.0f} | "
                        f"{tiled / neon:.2f}x | {neon / neon4:.2f}x |")
    return "\n".join(rows)


@contextlib.contextmanager
def kernel_variant(variant: str) -> Iterator[None]:
    """Benchmark only: let select_kernels pick at most `variant` (reference < tiled < neon-gemm <
    neon) for rpi; neon-gemm is NEON without the depthwise kernels (_dw_neon); neon-f16ref is NEON
    with the portable fp16 conv/GEMM kernels (no _neon fp16 variants)."""
    from edgegrad import kernels_neon
    from edgegrad.passes import select_kernels as sk
    saved = set(sk.TILED_TARGETS), set(sk.NEON_TARGETS)
    f16_saved = set(sk.F16_NEON_TARGETS)
    if variant == "neon-f16ref":
        sk.F16_NEON_TARGETS.discard("rpi")
    applies = kernels_neon.dw_neon_applies
    if variant in ("reference", "tiled"):
        sk.NEON_TARGETS.discard("rpi")
    if variant == "reference":
        sk.TILED_TARGETS.discard("rpi")
    if variant == "neon-gemm":
        kernels_neon.dw_neon_applies = lambda *a, **k: False
    try:
        yield
    finally:
        kernels_neon.dw_neon_applies = applies
        sk.F16_NEON_TARGETS.update(f16_saved)
        sk.TILED_TARGETS.clear()
        sk.TILED_TARGETS.update(saved[0])
        sk.NEON_TARGETS.clear()
        sk.NEON_TARGETS.update(saved[1])


def _traced_steps(build: Path, steps: int, cpu: str = "cortex-a72") -> int:
    """Guest instructions of a whole session that runs `steps` training steps (1 thread build)."""
    from edgegrad.run import Session, load_build
    from edgegrad.tools.runner import open_device
    info = load_build(build)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(info["inputs"][0]["shape"]).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        fifo = Path(tmp) / "trace"
        os.mkfifo(fifo)
        result: list[int] = []
        reader = threading.Thread(target=lambda: result.append(count_trace(fifo)))
        reader.start()
        cmd = [QEMU[0], *TRACE_FLAGS, "-D", str(fifo), "-cpu", cpu, str(build / info["binary"])]
        old = os.environ.get("EDGEGRAD_AARCH64_RUN")
        os.environ["EDGEGRAD_AARCH64_RUN"] = shlex.join(cmd)
        try:
            with open_device(build / info["binary"], "rpi", timeout=600.0) as dev:
                s = Session(dev, info)
                for _ in range(steps):
                    s.train(x, 1)
        finally:
            if old is None:
                os.environ.pop("EDGEGRAD_AARCH64_RUN")
            else:
                os.environ["EDGEGRAD_AARCH64_RUN"] = old
        reader.join()
        return result[0]


def step_instruction_table(models: list[tuple[str, str]]) -> str:
    """Guest instructions per training step (a 3-step session minus a 1-step one, halved; the
    protocol's per-step frames included) for 1-thread Pi 4 builds with each kernel variant."""
    from edgegrad.cost import node_macs
    from edgegrad.pipeline import CompileConfig, compile_model

    from models import ZOO
    head = ("| model | scheme | conv+GEMM MACs/step | reference instr/step | tiled instr/step "
            "| NEON w/o depthwise instr/step | NEON instr/step | ref / NEON | tiled / NEON | w/o dw / NEON |")
    rows = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, scheme in models:
            per = {}
            for variant in ("reference", "tiled", "neon-gemm", "neon"):
                out = Path(tmp) / f"{name}-{scheme}-{variant}"
                with kernel_variant(variant):
                    res = compile_model(ZOO[name].path, out, CompileConfig(target="rpi", update=scheme, threads=1,
                                                                           quiet=True))
                per[variant] = (_traced_steps(out, 3) - _traced_steps(out, 1)) // 2
            macs = sum(node_macs(n, res.graph) for n in res.graph.nodes)
            rows.append(f"| {name} | `{scheme}` | {macs:,} | {per['reference']:,} | {per['tiled']:,} | "
                        f"{per['neon-gemm']:,} | {per['neon']:,} | {per['reference'] / per['neon']:.2f}x | "
                        f"{per['tiled'] / per['neon']:.2f}x | {per['neon-gemm'] / per['neon']:.2f}x |")
            print(rows[-1], file=sys.stderr, flush=True)
    return "\n".join(rows)


def fp16_step_table(models: list[tuple[str, str]]) -> str:
    """Guest instructions per training step of 1-thread Pi 5 builds (-mcpu=cortex-a76+fp16, run
    under qemu -cpu cortex-a76): fp32 with the NEON kernels vs --dtype fp16 with the portable fp16
    kernels (eg_conv_f16.c, eg_gemm_f16.c) vs --dtype fp16 with their NEON variants."""
    from edgegrad.pipeline import CompileConfig, compile_model

    from models import ZOO
    head = ("| model | scheme | fp32 NEON instr/step | fp16 portable instr/step | fp16 NEON instr/step "
            "| fp32 NEON / fp16 NEON | fp16 portable / fp16 NEON |")
    rows = [head, "|---|---|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, scheme in models:
            per = {}
            for label, dtype, variant in (("fp32", "fp32", "neon"), ("f16ref", "fp16", "neon-f16ref"),
                                          ("f16neon", "fp16", "neon")):
                out = Path(tmp) / f"{name}-{scheme}-{label}"
                with kernel_variant(variant):
                    compile_model(ZOO[name].path, out, CompileConfig(target="rpi", board="pi5", update=scheme,
                                                                     dtype=dtype, threads=1, quiet=True))
                per[label] = (_traced_steps(out, 3, "cortex-a76") - _traced_steps(out, 1, "cortex-a76")) // 2
            rows.append(f"| {name} | `{scheme}` | {per['fp32']:,} | {per['f16ref']:,} | {per['f16neon']:,} | "
                        f"{per['fp32'] / per['f16neon']:.2f}x | {per['f16ref'] / per['f16neon']:.2f}x |")
            print(rows[-1], file=sys.stderr, flush=True)
    return "\n".join(rows)


def step_table(steps: int) -> str:
    from edgegrad.pipeline import CompileConfig, compile_model
    from edgegrad.run import Session, load_build
    from edgegrad.tools.runner import open_device

    from models import ZOO
    rows = ["| model | scheme | 1 thread ms/step (emulated) | 4 threads ms/step (emulated) | speed-up |",
            "|---|---|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, scheme in STEP_MODELS:
            e = ZOO[name]
            rng = np.random.default_rng(0)
            x = rng.standard_normal(e.input_shape).astype(np.float32)
            best = {}
            for threads in (1, 4):
                out = Path(tmp) / f"{name}-{threads}"
                compile_model(e.path, out, CompileConfig(target="rpi", update=scheme, threads=threads, quiet=True))
                info = load_build(out)
                with open_device(out / info["binary"], "rpi", timeout=30.0) as dev:
                    s = Session(dev, info)
                    s.write(info["inputs"][0]["name"], x)
                    s.write("target", np.asarray([1], np.int32))
                    ts = []
                    for _ in range(steps):
                        t0 = time.perf_counter()
                        dev.train_step()
                        ts.append(time.perf_counter() - t0)
                best[threads] = min(ts) * 1e3
            rows.append(f"| {name} | `{scheme}` | {best[1]:.1f} | {best[4]:.1f} | {best[1] / best[4]:.2f}x |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-ms", type=float, default=200.0, help="timing budget per kernel and variant (ms)")
    p.add_argument("--steps", type=int, default=5, help="training steps timed per build (minimum reported)")
    p.add_argument("--no-steps", action="store_true", help="kernels only")
    p.add_argument("--models", default=",".join(f"{m}:{s}" for m, s in INSTR_MODELS),
                   help="MODEL:SCHEME,... for the instructions-per-step table (default: %(default)s)")
    p.add_argument("--wall", action="store_true", help="also emulated wall time per kernel call (1 and 4 threads)")
    p.add_argument("--fp16-models", default="mlp_har:all,cnn_fashion:all,dscnn:last:3",
                   help="MODEL:SCHEME,... for the Pi 5 fp16 vs fp32 table ('' skips it; default: %(default)s)")
    a = p.parse_args(argv)
    print("EMULATED under qemu-aarch64 -cpu cortex-a72 (this x86-64 machine, not a Pi)\n")
    print(instruction_table())
    if a.wall:
        print()
        print(kernel_table(a.budget_ms))
    if not a.no_steps:
        print()
        print(step_instruction_table([tuple(ms.split(":", 1)) for ms in a.models.split(",")]))
        print()
        print(step_table(a.steps))
    if a.fp16_models:
        print()
        print(fp16_step_table([tuple(ms.split(":", 1)) for ms in a.fp16_models.split(",")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
