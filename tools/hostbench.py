"""Build and run the host step-latency benchmark (tools/bench_main.c) for a compiled model.

    build_bench_binary(build_dir) -> build_dir/bench_host
    run_bench_binary(binary, steps, warmup[, dump]) -> BenchResult(median_us, min_us, ..., peak_rss_kib)

As a command it profiles one model's training step call by call (where the step's time goes):

    python -m edgegrad.tools.hostbench mobilenetv2_w035_96 --update last:3 [--top 20] [--steps 400]

compiles the zoo model (or an .onnx path) for the host, copies model.c with every call of
eg_train_step timed on its own (clock_gettime around it; the timer's own cost, measured on an empty
pair, is subtracted), and prints each call's median over the steps, by kernel and by call.

The binary is a build's model.c + the runtime_c kernels + bench_main.c, compiled with the host
target's cflags (targets/host/target.json), without the serial protocol or a board port: it
times eg_train_step alone with clock_gettime(CLOCK_MONOTONIC).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgegrad.build import RUNTIME_DIR, BuildError, load_target

BENCH_MAIN = Path(__file__).resolve().parent / "bench_main.c"
BINARY_NAME = "bench_host"


@dataclass
class BenchResult:
    steps: int
    median_us: float
    min_us: float
    mean_us: float
    loss_first: float
    loss_last: float
    peak_rss_kib: int = 0  # the binary's own VmHWM (arena, code, libc), 0 where /proc has none


def bench_sources(build_dir: Path) -> list[Path]:
    kernels = [f for f in sorted(RUNTIME_DIR.glob("eg_*.c")) if f.name != "eg_proto.c"]
    return [BENCH_MAIN, build_dir / "model.c", *kernels]


def build_bench_binary(build_dir: str | Path, extra_cflags: list[str] | None = None) -> Path:
    """Compile build_dir/model.c with the kernels and bench_main.c into build_dir/bench_host."""
    build_dir = Path(build_dir)
    if not (build_dir / "model.c").exists():
        raise BuildError(f"{build_dir}: no model.c (compile the model first)")
    spec = load_target("host")
    binary = build_dir / BINARY_NAME
    cmd = [*spec["cc"], *spec["cflags"], *(extra_cflags or []), f"-I{build_dir}", f"-I{RUNTIME_DIR}",
           *map(str, bench_sources(build_dir)), *spec.get("ldflags", []), "-lm", "-o", str(binary)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return binary


def run_bench_binary(binary: str | Path, steps: int, warmup: int = 0, timeout: float = 600,
                     dump: str | Path | None = None, cpu_time: bool = False) -> BenchResult:
    """Run the binary; with dump, it writes its PARAM buffers there after the last step (bench_main.c);
    with cpu_time, steps are timed in process CPU time instead of wall-clock time."""
    argv = [str(binary), *(["--cpu"] if cpu_time else []), str(steps), str(warmup)]
    argv += [str(dump)] if dump is not None else []
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stdout}{proc.stderr}")
    fields = dict(kv.split("=", 1) for kv in proc.stdout.splitlines()[0].split())
    return BenchResult(int(fields["steps"]), float(fields["median_us"]), float(fields["min_us"]),
                       float(fields["mean_us"]), float(fields["loss_first"]), float(fields["loss_last"]),
                       int(fields.get("peak_rss_kib", 0)))


# ---- per-call profile ------------------------------------------------------------------------------

PROFILE_NAME = "model_prof.c"
_CALL = re.compile(r"^  (?P<call>\S.*;)  /\* (?P<comment>.*) \*/$")
_TIMER = """#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <time.h>
uint64_t eg_prof_ns[{n}];
const uint32_t eg_prof_calls = {n}u;
static inline uint64_t eg_prof_now(void)
{{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}}
"""


def profile_source(model_c: str) -> tuple[str, list[str]]:
    """model.c with every call of eg_train_step timed into eg_prof_ns[i]; call 0 is an empty pair
    (the timer's own cost). Returns the text and, per call, "kernel: comment"."""
    head, sep, body = model_c.partition("void eg_train_step(float *loss)\n{\n")
    if not sep:
        raise ValueError("model.c has no eg_train_step")
    body, _, tail = body.partition("\n}\n")
    labels, lines = ["(timer)"], ["  { uint64_t t0 = eg_prof_now(); eg_prof_ns[0] = eg_prof_now() - t0; }"]
    for line in body.splitlines():
        m = _CALL.match(line)
        if m is None:
            lines.append(line)
            continue
        i = len(labels)
        labels.append(f"{m['call'].split('(', 1)[0]}: {m['comment']}")
        lines.append(f"  {{ uint64_t t0 = eg_prof_now(); {m['call']} eg_prof_ns[{i}] = eg_prof_now() - t0; }}")
    text = (_TIMER.format(n=len(labels)) + head + sep + "\n".join(lines) + "\n}\n" + tail)
    return text, labels


def build_profile_binary(build_dir: Path) -> tuple[Path, list[str]]:
    text, labels = profile_source((build_dir / "model.c").read_text())
    (build_dir / PROFILE_NAME).write_text(text)
    spec = load_target("host")
    binary = build_dir / "bench_prof"
    kernels = [f for f in sorted(RUNTIME_DIR.glob("eg_*.c")) if f.name != "eg_proto.c"]
    cmd = [*spec["cc"], *spec["cflags"], "-DEG_PROFILE", f"-I{build_dir}", f"-I{RUNTIME_DIR}", str(BENCH_MAIN),
           str(build_dir / PROFILE_NAME), *map(str, kernels), *spec.get("ldflags", []), "-lm", "-o", str(binary)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return binary, labels


def profile(build_dir: Path, steps: int) -> tuple[BenchResult, list[tuple[str, float]]]:
    binary, labels = build_profile_binary(build_dir)
    proc = subprocess.run([str(binary), str(steps), str(max(2, steps // 10))], capture_output=True, text=True,
                          check=True, timeout=600)
    lines = proc.stdout.splitlines()
    head = dict(kv.split("=", 1) for kv in lines[0].split())
    res = BenchResult(int(head["steps"]), float(head["median_us"]), float(head["min_us"]), float(head["mean_us"]),
                      float(head["loss_first"]), float(head["loss_last"]), int(head.get("peak_rss_kib", 0)))
    ns = [float(dict(kv.split("=", 1) for kv in ln.split())["median_ns"]) for ln in lines[1:]]
    timer = ns[0]
    return res, [(lab, max(0.0, t - timer)) for lab, t in zip(labels[1:], ns[1:])]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m edgegrad.tools.hostbench",
        description="Profile a host training step call by call: where the step's time goes.",
        epilog="example: python -m edgegrad.tools.hostbench mobilenetv2_w035_96 --update last:3 --top 15 "
               "(--no-fuse: the same without fusions, to see what they save)")
    p.add_argument("model", help="a zoo model name or an .onnx path")
    p.add_argument("--update", default="all", help="update scheme (default all)")
    p.add_argument("--steps", type=int, default=300, help="timed steps (default 300)")
    p.add_argument("--top", type=int, default=25, help="calls to list, slowest first (default 25)")
    p.add_argument("--build-dir", type=Path, help="build folder (default build/prof/MODEL)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "adam"], help="default sgd")
    p.add_argument("--no-fuse", action="store_true", help="the unfused ablation (passes/fuse_eltwise.py, fuse.py off)")
    args = p.parse_args(argv)
    from edgegrad.pipeline import ROOT, CompileConfig, compile_model

    from models import ZOO
    onnx = ZOO[args.model].path if args.model in ZOO else Path(args.model)
    out = args.build_dir or ROOT / "build" / "prof" / Path(onnx).stem
    cfg = CompileConfig(target="host", update=args.update, optimizer=args.optimizer, quiet=True, sram_budget=1 << 30,
                        flash_budget=1 << 30, build=False, fuse=not args.no_fuse)
    compile_model(onnx, out, cfg)
    res, calls = profile(out, args.steps)
    total = sum(t for _, t in calls)
    print(f"{Path(onnx).stem} --update {args.update}: step median {res.median_us:.1f} us (unprofiled steps "
          f"are faster by the timers), sum of call medians {total / 1e3:.1f} us, {len(calls)} calls")
    kinds: dict[str, list[float]] = {}
    for lab, t in calls:
        kinds.setdefault(lab.split(":", 1)[0], []).append(t)
    print("\n| kernel | calls | us | % |\n|---|---:|---:|---:|")
    for k, ts in sorted(kinds.items(), key=lambda kv: -sum(kv[1])):
        print(f"| {k} | {len(ts)} | {sum(ts) / 1e3:.2f} | {100 * sum(ts) / total:.1f} |")
    print("\n| # | call | us | % |\n|---:|---|---:|---:|")
    order = sorted(range(len(calls)), key=lambda i: -calls[i][1])[:args.top]
    for i in order:
        lab, t = calls[i]
        print(f"| {i} | {lab} | {t / 1e3:.2f} | {100 * t / total:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
