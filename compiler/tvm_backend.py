"""TVM as a second kernel backend for the aarch64 targets (rpi, jetson): `--backend ours|tvm|auto`.

PockEngine's backend switching: a Conv layer's forward, input-gradient and weight-gradient kernels, and a Gemm's
products, may come from TVM instead of our NEON templates, chosen per node at compile time, never by a runtime if.

- The kernel for one node and its exact shape is written as a TVM TE expression and compiled by TVM's LLVM backend
  for the board's CPU (`-mtriple=aarch64-linux-gnu -mcpu=<board>`) in TVM's own venv, as a subprocess
  (tools/peers/tvm_kernels.py): one object per kernel, cached under build/tvm-cache/ by a hash of the shape, the
  target and the generator's source, and copied into the build folder (tvm/*.o).
- The object exports one tvm-ffi packed function; the generated tvm_kernels.c wraps each in a C function with our
  pointer arguments (runtime_c/tvm/eg_tvm.h builds the DLTensors; bias and GEMM epilogues are in C there). No TVM
  runtime library is linked: the objects reference only TVMFFIErrorSetRaisedFromCStrParts, defined in eg_tvm.c.
- Choice (`auto`): the cost of each variant is the number of aarch64 instructions one call executes under
  qemu-aarch64 (-cpu of the board), counted exactly from QEMU's execution trace as tools/aarch64bench.py does,
  single-threaded for both (the NEON kernel with EG_NUM_THREADS=1), minus a run that calls nothing. The cheaper
  one wins; the counts are cached (build/tvm-cache/costs.json) per kernel, board CPU and our kernel sources.
  `tvm` takes TVM wherever it can (no measurement); `ours` (the default) never runs TVM.
- What TVM does not take (the node keeps ours): a weight gradient of a sub-tensor update (M_upd < M or a kept input
  share), a batched MatMul.

The TVM venv: $EDGEGRAD_TVM_PYTHON, else build/venv-tvm/bin/python (`bash tools/setup_bench.sh tvm`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import EdgegradError
from .ir import Graph, Node

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "runtime_c"
WORKER = ROOT / "tools" / "peers" / "tvm_kernels.py"
TVM_RUNTIME = RUNTIME / "tvm"
BACKENDS = ("ours", "tvm", "auto")
CONV_KINDS = {"Conv": "fw", "ConvBwInput": "bw_input", "ConvBwWeight": "bw_weight"}


class TvmMissingError(EdgegradError):
    """--backend tvm without a usable TVM installation."""


def tvm_python() -> Path:
    env = os.environ.get("EDGEGRAD_TVM_PYTHON")
    return Path(env) if env else ROOT / "build" / "venv-tvm" / "bin" / "python"


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEGRAD_TVM_CACHE", ROOT / "build" / "tvm-cache"))


@functools.lru_cache(maxsize=4)
def _probe(python: str) -> str | None:
    """apache-tvm's version as installed for that interpreter (found, not imported: importing takes seconds)."""
    if not Path(python).exists():
        return None
    code = ("import importlib.util as u, importlib.metadata as m; "
            "print(m.version('apache-tvm') if u.find_spec('tvm') else '')")
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def tvm_version() -> str | None:
    """TVM's version in its venv, or None when it is not installed."""
    return _probe(str(tvm_python()))


def require_tvm() -> str:
    v = tvm_version()
    if v is None:
        raise TvmMissingError(f"--backend tvm needs apache-tvm in its own venv: {tvm_python()} does not import tvm "
                              f"(run `bash tools/setup_bench.sh tvm`, or set EDGEGRAD_TVM_PYTHON)")
    return v


# ---- one kernel --------------------------------------------------------------------------------


@dataclass
class Kernel:
    node: str
    op: str
    kind: str  # fw | bw_input | bw_weight (conv), gemm
    spec: dict  # what tools/peers/tvm_kernels.py builds
    symbol: str
    ours_call: str  # the NEON call with buffers o, i1, i2, i3, s (the cost bench)
    scratch: int  # floats of scratch our kernel takes
    sizes: list[int]  # floats of o, i1, i2, i3


