"""Training-step benchmark: edgegrad's compiled host step against PyTorch eager, per zoo model
and update scheme.

    python -m edgegrad.tools.bench                                   # every model x scheme
    python -m edgegrad.tools.bench --models mlp_har,dscnn --schemes all,bias:all
    python -m edgegrad.tools.bench --min-time 2 --markdown bench.md

For each (model, scheme) it reports MACs per training step (forward + backward + update, counted
on the training graph: Conv/Gemm and their backward nodes, plus one multiply-add per updated
parameter), the arena against the planner's lower bound, and the median step latency of

* edgegrad: the generated model.c + runtime_c kernels built with the host target's cflags into
  tools/bench_main.c (tools/hostbench.py), eg_train_step timed alone; and
* PyTorch eager: 1 thread, the zoo's torch module in eval mode with BatchNorm fused into the
  convolutions (so it computes what the ONNX computes; its weights are loaded from the ONNX),
  requires_grad only on what the scheme trains, batch 1, cross-entropy, torch.optim.SGD with the
  same lr, zero_grad(set_to_none=True). A partial (fraction) update has no torch equivalent:
  the whole tensor's gradient is computed and the frozen rows are zeroed before the step.
  (dscnn's torch module pads with a ZeroPad2d op that the ONNX export folded into the Conv.)

Both see the same input (the same pseudo-random values), label 0 and lr. The two measurements
are interleaved in rounds in one process (edgegrad runs as a child process per round), so load
on the machine hits both; each figure is the median of the per-round medians. Parameters are
reset to their initial values at the start of every round on both sides.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import numpy as np
from edgegrad import __version__
from edgegrad.cost import graph_macs
from edgegrad.pipeline import ROOT, CompileConfig, compile_model, frontend_graph
from edgegrad.scheme import Update, layers
from edgegrad.tools.hostbench import BenchResult, build_bench_binary, run_bench_binary

MODELS = ("mlp_har", "cnn_fashion", "dscnn", "resnet8", "mobilenetv2_w035_96", "mobilenetv2_w035_128")
SCHEMES = ("all", "last:2", "bias:all", "weights:last:2@0.5")
# zoo name -> (module with build(seed), keyword arguments of build)
TORCH_MODULES = {
    "mlp_har": ("models.mlp_har", {}),
    "mlp_har_pre": ("models.mlp_har", {}),
    "cnn_fashion": ("models.cnn_fashion", {}),
    "dscnn": ("models.dscnn", {}),
    "resnet8": ("models.resnet8", {}),
    "mobilenetv2_w035_96": ("models.mobilenetv2", {}),
    "mobilenetv2_w035_128": ("models.mobilenetv2", {}),
}
COLUMNS = ("model", "scheme", "MACs/step", "arena KiB", "lower bound KiB", "arena/LB",
           "edgegrad µs", "PyTorch µs", "speed-up")
UPDATE_OPS = ("SGDUpdate", "MomentumUpdate", "AdamUpdate")


@dataclass
class Row:
    model: str
    scheme: str
    macs: int
    arena_bytes: int
    lower_bound: int
    edgegrad_us: float
    torch_us: float
    edgegrad_min_us: float
    torch_min_us: float
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        return [self.model, f"`{self.scheme}`", f"{self.macs:,}", f"{self.arena_bytes / 1024:.1f}",
                f"{self.lower_bound / 1024:.1f}", f"{self.arena_bytes / max(self.lower_bound, 1):.2f}",
                f"{self.edgegrad_us:,.1f}", f"{self.torch_us:,.1f}", f"{self.torch_us / self.edgegrad_us:.2f}x"]


# ---- the edgegrad side -------------------------------------------------------------------------


def training_step_macs(g) -> int:
    """Conv/Gemm forward and backward MACs of the training graph, plus one per updated element."""
    updates = sum(n.attrs["rows"] * n.attrs["inner"] for n in g.nodes if n.op in UPDATE_OPS)
    return graph_macs(g) + updates


def bench_input(shape: tuple[int, ...]) -> np.ndarray:
    """The values bench_main.c writes into the input buffer: LCG(12345), uniform in [-1, 1)."""
    n = int(np.prod(shape))
    out = np.empty(n, np.float32)
    state = 12345
    for i in range(n):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = (state >> 8) * (2.0 / 16777216.0) - 1.0
    return out.reshape(shape)


# ---- the PyTorch side --------------------------------------------------------------------------


@dataclass
class TorchStep:
    model: object
    optimizer: object
    x: object
    y: object
    masks: list  # (param, axis, k): rows k.. of the axis are frozen
    initial: dict  # param -> its initial value, restored at the start of every round

    def run(self, steps: int, warmup: int) -> tuple[list[float], float]:
        """Times `steps` optimizer steps after `warmup`; returns (µs per step, first loss)."""
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            for p, v in self.initial.items():
                p.copy_(v)
        times, first = [], float("nan")
        for i in range(warmup + steps):
            t0 = time.perf_counter_ns()
            self.optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.model(self.x), self.y)
            loss.backward()
            for p, axis, k in self.masks:
                p.grad.narrow(axis, k, p.shape[axis] - k).zero_()
            self.optimizer.step()
            t1 = time.perf_counter_ns()
            if i == 0:
                first = loss.item()
            if i >= warmup:
                times.append((t1 - t0) / 1e3)
        return times, first


def torch_layers(gm) -> list:
    """A traced (fx) module's Conv/Linear layers in execution order (= the ONNX Conv/Gemm order)."""
    from torch import nn

    return [gm.get_submodule(n.target) for n in gm.graph.nodes
            if n.op == "call_module" and isinstance(gm.get_submodule(n.target), (nn.Conv2d, nn.Conv1d, nn.Linear))]


