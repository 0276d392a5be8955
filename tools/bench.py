"""Training-step benchmark: edgegrad's compiled host step against PyTorch eager, ONNX Runtime on-device
training and (if installed) TVM Relax training, per zoo model and update scheme, in one run.

    python -m edgegrad.tools.bench                                   # default models x schemes
    python -m edgegrad.tools.bench --models mlp_har,dscnn --schemes all,bias:all -o bench-out
    tools/setup_bench.sh [tvm]                                       # the peers' venvs (once)

Every engine trains the same ONNX model on the same input (pseudo-random values, label 0) from
the same initial weights, batch 1, cross-entropy, plain SGD with the same lr, one thread:

* edgegrad: the generated model.c + runtime_c kernels built with the host target's cflags into
  tools/bench_main.c (tools/hostbench.py), eg_train_step timed alone; one child process per round.
* PyTorch eager (tools/peers/torch_train.py, this venv): the zoo's torch module, BN fused, weights
  from the ONNX, requires_grad only on what the scheme trains.
* ONNX Runtime training (tools/peers/ort_train.py, build/venv-ort): onnxruntime.training artifacts
  with requires_grad = the scheme's tensors, CrossEntropyLoss, SGD, 1 intra-op thread.
* TVM Relax (tools/peers/tvm_train.py, build/venv-tvm), when installed.

A peer is a long-lived child process (tools/peers/worker.py protocol) so its step is timed
without start-up costs and its peak memory is its own: the table's "peak RSS" is each process's
VmHWM (PyTorch and ORT: the whole runtime they load; edgegrad: the bench binary, arena included).
Sub-tensor (fraction) updates: PyTorch zeroes the frozen rows' gradient before the step; ORT and
TVM cannot express them and train the whole tensor (noted under the table).

Timing: the engines run interleaved in `--rounds` rounds (so load on this shared machine hits all),
each round ~min-time/rounds of steps after a warm-up; a figure is the median of the per-round
medians. Parameters are reset to their initial values at the start of every round. Each step is
timed in process CPU time by default (--clock cpu): every engine runs one thread, so that is the
step's cost, and unlike wall time it is not inflated when other jobs time-slice the cores (on this
2-core machine shared by several jobs, wall-clock medians of multi-ms steps swing 2-4x); --clock
wall times wall-clock latency instead.

Gradient agreement, in the same run: one SGD step from the initial weights in each engine; the
gradient each applied is recovered as g = (W0 - W1) / lr for every trained tensor (the rows the
scheme trains) and compared with PyTorch autograd's element by element:
    max|g - g_torch| <= RTOL * max|g_torch| + 4 * eps_f32 * max|W0| / lr
(the second term is the float32 rounding of W1 itself; the figure printed, max|g - g_torch| / max|g_torch|,
leaves out tensors whose max|g_torch| is below it: their updates are a few ulps of W). An engine that fails is flagged in the
table, its time marked "✗": a fast wrong kernel cannot win. edgegrad's frozen rows must not move.

Roofline: a compute lower bound, MACs per step / P, where P is this core's peak fp32 multiply-add
rate measured by tools/peak_fma.c (independent vector FMA chains, -march=native, best of 8 trials,
timed in thread CPU time so that time slicing on a shared machine does not lower it), the fastest
sample taken before, between and after the rows; the clock, measured as the rate of a dependent
integer-add chain, gives P in MACs/cycle. Memory traffic is not modelled, so
the bound is optimistic; "% of roofline" = bound / edgegrad median.
"""

from __future__ import annotations

import argparse
import json
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
from edgegrad.build import load_target
from edgegrad.cost import graph_macs
from edgegrad.pipeline import ROOT, CompileConfig, compile_model, frontend_graph
from edgegrad.scheme import layers
from edgegrad.tools.hostbench import build_bench_binary, run_bench_binary

