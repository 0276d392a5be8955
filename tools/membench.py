"""Peak training memory: edgegrad's mcu build against PyTorch, per model and update scheme.

    python -m edgegrad.tools.membench                                  # ResNet-8 and MobileNetV2-w0.35@128
    python -m edgegrad.tools.membench --models resnet8 --schemes all,plan --markdown mem.md
    python -m edgegrad.tools.membench --recompute          # 1-bit ReLU masks + recompute on the zoo: arena, LB

For each (model, scheme):

* edgegrad: the mcu build's SRAM, predicted before the build (compiler/memory.py: arena of
  activations + gradients, trainable params, optimizer state, stack, runtime buffers) and read
  from the linked ELF (.data + .bss + .stack), with the arena against its lower bound (max live
  bytes). The ELF is linked with an SRAM budget large enough for the scheme (so "all" links too);
  whether the scheme fits the mcu's 256 KiB is a column of its own, and for those that do not
  the compiler's refusal (with each part's bytes) is listed under the table.
* PyTorch: a fresh Python process per row runs the bench's PyTorch peer (tools/peers/torch_train.py: the
  zoo's torch module, BN fused, weights from the
  ONNX, 1 thread), sets requires_grad on what the scheme trains (a fractional share trains the
  whole tensor's gradient and masks it, as PyTorch has no partial update), runs one warm-up SGD
  step (batch 1, cross-entropy), resets the kernel's peak-RSS counter (/proc/self/clear_refs, 5),
  runs five more steps, each after the reset, and reports the median of their peak RSS (VmHWM)
  minus the RSS before the step (min and max are listed under the table): the memory
  the training step itself needed on top of the loaded model: activations kept for the backward,
  gradients, workspaces ("RSS peak"; it varies by ~100-300 KiB from step to step). As the RSS
  moves in pages and pools, one more step runs under torch.profiler(profile_memory=True): the
  peak of the running sum of its allocator's [memory] events ("alloc peak", deterministic). Their
  counterpart is edgegrad's arena (activations + gradients; the trainable weights, also in
  "SRAM", are the loaded model on the PyTorch side): the last column is alloc peak / arena. glibc is told to mmap blocks of
  64 KiB and more and to trim its heap at once (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_),
  else the second step reuses freed pages and RSS does not move. The process's RSS is listed too.
* ``plan``: the scheme ``edgegrad plan`` finds for the model's budget (``--budget``, default
  resnet8=256K, mobilenetv2_w035_128=1536K with a 2 MiB flash: in fp32 its weights alone are
  1.6 MB, so no scheme fits 256 KiB / 1 MiB before int8), with the first-order gain proxy on
  random data (these models have no pretraining data in the zoo).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from edgegrad.cli import _size
from edgegrad.errors import BudgetError
from edgegrad.pipeline import ROOT, CompileConfig, compile_model, frontend_graph
from edgegrad.plan import search, write_scheme
from edgegrad.scheme import layers
from edgegrad.tools.bench import TORCH_MODULES, _csv, bench_input, markdown_table

MODELS = ("resnet8", "mobilenetv2_w035_128")
SCHEMES = ("all", "last:2", "bias:all", "plan")
BUDGET = {"resnet8": 256 * 1024, "mobilenetv2_w035_128": 1536 * 1024}
PLAN_FLASH = {"resnet8": 1024 * 1024, "mobilenetv2_w035_128": 2 * 1024 * 1024}
MCU_SRAM = 256 * 1024
COLUMNS = ("model", "scheme", "tensors", "arena KiB", "arena/LB", "SRAM pred KiB", "SRAM ELF KiB", "fits 256 KiB",
           "PyTorch alloc peak KiB", "PyTorch RSS peak KiB", "PyTorch RSS MiB",
           "PyTorch alloc / arena")

TORCH_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1] + "/tools/peers")
from torch_train import TorchPeer  # the bench's PyTorch peer: zoo module, BN fused, 1 thread, SGD

def status():
    f = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
    return {k: int(f[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}

peer = TorchPeer()
peer.setup(json.load(open(sys.argv[2])))
peer.step()  # warm-up: one-time allocations (autograd engine, allocator caches) are not the step's
deltas = []
for _ in range(5):
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = status()["VmRSS"]
    loss = peer.step()
    after = status()
    deltas.append(after["VmHWM"] - before)
deltas.sort()
# The allocator's own account of the same step (deterministic): the profiler's [memory] events
# (+bytes allocated, -bytes freed) in time order; the peak of their running sum.
from torch.profiler import ProfilerActivity, profile
with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
    peer.step()
cur = alloc_peak = 0
for e in sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                key=lambda e: e.start_ns()):
    cur += e.nbytes()
    alloc_peak = max(alloc_peak, cur)
print(json.dumps({"step_peak": deltas[2], "min": deltas[0], "max": deltas[-1], "rss": after["VmRSS"],
                  "alloc_peak": alloc_peak, "loss": loss}))
"""


