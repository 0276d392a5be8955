"""MCU benchmark: every zoo model x update scheme compiled for the bare-metal RV32 target, booted in
QEMU, trained for a few steps on random data.

    python -m edgegrad.tools.mcubench                                  # every model x scheme
    python -m edgegrad.tools.mcubench --models mlp_har,resnet8 --schemes last:2 --markdown mcu.md
    python -m edgegrad.tools.mcubench --models mobilenetv2_w035_128 --budget-sram 4M --budget-flash 2M

For each (model, scheme) it reports

* instructions per training step: minstret around eg_train_step (QEMU runs with -icount shift=0,
  so the count is exact and deterministic), the median over the steps (the spread is noted if
  the steps differ);
* training MACs per step (Conv/Gemm forward and backward on the training graph plus one per
  updated element, as tools/bench.py counts them) and MACs per instruction;
* SRAM: the compiler's prediction (compiler/memory.py) vs the ELF (.data + .bss + .stack) vs what
  the step really touched (.data + .bss + the painted-stack high-water mark);
* flash: predicted vs the ELF (.text + .rodata + .data).

A (model, scheme) that does not fit the budgets (default: the mcu's 256 KiB SRAM / 1 MiB flash)
is not an error here: its row says "does not fit" with the SRAM and flash it would need (parts
over budget marked "!"), and the compile error is listed under the table.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import numpy as np
from edgegrad import __version__
from edgegrad.build import load_target
from edgegrad.cli import _size
from edgegrad.errors import BudgetError
from edgegrad.pipeline import ROOT, CompileConfig, compile_model
from edgegrad.tools.bench import _csv, markdown_table, run_grid, training_step_macs

MODELS = ("mlp_har", "cnn_fashion", "dscnn", "resnet8", "mobilenetv2_w035_96", "mobilenetv2_w035_128")
SCHEMES = ("last:2", "bias:all", "weights:last:2@0.5", "all")
COLUMNS = ("model", "scheme", "instr/step", "MACs/step", "MACs/instr", "SRAM pred KiB", "SRAM ELF KiB",
           "SRAM used KiB", "stack used/size B", "flash pred KiB", "flash ELF KiB", "host s")
DASH = "—"


@dataclass
class Row:
    model: str
    scheme: str
    macs: int
    sram_pred: int
    flash_pred: int
    instret: int | None = None        # median over the steps; None: did not fit
    sram_elf: int | None = None       # .data + .bss + .stack
    data_bss: int | None = None
    stack_size: int | None = None
    stack_used: int | None = None     # painted-stack high-water mark
    flash_elf: int | None = None
    seconds: float = 0.0
    does_not_fit: str | None = None   # "does not fit: SRAM x KiB / flash y KiB"
    losses: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        k = lambda n: DASH if n is None else f"{n / 1024:,.1f}"
        head = [self.model, f"`{self.scheme}`"]
        if self.does_not_fit:
            return head + [self.does_not_fit, f"{self.macs:,}", DASH, k(self.sram_pred), DASH, DASH, DASH,
                           k(self.flash_pred), DASH, f"{self.seconds:.1f}"]
        return head + [f"{self.instret:,}", f"{self.macs:,}", f"{self.macs / max(self.instret, 1):.3f}",
                       k(self.sram_pred), k(self.sram_elf), k(self.data_bss + self.stack_used),
                       f"{self.stack_used:,}/{self.stack_size:,}", k(self.flash_pred), k(self.flash_elf),
                       f"{self.seconds:.1f}"]


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def _needs(message: str, part: str) -> int | None:
    """Bytes a part needs, from either budget error (compiler/memory.py before the build, or
    compiler/build.py from the linked ELF)."""
    m = (re.search(rf"{part} needs [^;]*?\((\d+) B\)", message, re.IGNORECASE)
         or re.search(rf"{part} needs (\d+) bytes", message, re.IGNORECASE))
    return int(m.group(1)) if m else None


def bench_one(name: str, scheme: str, args, work: Path, log) -> Row:
    from edgegrad.run import Session
    from edgegrad.tools.runner import open_device

    from models import ZOO

    t0 = time.monotonic()
    entry = ZOO[name]
    out_dir = work / name / scheme.replace(":", "_").replace("@", "_at_").replace("/", "_")
    cfg = CompileConfig(target="mcu", update=scheme, optimizer="sgd", lr=args.lr, quiet=True,
                        sram_budget=args.budget_sram, flash_budget=args.budget_flash)
    try:
        compiled = compile_model(entry.path, out_dir, cfg)
    except BudgetError as err:
        # The numbers of every part, also the one that fits: the prediction without budgets.
        cfg.sram_budget = cfg.flash_budget = 1 << 40
        cfg.build = False
        c = compile_model(entry.path, out_dir, cfg)
        pred = c.info["predicted"]
        sram = _needs(str(err), "SRAM") or pred["sram_total"]
        flash = _needs(str(err), "flash") or pred["flash_total"]
        mark = lambda n, b: "!" if n > b else ""
        row = Row(name, scheme, training_step_macs(c.graph), pred["sram_total"], pred["flash_total"],
                  seconds=time.monotonic() - t0,
                  does_not_fit=(f"does not fit: SRAM {_kib(sram)}{mark(sram, args.budget_sram)} / "
                                f"flash {_kib(flash)}{mark(flash, args.budget_flash)}"))
        row.notes.append(str(err))
        log(f"  {name:22s} {scheme:20s} {row.does_not_fit}")
        return row

    info = compiled.info
    pred, sec = info["predicted"], info["sections"]
    rng = np.random.default_rng(args.seed)
    xs = [rng.standard_normal(entry.input_shape).astype(np.float32) for _ in range(args.steps)]
    ys = [int(rng.integers(entry.num_classes)) for _ in range(args.steps)]
    instrets, losses = [], []
    with open_device(compiled.binary, "mcu") as dev:  # the protocol's short timeout, retried
        s = Session(dev, info)
        for x, y in zip(xs, ys):
            losses.append(s.train(x, y, timeout=args.step_timeout))  # only TRAIN waits for the emulated step
            instrets.append(dev.last_instret)
        stats = dev.stats()
        link = dev.link
    stack_used = sec["stack"] - stats["stack_free"]
    row = Row(name, scheme, training_step_macs(compiled.graph), pred["sram_total"], pred["flash_total"],
              instret=int(median(instrets)), sram_elf=sec["sram_used"], data_bss=sec["data"] + sec["bss"],
              stack_size=sec["stack"], stack_used=stack_used, flash_elf=sec["flash_used"],
              seconds=time.monotonic() - t0, losses=losses)
    if stats["train_steps"] != args.steps or stats["instret"] != instrets[-1]:
        row.notes.append(f"STATS disagrees: {stats} after {args.steps} steps, last TRAIN instret {instrets[-1]}")
    if link.resends:
        row.notes.append(f"serial link: {link.resends} re-sends ({link.timeouts} timeouts, {link.naks} NAKs, "
                         f"{link.bad_frames} bad frames); host s includes the waits")
    if min(instrets) != max(instrets):  # data-dependent branches (max/argmax searches, expf/logf)
        spread = (max(instrets) - min(instrets)) / max(min(instrets), 1)
        row.notes.append(f"instret per step depends on the data by {spread:.1e} (relative): "
                         f"{', '.join(f'{i:,}' for i in instrets)}")
    if not all(np.isfinite(losses)):
        row.notes.append(f"non-finite loss: {losses}")
    log(f"  {name:22s} {scheme:20s} {row.instret:>14,} instr/step  {row.macs:>12,} MACs  "
        f"SRAM {sec['sram_used']} B (pred {pred['sram_total']} B), stack used {stack_used}/{sec['stack']} B, "
        f"{row.seconds:.1f} s")
    return row


# ---- report ------------------------------------------------------------------------------------


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return f"{cmd[0]}: not found"


def header(args) -> list[str]:
    spec = load_target("mcu")
    qemu = _first_line(["qemu-system-riscv32", "--version"])
    zig = _first_line([sys.executable, "-m", "ziglang", "version"])
    clang = _first_line([sys.executable, "-m", "ziglang", "cc", "--version"])
    flags = " ".join(f for f in spec["cflags"] if not f.startswith("-W"))
    return [
        f"edgegrad {__version__} MCU training-step benchmark, {time.strftime('%Y-%m-%d %H:%M')}",
        f"emulator: {qemu}, `{' '.join(spec['qemu'][:8])} -icount shift=0` (minstret exact)",
        f"ISA: {spec['isa']} ({spec['abi']}, -mcpu={spec['mcpu']}), bare metal M-mode, no FPU/vector extensions beyond F",
        f"compiler: zig {zig} cc ({clang}), {flags}",
        (f"budgets: SRAM {_kib(args.budget_sram)}, flash {_kib(args.budget_flash)} (stack "
         f"{spec['memory']['stack_bytes']} B included in SRAM); sgd lr {args.lr}, batch 1, {args.steps} steps "
         f"on random N(0,1) inputs and labels (seed {args.seed})"),
        ("instr/step = median minstret of eg_train_step; MACs/step = Conv/Gemm forward + backward on the "
         "training graph + 1 per updated element; SRAM used = .data + .bss + painted-stack high-water; "
         "host s = wall time of compile + build + QEMU run"),
    ]


def report(head: list[str], rows: list[Row]) -> str:
    notes = [f"- {r.model} `{r.scheme}`: {n}" for r in rows for n in r.notes]
    text = "\n".join([f"## {head[0]}", ""] + [f"- {h}" for h in head[1:]])
    body = "\n".join(["", markdown_table(rows, COLUMNS)])
    return text + "\n" + body + "\n" + ("\n".join(["", "Notes:", ""] + notes) + "\n" if notes else "")


# ---- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    mem = load_target("mcu")["memory"]
    p = argparse.ArgumentParser(
        prog="python -m edgegrad.tools.mcubench",
        description="edgegrad mcu training step in QEMU (rv32imafc): instructions, MACs, SRAM and flash, "
                    "per zoo model and update scheme.",
        epilog="example: python -m edgegrad.tools.mcubench --models mlp_har,resnet8 --schemes last:2,bias:all "
               "--markdown mcu.md",
    )
    p.add_argument("--models", type=_csv, default=list(MODELS), help=f"comma-separated (default: {','.join(MODELS)})")
    p.add_argument("--schemes", type=_csv, default=list(SCHEMES),
                   help=f"comma-separated update schemes (default: {','.join(SCHEMES)}); a JSON file works too")
    p.add_argument("--budget-sram", type=_size, default=int(mem["sram_budget"]),
                   help="SRAM budget, e.g. 256K, 4M (default: the mcu's 256K)")
    p.add_argument("--budget-flash", type=_size, default=int(mem["flash_budget"]),
                   help="flash budget, e.g. 1M, 2M (default: the mcu's 1M)")
    p.add_argument("--steps", type=int, default=3, help="training steps per row (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs and labels")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    p.add_argument("--step-timeout", type=float, default=120.0,
                   help="seconds to wait for one emulated training step (default 120)")
    p.add_argument("--markdown", type=Path, help="also write the report to this file")
    p.add_argument("--build-dir", type=Path, help="keep the builds here (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    return args


def require_zoo_and_qemu(tool: str, models: list[str]) -> None:
    """Exit with one line when a model is not in the zoo or QEMU is missing (the emulated-MCU benchmarks)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from edgegrad.tools.runner import qemu_available

    from models import ZOO

    unknown = [m for m in models if m not in ZOO]
    if unknown:
        raise SystemExit(f"{tool}: unknown models {', '.join(unknown)} (zoo: {', '.join(ZOO)})")
    if not qemu_available():
        raise SystemExit(f"{tool}: qemu-system-riscv32 not found (tools/setup.sh installs it)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_zoo_and_qemu("mcubench", args.models)
    return run_grid(args, header(args), bench_one, report, "eg-mcubench-")


if __name__ == "__main__":
    sys.exit(main())