MODELS = ("mlp_har", "cnn_fashion", "dscnn", "resnet8", "mobilenetv2_w035_96")
SCHEMES = ("all", "last:3", "bias:all")
# zoo name -> the models.* module whose build(seed) makes its torch twin
TORCH_MODULES = {
    "mlp_har": "models.mlp_har",
    "mlp_har_pre": "models.mlp_har",
    "cnn_fashion": "models.cnn_fashion",
    "cnn_fashion_pre": "models.cnn_fashion",
    "dscnn": "models.dscnn",
    "resnet8": "models.resnet8",
    "mobilenetv2_w035_96": "models.mobilenetv2",
    "mobilenetv2_w035_128": "models.mobilenetv2",
}
PEERS_DIR = Path(__file__).resolve().parent / "peers"
PEAK_FMA_C = Path(__file__).resolve().parent / "peak_fma.c"
PEER_NAMES = {"torch": "PyTorch", "ort": "ORT", "tvm": "TVM"}
PEER_VENVS = {"ort": "build/venv-ort", "tvm": "build/venv-tvm"}
PEER_PROBES = {"ort": "import onnxruntime.training.api", "tvm": "import tvm, onnx; from tvm import relax"}
RTOL = 1e-3  # gradient agreement: relative to the largest reference gradient element
UPDATE_OPS = ("SGDUpdate", "MomentumUpdate", "AdamUpdate", "ConvBwWeightSGD", "ConvBwWeightMomentum",
              "ReduceSumUpdate")  # the fused nodes update their block too
FIXED_COLUMNS = ("model", "scheme", "MACs/step", "arena KiB", "roofline µs", "edgegrad µs", "% of roofline")


# ---- measurements --------------------------------------------------------------------------------


@dataclass
class Timing:
    median_us: float = math.nan
    min_us: float = math.nan
    peak_kib: int = 0
    grad: str = ""  # "" not checked, else "ok ..." / "FAIL ..."
    ok: bool = True


@dataclass
class Row:
    model: str
    scheme: str
    macs: int
    arena_bytes: int
    roofline_us: float
    timings: dict[str, Timing]  # "edgegrad" and every peer that ran
    peers: tuple[str, ...]
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        eg = self.timings["edgegrad"]
        out = [self.model, f"`{self.scheme}`", f"{self.macs:,}", f"{self.arena_bytes / 1024:.1f}",
               f"{self.roofline_us:,.1f}", _us(eg), f"{100 * self.roofline_us / eg.median_us:.1f}%"]
        for p in self.peers:
            out.append(_us(self.timings.get(p, Timing())))
        for p in self.peers:
            t = self.timings.get(p, Timing())
            out.append("–" if math.isnan(t.median_us) else f"{t.median_us / eg.median_us:.2f}x")
        mem = [self.timings["edgegrad"]] + [self.timings.get(p, Timing()) for p in self.peers]
        out.append(" / ".join(f"{t.peak_kib / 1024:.1f}" if t.peak_kib else "–" for t in mem))
        out.append(", ".join(f"{name}: {self.timings[k].grad}" for k, name in
                             [("edgegrad", "eg")] + [(p, PEER_NAMES[p]) for p in self.peers]
                             if k in self.timings and self.timings[k].grad))
        return out


def _us(t: Timing) -> str:
    if math.isnan(t.median_us):
        return "–"
    return f"{t.median_us:,.1f}" + ("" if t.ok else " ✗")


def columns(peers: tuple[str, ...]) -> tuple[str, ...]:
    names = [PEER_NAMES[p] for p in peers]
    return (*FIXED_COLUMNS, *(f"{n} µs" for n in names), *(f"{n}/edgegrad" for n in names),
            "peak RSS MiB (" + " / ".join(["edgegrad", *names]) + ")", "gradients vs PyTorch")


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


@dataclass
class Peak:
    macs_per_s: float
    hz: float
    macs_per_cycle: float
    isa: str