def make_torch_step(name: str, graph, updates: dict[str, Update], lr: float, x: np.ndarray) -> TorchStep:
    """The zoo's torch module, BN fused into conv, weights from the ONNX graph, the scheme's params trainable."""
    import torch
    from torch.fx.experimental.optimization import fuse

    if name not in TORCH_MODULES:
        raise SystemExit(f"bench: no torch module known for {name!r} (known: {', '.join(TORCH_MODULES)})")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    mod_name, kwargs = TORCH_MODULES[name]
    module = importlib.import_module(mod_name).build(0, **kwargs).eval()
    gm = fuse(module)  # fx: folds every eval-mode BatchNorm into the conv before it, as the exporter did
    tlayers = torch_layers(gm)
    olayers = layers(graph)
    if len(tlayers) != len(olayers):
        raise RuntimeError(f"{name}: {len(tlayers)} torch Conv/Linear layers but {len(olayers)} ONNX layers")
    by_tensor = {}
    with torch.no_grad():
        for (node, w, b), layer in zip(olayers, tlayers):
            for tname, p in ((w, layer.weight), (b, layer.bias)):
                if tname is None:
                    continue
                if p is None or tuple(p.shape) != graph.tensors[tname].shape:
                    raise RuntimeError(f"{name}: ONNX {node} {tname} {graph.tensors[tname].shape} does not match "
                                       f"torch {layer} ({None if p is None else tuple(p.shape)})")
                p.copy_(torch.from_numpy(np.ascontiguousarray(graph.tensors[tname].data, np.float32)))
                by_tensor[tname] = p
    for p in gm.parameters():
        p.requires_grad_(False)
    masks, trained = [], []
    for tname, u in updates.items():
        if tname not in by_tensor:
            raise RuntimeError(f"{name}: scheme trains {tname!r}, which is no Conv/Gemm weight or bias")
        p = by_tensor[tname]
        p.requires_grad_(True)
        trained.append(p)
        k = u.rows(tuple(p.shape))
        if k < p.shape[u.axis]:
            masks.append((p, u.axis, k))
    optimizer = torch.optim.SGD(trained, lr=lr)
    initial = {p: p.detach().clone() for p in trained}
    return TorchStep(gm, optimizer, torch.from_numpy(x), torch.zeros(1, dtype=torch.long), masks, initial)


# ---- one (model, scheme) -----------------------------------------------------------------------


