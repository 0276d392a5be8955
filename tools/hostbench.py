"""Build and run the host step-latency benchmark (tools/bench_main.c) for a compiled model.

    build_bench_binary(build_dir) -> build_dir/bench_host
    run_bench_binary(binary, steps, warmup[, dump]) -> BenchResult(median_us, min_us, ..., peak_rss_kib)

The binary is a build's model.c + the runtime_c kernels + bench_main.c, compiled with the host
target's cflags (targets/host/target.json), without the serial protocol or a board port: it
times eg_train_step alone with clock_gettime(CLOCK_MONOTONIC).
"""

from __future__ import annotations

import subprocess
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
    fields = dict(kv.split("=", 1) for kv in proc.stdout.split())
    return BenchResult(int(fields["steps"]), float(fields["median_us"]), float(fields["min_us"]),
                       float(fields["mean_us"]), float(fields["loss_first"]), float(fields["loss_last"]),
                       int(fields.get("peak_rss_kib", 0)))