def build_peak_probe(work: Path) -> Path:
    """tools/peak_fma.c built with the host target's compiler and -march=native."""
    spec = load_target("host")
    exe = work / "peak_fma"
    subprocess.run([*spec["cc"], "-std=c99", "-O3", "-march=native", str(PEAK_FMA_C), "-lm", "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    return exe


def measure_peak(exe: Path, seconds: float, best: Peak | None = None) -> Peak:
    """Run the probe; the faster of this sample and `best` (the probe times itself in CPU time, so
    time slicing does not lower it, but a shared core's caches and clock still can)."""
    out = subprocess.run([str(exe), f"{seconds:g}"], check=True, capture_output=True, text=True).stdout
    f = dict(kv.split("=", 1) for kv in out.split())
    now = Peak(float(f["macs_per_s"]), float(f["hz"]), float(f["macs_per_cycle"]), f["isa"])
    return now if best is None or now.macs_per_s > best.macs_per_s else best


def read_dump(path: Path) -> dict[str, np.ndarray]:
    """bench_main.c's DUMP file: "NAME BYTES\\n" + raw float32 bytes, per PARAM buffer."""
    data, out, pos = path.read_bytes(), {}, 0
    while pos < len(data):
        nl = data.index(b"\n", pos)
        name, nbytes = data[pos:nl].decode().rsplit(" ", 1)
        pos = nl + 1
        out[name] = np.frombuffer(data[pos:pos + int(nbytes)], np.float32).copy()
        pos += int(nbytes)
    return out


# ---- peers -----------------------------------------------------------------------------------------


def peer_python(peer: str) -> tuple[str | None, str]:
    """(python executable, "") for a peer that can run, else (None, why not)."""
    if peer == "torch":
        return sys.executable, ""
    py = ROOT / PEER_VENVS[peer] / "bin" / "python"
    if not py.exists():
        return None, f"not installed ({PEER_VENVS[peer]} missing: run tools/setup_bench.sh{' tvm' * (peer == 'tvm')})"
    probe = subprocess.run([str(py), "-c", PEER_PROBES[peer]], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return None, f"not installed ({PEER_VENVS[peer]}: {probe.stderr.strip().splitlines()[-1:]})"
    return str(py), ""


class PeerProcess:
    """One peer's worker process (tools/peers/worker.py protocol)."""

    def __init__(self, name: str, python: str, spec: dict, work: Path):
        self.name = name
        work.mkdir(parents=True, exist_ok=True)
        self.spec_path = work / "spec.json"
        self.spec_path.write_text(json.dumps(spec))
        script = PEERS_DIR / f"{name}_train.py"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TVM_NUM_THREADS": "1", "PYTHONPATH": ""}
        if name != "torch":  # artifacts/compilation in a process of its own: not in the served peak RSS
            prep = subprocess.run([python, str(script), "prepare", str(self.spec_path)], capture_output=True,
                                  text=True, check=False, env=env, cwd=work)
            if prep.returncode != 0:
                raise RuntimeError(f"{name} peer: preparing failed:\n{prep.stderr[-3000:]}")
        self.errlog = (work / "stderr.log").open("w+")
        self.proc = subprocess.Popen([python, str(script), str(self.spec_path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.errlog, text=True, env=env, cwd=work)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.errlog.seek(0)
            raise RuntimeError(f"{self.name} peer exited {self.proc.returncode}:\n{self.errlog.read()[-3000:]}")
        reply = json.loads(line)
        if "error" in reply:
            self.errlog.seek(0)
            raise RuntimeError(f"{self.name} peer: {reply['error']}\n{self.errlog.read()[-3000:]}")
        return reply

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def peak_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.errlog.close()


# ---- gradient agreement --------------------------------------------------------------------------


def applied_gradients(w0: dict, w1: dict, trained: dict, lr: float) -> dict[str, np.ndarray]:
    """(W0 - W1) / lr of every trained tensor, restricted to the rows the scheme trains."""
    out = {}
    for name, u in trained.items():
        a = np.asarray(w0[name], np.float64).reshape(u["shape"])
        b = np.asarray(w1[name], np.float64).reshape(u["shape"])
        out[name] = np.take((a - b) / lr, range(u["rows"]), axis=u["axis"]) if u["shape"] else (a - b) / lr
    return out


def compare(got: dict, ref: dict, w0: dict, lr: float) -> tuple[bool, str]:
    """Every element within RTOL * max|ref| + 4 eps_f32 max|W0| / lr; returns (ok, "ok rel 1.2e-06")."""
    worst_rel, ok, bad = 0.0, True, ""
    for name, r in ref.items():
        if name not in got:
            return False, f"FAIL: no {name}"
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        floor = 4 * np.finfo(np.float32).eps * float(np.max(np.abs(w0[name]))) / lr
        err = float(np.max(np.abs(got[name] - r))) if r.size else 0.0
        if scale > floor:  # an update below the floor (a few ulps of W) cannot be measured from W0 - W1
            worst_rel = max(worst_rel, err / scale)
        if err > RTOL * scale + floor:
            ok, bad = False, bad or name
    return ok, (f"ok {worst_rel:.1e}" if ok else f"FAIL {worst_rel:.1e} ({bad})")


# ---- one (model, scheme) ---------------------------------------------------------------------------


def bench_one(name: str, scheme: str, args, work: Path, log, peers: dict[str, str]) -> Row:
    from models import ZOO

    onnx_path = ZOO[name].path
    out_dir = work / name / scheme.replace(":", "_").replace("@", "_at_").replace("/", "_").replace(",", "+")
    # The host is the benchmark: budgets that only an MCU would have must not stop the compile.
    # build=False: the protocol binary is not needed, build_bench_binary links model.c itself.
    cfg = CompileConfig(target="host", update=scheme, optimizer="sgd", lr=args.lr, quiet=True,
                        sram_budget=1 << 30, flash_budget=1 << 30, build=False)
    compiled = compile_model(onnx_path, out_dir, cfg)
    binary = build_bench_binary(out_dir)
    forward, updates = frontend_graph(onnx_path, cfg)
    x = bench_input(tuple(compiled.info["inputs"][0]["shape"]))
    np.save(out_dir / "input.npy", x)
    w0 = {t: np.ascontiguousarray(forward.tensors[t].data, np.float32) for t in forward.tensors
          if forward.tensors[t].role == "param" and forward.tensors[t].data is not None}
    np.savez(out_dir / "weights.npz", **w0)
    trained = {}
    for t, u in updates.items():
        shape = tuple(forward.tensors[t].shape)
        trained[t] = {"axis": u.axis, "rows": u.rows(shape), "total": shape[u.axis] if shape else 1,
                      "shape": list(shape)}
    base = {"model": str(onnx_path), "trained": trained, "lr": args.lr, "input": str(out_dir / "input.npy"),
            "label": 0, "weights": str(out_dir / "weights.npz"), "layers": layers(forward),
            "torch_module": TORCH_MODULES.get(name), "zoo": name}
    macs = training_step_macs(compiled.graph)
    row = Row(name, scheme, macs, compiled.info["arena_bytes"], math.nan,  # roofline: after the run
              {"edgegrad": Timing()}, tuple(peers))
    wino = [n for n in compiled.graph.nodes if n.attrs.get("kernel") == "winograd" and "wino_tile" in n.attrs]
    wgrad = [n for n in compiled.graph.nodes if n.attrs.get("kernel") == "winograd" and "wino_tile" not in n.attrs]
    if wgrad:  # ConvBwWeight(SGD): runtime_c/eg_winograd_wgrad.c
        row.notes.append(f"{len(wgrad)} weight gradients run as Winograd F(3x3,2x2), 2.25x fewer multiplies than "
                         "the MACs/step count for them")
    if wino:  # MACs/step counts direct-convolution MACs; these layers multiply less
        tiles = sorted({n.attrs["wino_tile"] for n in wino})
        row.notes.append(f"{len(wino)} conv calls ({graph_macs(compiled.graph, wino):,} of the MACs/step) run as "
                         f"Winograd {'/'.join(f'F({t}x{t},3x3)' for t in tiles)}, which do "
                         f"{'/'.join({2: '2.25x', 4: '4x'}[t] for t in tiles)} fewer multiplies than that count "
                         "(the roofline counts direct-convolution MACs)")
    if len(trained) <= 6 and len(trained) < len(w0):  # say what a short scheme such as last:3 picked
        picked = [t if u["rows"] == u["total"] else f"{t} ({u['rows']} of {u['total']} rows)"
                  for t, u in trained.items()]
        row.notes.append("trains " + ", ".join(picked))
    procs: dict[str, PeerProcess] = {}
    rounds: dict[str, list[tuple[float, float]]] = {}

    def drop(p: str, e: RuntimeError) -> None:
        """A peer other than the reference that fails mid-row leaves the row with a note, not the run."""
        if p == "torch":
            raise e
        log(f"  {p}: {e}")
        row.notes.append(f"{PEER_NAMES[p]} failed: {str(e).splitlines()[0]}")
        procs.pop(p).close()
        row.timings.pop(p, None)
        rounds.pop(p, None)

    try:
        for p, py in peers.items():
            if p == "torch" and name not in TORCH_MODULES:
                raise SystemExit(f"bench: no torch module known for {name!r} (known: {', '.join(TORCH_MODULES)})")
            try:
                procs[p] = PeerProcess(p, py, {**base, "work": str(out_dir / p)}, out_dir / p)
            except RuntimeError as e:
                if p == "torch":
                    raise
                row.notes.append(f"{PEER_NAMES[p]} failed to start: {str(e).splitlines()[0]}")
                log(f"  {p}: {e}")
                continue
            row.notes += [f"{PEER_NAMES[p]}: {n}" for n in procs[p].info.get("notes", [])]
            args.versions.add(procs[p].info["version"])

        # One step from the initial weights in every engine: the gradients each applied.
        dump = out_dir / "after_step1.bin"
        eg_first = run_bench_binary(binary, 1, 0, dump=dump)
        eg_w1 = read_dump(dump)
        missing = [t for t in trained if t not in eg_w1]
        firsts = {"edgegrad": (eg_first.loss_first, eg_w1)}
        for p, proc in list(procs.items()):
            npz = out_dir / p / "after_step1.npz"
            try:
                loss = proc.ask(cmd="first", out=str(npz))["loss"]
            except RuntimeError as e:
                drop(p, e)
                continue
            firsts[p] = (loss, dict(np.load(npz)))
        ref_loss, ref_w1 = firsts["torch"]
        ref = applied_gradients(w0, ref_w1, trained, args.lr)
        for k, (loss, w1) in firsts.items():
            t = row.timings.setdefault(k, Timing())
            if k == "torch":
                t.grad = "reference"
                continue
            if k == "edgegrad" and missing:
                t.ok, t.grad = False, f"FAIL: not dumped {', '.join(missing)}"
                continue
            t.ok, t.grad = compare(applied_gradients(w0, w1, trained, args.lr), ref, w0, args.lr)
            if not math.isclose(loss, ref_loss, rel_tol=1e-4, abs_tol=1e-5):
                t.ok = False
                t.grad += f"; loss {loss:.6g} vs {ref_loss:.6g}"
        for t, u in trained.items():  # edgegrad's frozen rows must not move
            if t in eg_w1 and u["rows"] < u["total"]:
                a, b = w0[t].reshape(u["shape"]), eg_w1[t].reshape(u["shape"])
                frozen = (np.take(a, range(u["rows"], u["total"]), axis=u["axis"]),
                          np.take(b, range(u["rows"], u["total"]), axis=u["axis"]))
                if not np.array_equal(*frozen):
                    row.timings["edgegrad"].ok = False
                    row.timings["edgegrad"].grad += f"; frozen rows of {t} moved"

        # Calibrate: steps per round so that each engine runs about min_time in all.
        def steps_for(us: float) -> int:
            return max(args.min_steps, math.ceil(args.min_time / args.rounds / (us * 1e-6)))

        cpu = args.clock == "cpu"
        probe = run_bench_binary(binary, args.min_steps, 2, cpu_time=cpu)
        n = {"edgegrad": steps_for(probe.median_us)}
        for p, proc in list(procs.items()):
            try:
                n[p] = steps_for(proc.ask(cmd="time", steps=args.min_steps, warmup=2, clock=args.clock)["median_us"])
            except RuntimeError as e:
                drop(p, e)
        rounds.update({k: [] for k in n})
        for _ in range(args.rounds):
            res = run_bench_binary(binary, n["edgegrad"], max(2, n["edgegrad"] // 10), cpu_time=cpu)
            rounds["edgegrad"].append((res.median_us, res.min_us))
            row.timings["edgegrad"].peak_kib = max(row.timings["edgegrad"].peak_kib, res.peak_rss_kib)
            for p, proc in list(procs.items()):
                try:
                    r = proc.ask(cmd="time", steps=n[p], warmup=max(2, n[p] // 10), clock=args.clock)
                except RuntimeError as e:
                    drop(p, e)
                    continue
                rounds[p].append((r["median_us"], r["min_us"]))
        for k, rs in rounds.items():
            t = row.timings[k]
            t.median_us, t.min_us = median(m for m, _ in rs), min(m for _, m in rs)
            if k in procs:
                t.peak_kib = procs[k].peak_kib()
    finally:
        for proc in procs.values():
            proc.close()
    log(f"  {name:20s} {scheme:12s} " + "  ".join(
        f"{k} {t.median_us:9.1f} µs{'' if t.ok else ' ✗'}" for k, t in row.timings.items()))
    return row


# ---- report ----------------------------------------------------------------------------------------


def machine_header(args, peak: Peak, skipped: dict[str, str]) -> list[str]:
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
    flags = " ".join(load_target("host")["cflags"])
    lines = [
        f"edgegrad {__version__} training-step benchmark, {time.strftime('%Y-%m-%d %H:%M')}",
        (f"machine: {cpu} [{isa}], nproc {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), "
         f"load average {load}, {platform.system()} {platform.release()}"),
        (f"versions: edgegrad {__version__} ({gcc}; {flags}), {', '.join(sorted(args.versions))}, "
         f"Python {platform.python_version()}"),
    ]
    lines += [f"{PEER_NAMES[p]}: {why}" for p, why in skipped.items()]
    lines += [
        (f"roofline: MACs / {peak.macs_per_s / 1e9:.1f} GMAC/s (measured fp32 FMA peak, {peak.isa}: "
         f"{peak.macs_per_cycle:.1f} MACs/cycle at {peak.hz / 1e9:.2f} GHz); compute only, memory traffic ignored"),
        (f"batch 1, label 0, fixed input, cross-entropy, SGD lr {args.lr}, 1 thread each; step time "
         f"({'process CPU time' if args.clock == 'cpu' else 'wall clock'}) = median of "
         f"{args.rounds} interleaved rounds' medians (~{args.min_time:g} s per engine); ratio = engine / edgegrad "
         f"(> 1: edgegrad faster); peak RSS = each process's VmHWM"),
        (f"gradients: one step from the same weights, (W0 - W1)/lr of every trained element vs PyTorch autograd, "
         f"tolerance {RTOL:g} x max|g| + 4 eps max|W0|/lr; the figure is max|g - g_torch| / max|g_torch| over the "
         f"tensors whose max|g_torch| is above the second term (smaller updates are a few ulps of W); "
         f"✗ marks a failed check"),
    ]
    return lines


def markdown_table(rows: list, columns: tuple[str, ...]) -> str:
    """Rows (anything with .cells()) under `columns`; the first two columns are text, the rest right-aligned."""
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if i < 2 else "---:" for i in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def report(header: list[str], rows: list[Row], peers: tuple[str, ...]) -> str:
    text = "\n".join([f"## {header[0]}", ""] + [f"- {h}" for h in header[1:]])
    body = "\n".join(["", markdown_table(rows, columns(peers))])
    names = ["edgegrad", *(PEER_NAMES[p] for p in peers)]
    mins = ["", f"Minimum step time, {' / '.join(names)} (µs):", ""]
    mins += [f"- {r.model} `{r.scheme}`: " + " / ".join(
        f"{r.timings[k].min_us:,.1f}" if k in r.timings and not math.isnan(r.timings[k].min_us) else "–"
        for k in ("edgegrad", *peers)) for r in rows]
    notes = [f"- {r.model} `{r.scheme}`: {n}" for r in rows for n in r.notes]
    return text + "\n" + body + "\n" + "\n".join(mins + (["", "Notes:", ""] + notes if notes else [])) + "\n"


def bar_chart(rows: list[Row], peers: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = ["edgegrad", *peers]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(rows) + 2), 4.5))
    width = 0.8 / (len(engines) + 1)
    xs = np.arange(len(rows))
    for i, k in enumerate(engines):
        ys = [r.timings[k].median_us if k in r.timings else np.nan for r in rows]
        ax.bar(xs + i * width, ys, width, label=PEER_NAMES.get(k, k))
    ax.bar(xs + len(engines) * width, [r.roofline_us for r in rows], width, label="roofline bound",
           color="lightgray", hatch="//")
    ax.set_yscale("log")
    ax.set_ylabel("training step, µs (log)")
    ax.set_xticks(xs + 0.4 - width / 2)
    ax.set_xticklabels([f"{r.model}\n{r.scheme}" for r in rows], fontsize=7, rotation=30, ha="right")
    ax.legend(fontsize=8)
    ax.set_title("host training step, batch 1, 1 thread (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- command line ----------------------------------------------------------------------------------


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m edgegrad.tools.bench",
        description="edgegrad host training step vs PyTorch eager, ONNX Runtime training and TVM Relax "
                    "(1 thread, batch 1), per zoo model and update scheme, with a gradient check and a "
                    "roofline bound. The peers' venvs come from tools/setup_bench.sh.",
        epilog="example: python -m edgegrad.tools.bench --models mlp_har,resnet8 --schemes all,last:3 -o bench-out",
    )
    p.add_argument("--models", type=_csv, default=list(MODELS), help=f"comma-separated (default: {','.join(MODELS)})")
    p.add_argument("--schemes", type=_csv, default=list(SCHEMES),
                   help=f"comma-separated update schemes (default: {','.join(SCHEMES)}); a JSON file works too")
    p.add_argument("--runs", type=_csv, default=[],
                   help="extra model=scheme pairs (e.g. dscnn=bias:all,resnet8=last:3), run after the grid; "
                        "with --models none only these")
    p.add_argument("--peers", type=_csv, default=["torch", "ort", "tvm"],
                   help="engines to compare with (default torch,ort,tvm; torch is the gradient reference and "
                        "always runs; an absent venv is reported as not installed)")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                   help="time each step in process CPU time (default: what the step costs, not inflated when other "
                        "jobs time-slice this machine's cores) or wall-clock time (latency on an idle machine)")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds of timed steps per engine (default 0.5)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--min-steps", type=int, default=20, help="at least this many timed steps per round")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate for all (default 0.01)")
    p.add_argument("-o", "--out", type=Path, help="write bench.md and bench.png (bar chart) into this folder")
    p.add_argument("--markdown", type=Path, help="also write the report to this file")
    p.add_argument("--build-dir", type=Path, help="keep the builds here (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.min_steps < 1:
        p.error("--rounds and --min-steps must be >= 1")
    bad = [x for x in args.peers if x not in PEER_NAMES]
    if bad:
        p.error(f"unknown peers {', '.join(bad)} (choose from {', '.join(PEER_NAMES)})")
    if "torch" not in args.peers:
        args.peers.insert(0, "torch")
    for r in args.runs:
        if "=" not in r:
            p.error(f"--runs takes model=scheme pairs, got {r!r}")
    args.versions = set()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from models import ZOO

    models = [] if args.models == ["none"] else args.models
    grid = [(m, s) for m in models for s in args.schemes] + [tuple(r.split("=", 1)) for r in args.runs]
    unknown = sorted({m for m, _ in grid if m not in ZOO})
    if unknown:
        raise SystemExit(f"bench: unknown models {', '.join(unknown)} (zoo: {', '.join(ZOO)})")
    if not grid:
        raise SystemExit("bench: nothing to run (give --models or --runs)")
    peers, skipped = {}, {}
    for p in args.peers:
        py, why = peer_python(p)
        if py:
            peers[p] = py
        else:
            skipped[p] = why
    log = lambda *a: print(*a, file=sys.stderr, flush=True)
    for p, why in skipped.items():
        log(f"bench: {PEER_NAMES[p]} {why}")
    work = args.build_dir or Path(tempfile.mkdtemp(prefix="eg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        probe = build_peak_probe(work)
        peak = measure_peak(probe, 0.8)
        for name, scheme in grid:  # the peak is sampled between rows too: the best sample is the bound
            rows.append(bench_one(name, scheme, args, work, log, peers))
            peak = measure_peak(probe, 0.2, peak)
        peak = measure_peak(probe, 0.8, peak)
        log(f"bench: peak {peak.macs_per_s / 1e9:.1f} GMAC/s ({peak.macs_per_cycle:.1f} MACs/cycle, {peak.isa})")
        for r in rows:
            r.roofline_us = r.macs / peak.macs_per_s * 1e6
    finally:
        if args.build_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    order = tuple(peers)
    text = report(machine_header(args, peak, skipped), rows, order)
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench.md").write_text(text)
        bar_chart(rows, order, args.out / "bench.png")
    failed = [r for r in rows if not all(t.ok for t in r.timings.values())]
    return 1 if any(not r.timings["edgegrad"].ok for r in failed) else 0


def run_grid(args, header, bench_one, report, prefix: str) -> int:
    """Run bench_one over models x schemes in a scratch build folder; print (and write) the report.
    (the driver of tools/mcubench.py and tools/rvvbench.py.)"""
    log = lambda *a: print(*a, file=sys.stderr, flush=True)
    keep = getattr(args, "build_dir", None)
    work = keep or Path(tempfile.mkdtemp(prefix=prefix))
    rows = []
    try:
        for name in args.models:
            for scheme in args.schemes:
                rows.append(bench_one(name, scheme, args, work, log))
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    text = report(header, rows)
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