def bench_one(name: str, scheme: str, args, work: Path, log) -> Row:
    from models import ZOO

    onnx_path = ZOO[name].path
    out_dir = work / name / scheme.replace(":", "_").replace("@", "_at_").replace("/", "_")
    # The host is the benchmark: budgets that only an MCU would have must not stop the compile.
    # build=False: the protocol binary is not needed, build_bench_binary links model.c itself.
    cfg = CompileConfig(target="host", update=scheme, optimizer="sgd", lr=args.lr, quiet=True,
                        sram_budget=1 << 30, flash_budget=1 << 30, build=False)
    compiled = compile_model(onnx_path, out_dir, cfg)
    binary = build_bench_binary(out_dir)
    forward, updates = frontend_graph(onnx_path, cfg)
    x = bench_input(tuple(compiled.info["inputs"][0]["shape"]))
    step = make_torch_step(name, forward, updates, args.lr, x)

    # Calibrate: steps per round so that each side runs about min_time in all.
    eg_probe = run_bench_binary(binary, args.min_steps, 2)
    t_probe, _ = step.run(args.min_steps, 2)
    rounds = args.rounds
    n_eg = max(args.min_steps, math.ceil(args.min_time / rounds / (eg_probe.median_us * 1e-6)))
    n_t = max(args.min_steps, math.ceil(args.min_time / rounds / (median(t_probe) * 1e-6)))
    warm_eg, warm_t = max(2, n_eg // 10), max(2, n_t // 10)

    eg_rounds: list[BenchResult] = []
    t_medians, t_mins, torch_first = [], [], float("nan")
    for _ in range(rounds):
        eg_rounds.append(run_bench_binary(binary, n_eg, warm_eg))
        times, torch_first = step.run(n_t, warm_t)
        t_medians.append(median(times))
        t_mins.append(min(times))
    row = Row(name, scheme, training_step_macs(compiled.graph), compiled.info["arena_bytes"],
              compiled.info["arena_lower_bound"], median(r.median_us for r in eg_rounds), median(t_medians),
              min(r.min_us for r in eg_rounds), min(t_mins))
    eg_first = eg_rounds[-1].loss_first
    if not math.isclose(eg_first, torch_first, rel_tol=1e-3, abs_tol=1e-4):
        row.notes.append(f"first-step loss differs: edgegrad {eg_first:.6g}, PyTorch {torch_first:.6g}")
    log(f"  {name:22s} {scheme:20s} edgegrad {row.edgegrad_us:10.1f} µs ({rounds}x{n_eg} steps)  "
        f"PyTorch {row.torch_us:10.1f} µs ({rounds}x{n_t})  loss0 {eg_first:.5g}/{torch_first:.5g}")
    return row


# ---- report ------------------------------------------------------------------------------------


def machine_header(args) -> list[str]:
    import torch

    cpu, isa = "unknown", ""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}  # the last core's fields; all alike here
        cpu = f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model {info.get('model', '?')})"
        isa = " ".join(f for f in ("avx2", "fma", "avx512f") if f in info.get("flags", "").split())
    except OSError:
        pass
    try:
        gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True,
                             check=False).stdout.splitlines()[0]
    except (OSError, IndexError):
        gcc = "gcc: not found"
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "?"
    flags = " ".join(_host_cflags())
    return [
        f"edgegrad {__version__} training-step benchmark, {time.strftime('%Y-%m-%d %H:%M')}",
        (f"machine: {cpu} [{isa}], nproc {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), "
         f"load average {load}, {platform.system()} {platform.release()}"),
        (f"versions: torch {torch.__version__} (threads {torch.get_num_threads()}), {gcc}, "
         f"Python {platform.python_version()}"),
        f"edgegrad host build: {flags}; PyTorch eager, 1 thread, BN fused, batch 1",
        (f"sgd lr {args.lr}, label 0, fixed input; latency = median of {args.rounds} interleaved rounds' "
         f"medians (~{args.min_time:g} s per side)"),
    ]


def _host_cflags() -> list[str]:
    from edgegrad.build import load_target

    return load_target("host")["cflags"]


def markdown_table(rows: list, columns: tuple[str, ...] = COLUMNS) -> str:
    """Rows (anything with .cells()) under `columns`; the first two columns are text, the rest right-aligned."""
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if i < 2 else "---:" for i in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def report(header: list[str], rows: list[Row]) -> str:
    notes = [f"- {r.model} `{r.scheme}`: {n}" for r in rows for n in r.notes]
    text = "\n".join([f"## {header[0]}", ""] + [f"- {h}" for h in header[1:]])
    body = "\n".join(["", markdown_table(rows)])
    mins = ["", "Minimum step time, edgegrad / PyTorch (µs):", ""]
    mins += [f"- {r.model} `{r.scheme}`: {r.edgegrad_min_us:,.1f} / {r.torch_min_us:,.1f}" for r in rows]
    return text + "\n" + body + "\n" + "\n".join(mins + ([""] + notes if notes else [])) + "\n"


# ---- command line ------------------------------------------------------------------------------


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m edgegrad.tools.bench",
        description="edgegrad host training step vs PyTorch eager (1 thread), per zoo model and update scheme.",
        epilog="example: python -m edgegrad.tools.bench --models mlp_har,resnet8 --schemes all,bias:all "
               "--markdown bench.md",
    )
    p.add_argument("--models", type=_csv, default=list(MODELS), help=f"comma-separated (default: {','.join(MODELS)})")
    p.add_argument("--schemes", type=_csv, default=list(SCHEMES),
                   help=f"comma-separated update schemes (default: {','.join(SCHEMES)}); a JSON file works too")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds of timed steps per side (default 0.5)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved edgegrad/PyTorch rounds (default 5)")
    p.add_argument("--min-steps", type=int, default=20, help="at least this many timed steps per round")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate for both (default 0.01)")
    p.add_argument("--markdown", type=Path, help="also write the report to this file")
    p.add_argument("--build-dir", type=Path, help="keep the builds here (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.min_steps < 1:
        p.error("--rounds and --min-steps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from models import ZOO

    unknown = [m for m in args.models if m not in ZOO]
    if unknown:
        raise SystemExit(f"bench: unknown models {', '.join(unknown)} (zoo: {', '.join(ZOO)})")
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass

    return run_grid(args, machine_header(args), bench_one, report, "eg-bench-")


def run_grid(args, header: str, bench_one, report, prefix: str) -> int:
    """Run bench_one over models x schemes in a scratch build folder; print (and write) the report."""
    log = lambda *a: print(*a, file=sys.stderr, flush=True)
    work = args.build_dir or Path(tempfile.mkdtemp(prefix=prefix))
    rows = []
    try:
        for name in args.models:
            for scheme in args.schemes:
                rows.append(bench_one(name, scheme, args, work, log))
    finally:
        if args.build_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    text = report(header, rows)
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