@dataclass
class Row:
    model: str
    scheme: str
    tensors: int = 0
    arena: int = 0
    lower_bound: int = 0
    sram_pred: int = 0
    sram_elf: int | None = None
    fits: bool = False
    torch_step: int | None = None
    torch_rss: int | None = None
    torch_alloc: int | None = None
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        k = lambda n: "—" if n is None else f"{n / 1024:,.1f}"
        ratio = f"{self.torch_alloc / max(1, self.arena):.1f}x" if self.torch_alloc else "—"
        return [self.model, f"`{self.scheme}`", str(self.tensors), k(self.arena),
                f"{self.arena / max(1, self.lower_bound):.2f}", k(self.sram_pred), k(self.sram_elf),
                "yes" if self.fits else "no", k(self.torch_alloc), k(self.torch_step),
                "—" if self.torch_rss is None else f"{self.torch_rss / 2**20:,.0f}", ratio]


# glibc keeps freed blocks in its heap, so a second step reuses the first one's pages and RSS would
# not move: allocations of 64 KiB and more go to mmap (unmapped on free) and the heap top is
# trimmed at once, so RSS follows the live bytes of the step (small allocations stay pooled).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0", "OMP_NUM_THREADS": "1"}


def torch_spec(model: str, scheme: str, work: Path) -> Path:
    """The SPEC.json of tools/peers/torch_train.py (as tools/bench.py writes it): same input, label 0."""
    from models import ZOO
    g, updates = frontend_graph(ZOO[model].path, CompileConfig(update=scheme))
    np.save(work / "input.npy", bench_input(tuple(g.tensors[g.inputs[0]].shape)))
    np.savez(work / "weights.npz", **{t: np.ascontiguousarray(v.data, np.float32) for t, v in g.tensors.items()
                                       if v.role == "param" and v.data is not None})
    trained = {t: {"axis": u.axis, "rows": u.rows(g.tensors[t].shape)} for t, u in updates.items()}
    spec = {"model": str(ZOO[model].path), "trained": trained, "lr": 0.01, "input": str(work / "input.npy"),
            "label": 0, "weights": str(work / "weights.npz"), "layers": layers(g),
            "torch_module": TORCH_MODULES[model], "zoo": model}
    path = work / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def torch_memory(model: str, scheme: str, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    spec = torch_spec(model, scheme, work)
    out = subprocess.run([sys.executable, "-c", TORCH_CHILD, str(ROOT), str(spec)], capture_output=True,
                         text=True, timeout=600, check=False, env={**os.environ, **MALLOC_ENV})
    if out.returncode != 0:
        raise RuntimeError(f"PyTorch child for {model} {scheme} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_one(model: str, scheme: str, label: str, work: Path, elf: bool, log) -> Row:
    from models import ZOO
    path = ZOO[model].path
    row = Row(model, label)
    out = work / f"{model}_{label.replace(':', '_').replace('@', '_')}"
    big = CompileConfig(target="mcu", update=scheme, quiet=True, build=False, sram_budget=1 << 40,
                        flash_budget=1 << 40)
    c = compile_model(path, out, big)
    pred = c.info["predicted"]
    row.tensors, row.arena, row.lower_bound = len(c.updates), c.info["arena_bytes"], c.info["arena_lower_bound"]
    row.sram_pred = pred["sram_total"]
    try:
        compile_model(path, out, CompileConfig(target="mcu", update=scheme, quiet=True, build=False,
                                               flash_budget=1 << 40))
        row.fits = True
    except BudgetError as e:
        row.notes.append(f"refused by the 256 KiB mcu: {e}")
    if elf:
        # Link with room for this scheme, rounded up to 64 KiB (the linker script takes the budgets).
        sram = -(-max(row.sram_pred, MCU_SRAM) // 65536) * 65536
        flash = -(-max(pred["flash_total"], 1 << 20) // 65536) * 65536 + (1 << 20)
        built = compile_model(path, out, CompileConfig(target="mcu", update=scheme, quiet=True, sram_budget=sram,
                                                       flash_budget=flash))
        row.sram_elf = built.info["sections"]["sram_used"]
    t = torch_memory(model, scheme, out.with_name(out.name + "_torch"))
    row.torch_step, row.torch_rss, row.torch_alloc = t["step_peak"], t["rss"], t["alloc_peak"]
    row.notes.append(f"PyTorch step peak over 5 steps: min {t['min'] / 1024:,.0f} / median {t['step_peak'] / 1024:,.0f}"
                     f" / max {t['max'] / 1024:,.0f} KiB")
    log(f"[membench] {model} {label}: SRAM pred {row.sram_pred} B, ELF {row.sram_elf} B, arena {row.arena} / LB "
        f"{row.lower_bound}; PyTorch step peak {row.torch_step} B (RSS {row.torch_rss} B)")
    return row


def planned(model: str, budget: int, work: Path, log) -> tuple[Path, str]:
    from models import ZOO
    t0 = time.time()
    plan = search(ZOO[model].path, budget, flash_budget=max(PLAN_FLASH.get(model, 1 << 20), 1 << 20))
    p = work / f"{model}_plan.json"
    write_scheme(plan.scheme, p)
    note = (f"{model} `plan@{budget // 1024}K` ({time.time() - t0:.1f} s, proxy gain on random data): "
            + json.dumps(plan.scheme))
    log(f"[membench] {note}")
    return p, note


RC_MODELS = ("mlp_har", "cnn_fashion", "dscnn", "resnet8", "mobilenetv2_w035_96", "mobilenetv2_w035_128")
RC_COLUMNS = ("model", "scheme", "arena KiB", "LB KiB", "arena KiB, recompute", "arena KiB, masks",
              "arena KiB, masks + recompute", "LB KiB, masks + recompute", "saved", "1-bit masks",
              "recomputed tensors", "extra MACs")


@dataclass
class RcRow:
    model: str
    scheme: str
    cells_: list[str]

    def cells(self) -> list[str]:
        return [self.model, f"`{self.scheme}`"] + self.cells_


def recompute_table(models: list[str], schemes: list[str], log) -> str:
    """The relu_mask and recompute passes on the zoo: the mcu arena and its lower bound without them,
    with recompute alone, with the 1-bit masks alone and with both (the mcu default)."""
    import copy

    from edgegrad.autodiff import TrainConfig
    from edgegrad.cost import graph_macs
    from edgegrad.passes.plan_memory import plan_memory
    from edgegrad.pipeline import training_steps

    from models import ZOO
    rows = []
    for m in models:
        g0, _ = frontend_graph(ZOO[m].path, CompileConfig())
        for s in schemes:
            _, ups = frontend_graph(ZOO[m].path, CompileConfig(update=s))
            graphs = {}
            for mask, rc in ((False, False), (False, True), (True, False), (True, True)):
                g = copy.deepcopy(g0)
                for _, step in training_steps(ups, TrainConfig(), CompileConfig(target="mcu", relu_mask=mask,
                                                                                 recompute=rc)):
                    g = step(g)
                graphs[mask, rc] = (g, plan_memory(g))
            (g_plain, p0), (_, p_rc), (_, p_m), (r, p1) = (graphs[k] for k in sorted(graphs))
            extra = graph_macs(r) - graph_macs(g_plain)
            rows.append(RcRow(m, s, [f"{p0.arena_bytes / 1024:,.1f}", f"{p0.lower_bound / 1024:,.1f}",
                                     f"{p_rc.arena_bytes / 1024:,.1f}", f"{p_m.arena_bytes / 1024:,.1f}",
                                     f"{p1.arena_bytes / 1024:,.1f}", f"{p1.lower_bound / 1024:,.1f}",
                                     f"{100 * (1 - p1.arena_bytes / max(1, p0.arena_bytes)):.0f}%",
                                     str(len(r.meta.get("relu_masks", []))),
                                     str(len(r.meta.get("recomputed", []))),
                                     f"+{100 * extra / max(1, graph_macs(g_plain)):.1f}% ({extra:,})"]))
            log(f"[membench] recompute {m} {s}: arena {p0.arena_bytes} -> {p1.arena_bytes} B")
    return markdown_table(rows, RC_COLUMNS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m edgegrad.tools.membench",
        description="Peak training memory: edgegrad mcu SRAM (predicted and ELF) vs PyTorch's peak RSS of one "
                    "training step, per model and update scheme.",
        epilog="example: python -m edgegrad.tools.membench --models resnet8 --schemes all,bias:all,plan "
               "--markdown mem.md")
    p.add_argument("--models", type=_csv, default=list(MODELS), help=f"comma-separated (default: {','.join(MODELS)})")
    p.add_argument("--schemes", type=_csv, default=list(SCHEMES),
                   help=f"comma-separated update schemes; 'plan' = edgegrad plan at the model's budget "
                        f"(default: {','.join(SCHEMES)})")
    p.add_argument("--budget", type=_csv, default=[], help="MODEL=SIZE budgets for 'plan' "
                   "(default: resnet8=256K,mobilenetv2_w035_128=1536K)")
    p.add_argument("--no-elf", action="store_true", help="skip linking the mcu ELF (prediction only; faster)")
    p.add_argument("--recompute", action="store_true",
                   help="instead: the 1-bit ReLU mask and recompute passes on the zoo (mcu arena and lower bound "
                        "without them, with each and with both, extra MACs of the training step), for --models "
                        "(default: the whole zoo) x --schemes (default: all,last:2,bias:all)")
    p.add_argument("--markdown", type=Path, help="also write the table as markdown to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    budgets = dict(BUDGET)
    for v in a.budget:
        m, _, b = v.partition("=")
        budgets[m] = _size(b)
    rows, notes = [], []
    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    if a.recompute:
        models = a.models if a.models != list(MODELS) else list(RC_MODELS)
        schemes = a.schemes if a.schemes != list(SCHEMES) else ["all", "last:2", "bias:all"]
        text = recompute_table(models, schemes, log) + "\n"
        print(text)
        if a.markdown:
            a.markdown.write_text(text)
        return 0
    with tempfile.TemporaryDirectory(prefix="eg-membench-") as work:
        work = Path(work)
        for model in a.models:
            for scheme in a.schemes:
                label = scheme
                if scheme == "plan":
                    path, note = planned(model, budgets.get(model, MCU_SRAM), work, log)
                    notes.append(note)
                    scheme, label = str(path), f"plan@{budgets.get(model, MCU_SRAM) // 1024}K"
                row = bench_one(model, scheme, label, work, not a.no_elf, log)
                rows.append(row)
                notes += [f"{model} `{label}`: {n}" for n in row.notes]
    text = "\n".join([markdown_table(rows, COLUMNS), ""] + [f"- {n}" for n in notes]) + "\n"
    print(text)
    if a.markdown:
        a.markdown.write_text(text)
        print(f"wrote {a.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