def _gemm_spec(g: Graph, n: Node) -> dict | None:
    from .lower import bcast_strides
    a, b = n.inputs[0], n.inputs[1]
    c = n.inputs[2] if len(n.inputs) > 2 else ""
    at = n.attrs
    ta, tb = at.get("transA", 0), at.get("transB", 0)
    if len(g.tensors[a].shape) != 2 or len(g.tensors[b].shape) != 2:
        return None
    M, N = g.tensors[n.outputs[0]].shape
    K = g.tensors[a].shape[0] if ta else g.tensors[a].shape[1]
    csm, csn = bcast_strides(g.tensors[c].shape, (M, N)) if c else (0, 0)
    return {"kind": "gemm", "M": M, "N": N, "K": K, "transA": ta, "transB": tb, "alpha": float(at.get("alpha", 1.0)),
            "beta": float(at.get("beta", 1.0)) if c else 0.0, "c_sm": csm, "c_sn": csn, "has_c": bool(c)}


def kernel_for(g: Graph, n: Node, target_key: dict) -> Kernel | None:
    """The TVM kernel that could replace node n's NEON kernel, or None when TVM does not take it."""
    from .kernels_tiled import conv_scratch_floats
    from .passes.select_kernels import conv_sizes
    if n.op in CONV_KINDS:
        kind = CONV_KINDS[n.op]
        d = conv_sizes(g, n)
        if kind == "bw_weight" and (d["M_upd"] != d["M"] or d["Cg_upd"] != d["C"] // d["G"] or d["Cx"] != d["C"]):
            return None
        base = {k: d[k] for k in ("N", "C", "H", "W", "M", "OH", "OW", "KH", "KW", "sh", "sw", "pt", "pl", "dh",
                                  "dw", "G")}
        spec = {"kind": "conv_" + kind, **base}
        dims = ", ".join(str(base[k]) for k in base)
        x, y, w = d["N"] * d["C"] * d["H"] * d["W"], d["N"] * d["M"] * d["OH"] * d["OW"], \
            d["M"] * (d["C"] // d["G"]) * d["KH"] * d["KW"]
        scratch = conv_scratch_floats(kind, *base.values())
        if kind == "fw":
            call, sizes = f"conv2d_f32_fw_neon(o, i1, i2, i3, {dims}, s);", [y, x, w, d["M"]]
        elif kind == "bw_input":
            call, sizes = f"conv2d_f32_bw_input_neon(o, i1, i2, {dims}, s);", [x, y, w, 1]
        else:
            call = f"conv2d_f32_bw_weight_neon(o, i1, i2, {dims}, {d['M']}, {d['C'] // d['G']}, {d['C']}, s);"
            sizes = [w, y, x, 1]
    elif n.op == "Gemm":
        spec = _gemm_spec(g, n)
        if spec is None:
            return None
        M, N, K = spec["M"], spec["N"], spec["K"]
        from .lower import cfloat
        call = (f"gemm_f32_neon(o, i1, i2, {'i3' if spec['has_c'] else 'NULL'}, 1, {M}, {N}, {K}, {spec['transA']}, "
                f"{spec['transB']}, {cfloat(spec['alpha'])}, {cfloat(spec['beta'])}, 0, 0, {spec['c_sm']}, "
                f"{spec['c_sn']});")
        c_size = (M - 1) * spec["c_sm"] + (N - 1) * spec["c_sn"] + 1
        sizes, scratch = [M * N, M * K, K * N, c_size], 0
    else:
        return None
    key = json.dumps({"spec": spec, "target": target_key, "worker": _worker_hash(), "tvm": tvm_version()},
                     sort_keys=True)
    symbol = f"eg_tvm_{spec['kind']}_{hashlib.sha1(key.encode()).hexdigest()[:12]}"
    if n.op == "Gemm":  # the backward products are Gemm nodes too (ops.gemm_grad)
        kind = "fw" if g.nodes.index(n) < g.meta.get("n_forward", len(g.nodes)) else "bw"
    return Kernel(n.name, n.op, kind, spec, symbol, call, scratch, sizes)


@functools.lru_cache(maxsize=1)
def _worker_hash() -> str:
    return hashlib.sha1(WORKER.read_bytes()).hexdigest()[:12]


def _ours_hash() -> str:
    h = hashlib.sha1()
    for f in [*sorted(RUNTIME.glob("eg_*.[ch]")), *sorted((RUNTIME / "neon").glob("eg_*.[ch]")),
              *sorted(TVM_RUNTIME.glob("eg_*.[ch]"))]:
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


# ---- wrappers: C with our pointer arguments around the packed functions --------------------


def _args(k: Kernel) -> tuple[list[str], list[list[int]]]:
    """(C parameter list, TVM tensor shapes in the order the TVM function takes them: inputs, then the output)."""
    s = k.spec
    if s["kind"].startswith("conv"):
        x = [s["N"], s["C"], s["H"], s["W"]]
        y = [s["N"], s["M"], s["OH"], s["OW"]]
        w = [s["M"], s["C"] // s["G"], s["KH"], s["KW"]]
        if s["kind"] == "conv_fw":
            return ["float *y", "const float *x", "const float *w", "const float *b"], [x, w, y]
        if s["kind"] == "conv_bw_input":
            return ["float *dx", "const float *dy", "const float *w"], [y, w, x]
        return ["float *dw", "const float *dy", "const float *x"], [y, x, w]
    a = [s["K"], s["M"]] if s["transA"] else [s["M"], s["K"]]
    b = [s["N"], s["K"]] if s["transB"] else [s["K"], s["N"]]
    return ["float *y", "const float *a", "const float *b", "const float *c"], [a, b, [s["M"], s["N"]]]


def wrapper_sources(kernels: list[Kernel]) -> dict[str, str]:
    """tvm_kernels.h / tvm_kernels.c: one C function per TVM kernel, same pointers as the call in model.c."""
    h = ["/* tvm_kernels.h: the TVM-generated kernels of this build (edgegrad --backend tvm|auto). */",
         "#ifndef TVM_KERNELS_H", "#define TVM_KERNELS_H", ""]
    c = ["/* tvm_kernels.c: C entry points of the TVM kernels in tvm/ (one object each; generated by edgegrad;",
         " * TVM's packed calling convention is bridged by runtime_c/tvm/eg_tvm.c). */",
         "#include <stddef.h>", "#include \"eg_tvm.h\"", "#include \"tvm_kernels.h\"", ""]
    for k in kernels:
        params, shapes = _args(k)
        names = [p.split("*")[1] for p in params]
        proto = f"void {k.symbol}({', '.join(params)})"
        h.append(f"/* {k.op} {k.kind} of {k.node} */")
        h.append(proto + ";")
        s = k.spec
        flat = ", ".join(str(v) for sh in shapes for v in sh)
        order = names[1:len(shapes)] + names[:1]
        c += [f"int __tvm_ffi_{k.symbol}(void *self, const EgTvmAny *args, int32_t num_args, EgTvmAny *ret);", "",
              f"/* {k.op} {k.kind} of {k.node} */", proto, "{",
              f"    static const int64_t shape[] = {{{flat}}};",
              f"    static const int ndim[] = {{{', '.join(str(len(sh)) for sh in shapes)}}};",
              f"    void *const data[] = {{{', '.join(f'(void *){n}' for n in order)}}};",
              f"    eg_tvm_call(\"{k.symbol}\", __tvm_ffi_{k.symbol}, {len(shapes)}, data, ndim, shape);"]
        if s["kind"] == "conv_fw":
            c.append(f"    if (b)\n        eg_tvm_add_bias(y, b, {s['N']}, {s['M']}, {s['OH'] * s['OW']});")
        elif s["kind"] == "gemm" and (s["alpha"] != 1.0 or s["has_c"]):
            from .lower import cfloat
            c.append(f"    eg_tvm_gemm_epilogue(y, c, {s['M']}, {s['N']}, {cfloat(s['alpha'])}, {cfloat(s['beta'])}, "
                     f"{s['c_sm']}, {s['c_sn']});")
        else:
            c += [f"    (void){n};" for n in names[len(shapes):]]
        c += ["}", ""]
    h += ["", "#endif /* TVM_KERNELS_H */", ""]
    return {"tvm_kernels.h": "\n".join(h), "tvm_kernels.c": "\n".join(c)}


def call_text(n: Node, ptrs: list[str]) -> str:
    """The statement model.c makes for a node select_kernels gave to TVM (lower.py)."""
    return f"{n.attrs['tvm']['symbol']}({', '.join(ptrs)});"


# ---- building the objects --------------------------------------------------------------------


def llvm_target(mcpu: str) -> dict:
    """TVM target for a board's -mcpu (`cortex-a76+fp16` -> mcpu cortex-a76, mattr +fp16)."""
    cpu, *feats = mcpu.split("+")
    t = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": cpu}
    if feats:
        t["mattr"] = ["+" + f for f in feats]
    return t


def build_objects(kernels: list[Kernel], target: dict, log=lambda *a: None) -> dict[str, Path]:
    """symbol -> cached object path; builds the missing ones in one TVM subprocess."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    objs = {k.symbol: cache / f"{k.symbol}.o" for k in kernels}
    missing = [k for k in {k.symbol: k for k in kernels}.values() if not objs[k.symbol].exists()]
    if missing:
        log(f"[edgegrad] tvm: building {len(missing)} kernel object(s) for {target['mcpu']}")
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            job = Path(tmp) / "job.json"
            job.write_text(json.dumps({"target": target, "out": str(cache),
                                       "kernels": [{"symbol": k.symbol, **k.spec} for k in missing]}))
            proc = subprocess.run([str(tvm_python()), str(WORKER), str(job)], capture_output=True, text=True,
                                  check=False, env=dict(os.environ, TVM_NUM_THREADS="1"))
            if proc.returncode != 0:
                raise EdgegradError(f"TVM failed to build kernels ({WORKER.name}): "
                                    f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return objs


# ---- the cost of both variants: guest instructions under qemu-aarch64 -----------------------


def _bench_source(kernels: list[Kernel]) -> str:
    """One program that calls every kernel once, ours then TVM's, each call between two eg_bench_mark() calls."""
    big = [max(k.sizes[i] for k in kernels) for i in range(4)] + [max(1, max(k.scratch for k in kernels))]
    calls = []
    for k in kernels:
        params, _ = _args(k)
        calls += [f"    {k.ours_call}", "    eg_bench_mark();",
                  f"    {k.symbol}({', '.join(['o', 'i1', 'i2', 'i3'][:len(params)])});", "    eg_bench_mark();"]
    return "\n".join([
        "/* cost bench of edgegrad --backend auto: each kernel once, ours then TVM's; the instructions between",
        " * two executions of eg_bench_mark are one call's (the first pair: the marker's own overhead). */",
        "#include <stdio.h>", "#include <stdlib.h>", "#include \"eg_kernels.h\"", "#include \"eg_neon.h\"",
        "#include \"tvm_kernels.h\"", "",
        "__attribute__((noinline)) void eg_bench_mark(void)", "{", "    __asm__ volatile(\"\" ::: \"memory\");", "}", "",
        "static float *buffer(long n)", "{", "    float *p = malloc((size_t)n * sizeof(float));",
        "    for (long i = 0; i < n; i++)", "        p[i] = (float)((i * 7) % 13 - 6) * 0.01f;", "    return p;", "}", "",
        "int main(void)", "{",
        *[f"    float *{n} = buffer({v});" for n, v in zip(("o", "i1", "i2", "i3", "s"), big)],
        "    (void)s;", "    eg_bench_mark();", "    eg_bench_mark();", *calls,
        "    printf(\"%g\\n\", (double)o[0]);", "    return 0;", "}", ""])


def count_segments(trace_path: Path, marker: int) -> list[int]:
    """Guest instructions between consecutive executions of the block at `marker` (what ran before
    the first is the program's start)."""
    from .tools.aarch64bench import count_segments as segments
    return segments(trace_path, marker)[1:-1]


def measure(kernels: list[Kernel], objs: dict[str, Path], mcpu: str, qemu_cpu: str, log=lambda *a: None
            ) -> dict[str, tuple[int, int]]:
    """symbol -> (our NEON kernel's instructions, TVM's) for one call, cached in costs.json."""
    from .tools.aarch64bench import TRACE_FLAGS
    path = cache_dir() / "costs.json"
    try:
        costs = json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:  # a cache is only a cache
        costs = {}
    ours = _ours_hash()
    key = {k.symbol: f"{k.symbol}|{mcpu}|{qemu_cpu}|{ours}" for k in kernels}
    todo = [k for k in {k.symbol: k for k in kernels}.values() if key[k.symbol] not in costs]
    if todo:
        log(f"[edgegrad] tvm: counting instructions of {len(todo)} kernel(s), ours and TVM's, under qemu-aarch64")
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            for name, text in wrapper_sources(todo).items():
                (t / name).write_text(text)
            (t / "bench.c").write_text(_bench_source(todo))
            exe = t / "bench"
            from .pipeline import kernel_sources
            srcs = [*kernel_sources("rpi")[0], TVM_RUNTIME / "eg_tvm.c",
                    t / "tvm_kernels.c", t / "bench.c", *[objs[k.symbol] for k in todo]]
            proc = subprocess.run(["aarch64-linux-gnu-gcc", "-std=c99", "-O3", f"-mcpu={mcpu}", "-fno-math-errno",
                                   "-static", "-pthread", "-DEG_NUM_THREADS=1", f"-I{RUNTIME}", f"-I{RUNTIME / 'neon'}",
                                   f"-I{TVM_RUNTIME}", f"-I{t}", *map(str, srcs), "-o", str(exe), "-lm"],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise EdgegradError(f"the TVM cost bench did not build: {proc.stderr.strip()[-2000:]}")
            nm = subprocess.run(["aarch64-linux-gnu-nm", str(exe)], capture_output=True, text=True, check=True).stdout
            marker = next(int(ln.split()[0], 16) for ln in nm.splitlines() if ln.endswith(" eg_bench_mark"))
            fifo = t / "trace"
            os.mkfifo(fifo)
            p = subprocess.Popen(["qemu-aarch64", *TRACE_FLAGS, "-D", str(fifo), "-cpu", qemu_cpu, str(exe)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            seg = count_segments(fifo, marker)
            if p.wait() != 0 or len(seg) != 1 + 2 * len(todo):
                raise EdgegradError(f"the TVM cost bench failed under qemu-aarch64 ({p.returncode}, "
                                    f"{len(seg)} segments): {p.stderr.read()[-500:]}")
            overhead = seg[0]
            for i, k in enumerate(todo):
                costs[key[k.symbol]] = [seg[1 + 2 * i] - overhead, seg[2 + 2 * i] - overhead]
        tmp_path = path.with_name(f".costs.{os.getpid()}.json")  # replaced whole: parallel compiles may share it
        tmp_path.write_text(json.dumps(costs, indent=0, sort_keys=True))
        tmp_path.replace(path)
    return {k.symbol: tuple(costs[key[k.symbol]]) for k in kernels}


# ---- the pass: select_kernels calls this after giving the aarch64 nodes their NEON kernels -----


def assign(g: Graph, target: str, board: str | None, backend: str, log=lambda *a: None) -> Graph:
    """Give nodes to TVM per `backend`; records every candidate in g.meta["backend"] (inspect prints it)."""
    from .build import load_target, resolve_board
    if backend == "ours":
        return g
    version = tvm_version()
    if version is None:
        if backend == "tvm":
            require_tvm()
        g.meta["backend"] = {"mode": backend, "tvm": None, "note": "TVM not installed: every kernel is ours",
                             "choices": []}
        log("[edgegrad] --backend auto: TVM not installed, our kernels everywhere")
        return g
    spec = load_target(target)
    board_name, b = resolve_board(spec, board)
    target_key = llvm_target(b["mcpu"])
    cands = [(n, kernel_for(g, n, target_key)) for n in g.nodes if n.attrs.get("kernel") == "neon"]
    kernels = [k for _, k in cands if k is not None]
    objs = build_objects(kernels, target_key, log) if kernels else {}
    costs = measure(kernels, objs, b["mcpu"], b["qemu_cpu"], log) if backend == "auto" and kernels else {}
    choices = []
    for n, k in cands:
        if k is None:
            if n.op in CONV_KINDS or n.op == "Gemm":
                choices.append({"node": n.name, "op": n.op, "kind": CONV_KINDS.get(n.op, "gemm"), "chosen": "ours",
                                "why": "TVM does not take it (sub-tensor weight gradient or batched product)"})
            continue
        ours, tvm = costs.get(k.symbol, (None, None))
        use_tvm = backend == "tvm" or tvm < ours
        row = {"node": n.name, "op": n.op, "kind": k.kind, "shape": _shape_text(k.spec), "ours_instr": ours,
               "tvm_instr": tvm, "chosen": "tvm" if use_tvm else "ours",
               "why": "--backend tvm" if backend == "tvm" else "fewer instructions (qemu-aarch64 count, 1 thread)"}
        choices.append(row)
        if use_tvm:
            n.attrs["kernel"] = "tvm"
            n.attrs["tvm"] = {"symbol": k.symbol, "object": str(objs[k.symbol])}
            if len(n.outputs) > 1 and g.tensors[n.outputs[-1]].role == "scratch":  # TVM needs no scratch
                del g.tensors[n.outputs.pop()]
    g.meta["backend"] = {"mode": backend, "tvm": version, "board": board_name, "llvm_target": target_key,
                         "choices": choices, "kernels": {k.symbol: k for k in kernels}}
    n_tvm = sum(c["chosen"] == "tvm" for c in choices)
    log(f"[edgegrad] --backend {backend}: {n_tvm} of {len(choices)} conv/gemm kernels from TVM {version}")
    return g


def _shape_text(s: dict) -> str:
    if s["kind"] == "gemm":
        return f"{s['M']}x{s['N']}x{s['K']}" + (" tA" if s["transA"] else "") + (" tB" if s["transB"] else "")
    return (f"{s['C']}->{s['M']} {s['H']}x{s['W']} k{s['KH']}x{s['KW']} s{s['sh']}"
            + (f" g{s['G']}" if s["G"] > 1 else ""))


def emit(g: Graph, out: Path) -> list[Path]:
    """Write tvm_kernels.{c,h} and copy the objects into the build folder; returns the sources to link."""
    meta = g.meta.get("backend") or {}
    used = {n.attrs["tvm"]["symbol"] for n in g.nodes if n.attrs.get("kernel") == "tvm"}
    if not used:
        return []
    kernels = [meta["kernels"][s] for s in sorted(used)]
    for name, text in wrapper_sources(kernels).items():
        (out / name).write_text(text)
    (out / "tvm").mkdir(exist_ok=True)
    objs = []
    for n in g.nodes:
        if n.attrs.get("kernel") == "tvm" and not (out / "tvm" / f"{n.attrs['tvm']['symbol']}.o").exists():
            shutil.copyfile(n.attrs["tvm"]["object"], out / "tvm" / f"{n.attrs['tvm']['symbol']}.o")
    objs = sorted((out / "tvm").glob("*.o"))
    return [TVM_RUNTIME / "eg_tvm.c", out / "tvm_kernels.c", *objs]


def summary(g: Graph) -> dict | None:
    """The JSON-able record for build.json (inspect prints it)."""
    meta = g.meta.get("backend")
    if not meta:
        return None
    return {k: v for k, v in meta.items() if k != "kernels"}
