"""RVV benchmark: instructions per training step on the mcu, the scalar build (rv32imafc, the
reference kernels) against the RVV build (`--ext zve32f,zvl128b`: runtime_c/rvv/ conv and GEMM
variants, and clang's auto-vectorised reference kernels elsewhere), side by side in one run;
`--fp16` adds the `--dtype fp16` builds (scalar, and RVV with zfh+zvfh) as two more columns.

    python -m edgegrad.tools.rvvbench                                  # default models x schemes
    python -m edgegrad.tools.rvvbench --models cnn_fashion,dscnn --schemes all --markdown rvv.md

Both builds train the same random samples in QEMU (-icount shift=0, so minstret is exact);
the table gives the median minstret of eg_train_step for each, their ratio, and the largest
relative difference between the two builds' losses (the RVV sums run in another order).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import numpy as np
from edgegrad import __version__
from edgegrad.cli import _size
from edgegrad.errors import BudgetError
from edgegrad.pipeline import CompileConfig, compile_model
from edgegrad.tools.bench import _csv, markdown_table, run_grid, training_step_macs
from edgegrad.tools.mcubench import require_zoo_and_qemu

MODELS = ("mlp_har", "cnn_fashion", "dscnn", "resnet8", "mobilenetv2_w035_96")
SCHEMES = ("last:2", "all")
RVV = ("zve32f", "zvl128b")
RVV_FP16 = ("zve32f", "zvl128b", "zfh", "zvfh")  # fp16 RVV: the casts with vfncvt/vfwcvt too
COLUMNS = ("model", "scheme", "MACs/step", "scalar instr/step", "RVV instr/step", "scalar/RVV",
           "RVV MACs/instr", "max loss rel diff", "flash scalar/RVV KiB")
FP16_COLUMNS = ("fp16 scalar instr/step", "fp16 RVV instr/step", "fp16 arena / fp32 arena KiB")
DASH = "—"


@dataclass
class Row:
    model: str
    scheme: str
    macs: int = 0
    scalar: int | None = None
    rvv: int | None = None
    loss_diff: float | None = None
    flash: tuple[int, int] | None = None
    fp16: tuple[int, int, int, int] | None = None  # scalar, RVV instr/step; fp16, fp32 arena bytes
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        head = [self.model, f"`{self.scheme}`", f"{self.macs:,}"]
        if self.scalar is None or self.rvv is None:
            return head + [DASH] * (len(COLUMNS) + len(FP16_COLUMNS) - 3)
        cells = head + [f"{self.scalar:,}", f"{self.rvv:,}", f"{self.scalar / self.rvv:.2f}x",
                        f"{self.macs / self.rvv:.2f}", f"{self.loss_diff:.1e}",
                        f"{self.flash[0] / 1024:.1f} / {self.flash[1] / 1024:.1f}"]
        if self.fp16 is not None:
            cells += [f"{self.fp16[0]:,}", f"{self.fp16[1]:,}", f"{self.fp16[2] / 1024:.1f} / {self.fp16[3] / 1024:.1f}"]
        return cells


def train_steps(entry, scheme: str, extensions: tuple[str, ...], args, out_dir: Path, dtype: str = "fp32"):
    """Compile for the mcu with these extensions, train args.steps samples; (instrets, losses, compiled)."""
    from edgegrad.run import Session
    from edgegrad.tools.runner import open_device

    cfg = CompileConfig(target="mcu", update=scheme, optimizer="sgd", lr=args.lr, quiet=True,
                        sram_budget=args.budget_sram, flash_budget=args.budget_flash, extensions=extensions,
                        dtype=dtype)
    compiled = compile_model(entry.path, out_dir, cfg)
    info = compiled.info
    rng = np.random.default_rng(args.seed)
    xs = [rng.standard_normal(entry.input_shape).astype(np.float32) for _ in range(args.steps)]
    ys = [int(rng.integers(entry.num_classes)) for _ in range(args.steps)]
    instrets, losses = [], []
    with open_device(compiled.binary, "mcu") as dev:
        s = Session(dev, info)
        for x, y in zip(xs, ys):
            losses.append(s.train(x, y, timeout=args.step_timeout))
            instrets.append(dev.last_instret)
    return instrets, losses, compiled


def bench_one(name: str, scheme: str, args, work: Path, log) -> Row:
    from models import ZOO

    entry = ZOO[name]
    row = Row(name, scheme)
    t0 = time.monotonic()
    tag = scheme.replace(":", "_").replace("@", "_at_").replace("/", "_")
    try:
        i_s, l_s, c_s = train_steps(entry, scheme, (), args, work / name / f"{tag}-scalar")
        i_v, l_v, c_v = train_steps(entry, scheme, RVV, args, work / name / f"{tag}-rvv")
        if args.fp16:
            h_s, _, c_h = train_steps(entry, scheme, (), args, work / name / f"{tag}-fp16", "fp16")
            h_v, _, _ = train_steps(entry, scheme, RVV_FP16, args, work / name / f"{tag}-fp16-rvv", "fp16")
            row.fp16 = (int(median(h_s)), int(median(h_v)), c_h.info["arena_bytes"], c_s.info["arena_bytes"])
    except BudgetError as err:
        row.notes.append(f"does not fit: {err}")
        log(f"  {name:22s} {scheme:12s} does not fit")
        return row
    row.macs = training_step_macs(c_s.graph)
    row.scalar, row.rvv = int(median(i_s)), int(median(i_v))
    row.loss_diff = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(l_s, l_v))
    row.flash = (c_s.info["sections"]["flash_used"], c_v.info["sections"]["flash_used"])
    log(f"  {name:22s} {scheme:12s} scalar {row.scalar:>13,}  RVV {row.rvv:>12,}  "
        f"{row.scalar / row.rvv:5.2f}x  {time.monotonic() - t0:.1f} s")
    return row


def header(args) -> list[str]:
    return [
        f"edgegrad {__version__} mcu RVV benchmark, {time.strftime('%Y-%m-%d %H:%M')}",
        ("QEMU virt -icount shift=0 (minstret exact); scalar: -mcpu=generic_rv32+m+a+f+c; RVV: "
        "+zve32f+zvl128b (QEMU -cpu rv32,v=true,vlen=128), conv/GEMM from runtime_c/rvv (LMUL 8)"),
        ("fp16 columns (--fp16): --dtype fp16 builds, scalar and RVV with +zfh+zvfh (QEMU zfh=true,zvfh=true); "
         "fp16 storage with fp32 kernels and casts, so fp16 is not expected to beat fp32 in instructions yet"),
        (f"sgd lr {args.lr}, batch 1, {args.steps} steps on random N(0,1) inputs (seed {args.seed}); "
        "instr/step = median minstret of eg_train_step; MACs as tools/mcubench.py counts them"),
    ]


@dataclass
class _Cells:
    values: list[str]

    def cells(self) -> list[str]:
        return self.values


def report(head: list[str], rows: list[Row]) -> str:
    notes = [f"- {r.model} `{r.scheme}`: {n}" for r in rows for n in r.notes]
    columns = COLUMNS + (FP16_COLUMNS if any(r.fp16 for r in rows) else ())
    rows_cells = [r.cells()[:len(columns)] for r in rows]
    text = "\n".join([f"## {head[0]}", ""] + [f"- {h}" for h in head[1:]] + ["", markdown_table([_Cells(c) for c in rows_cells], columns)])
    return text + "\n" + ("\n".join(["", "Notes:", ""] + notes) + "\n" if notes else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m edgegrad.tools.rvvbench",
        description="mcu training step in QEMU: instructions per step of the scalar build vs the RVV "
                    "(zve32f) build, per zoo model and update scheme, in one run.",
        epilog="example: python -m edgegrad.tools.rvvbench --models cnn_fashion,dscnn --schemes all "
               "--markdown rvv.md")
    p.add_argument("--models", type=_csv, default=list(MODELS), help=f"comma-separated (default: {','.join(MODELS)})")
    p.add_argument("--schemes", type=_csv, default=list(SCHEMES), help=f"comma-separated (default: {','.join(SCHEMES)})")
    p.add_argument("--budget-sram", type=_size, default=4 << 20, help="SRAM budget (default 4M: measure every model)")
    p.add_argument("--budget-flash", type=_size, default=2 << 20, help="flash budget (default 2M)")
    p.add_argument("--steps", type=int, default=2, help="training steps per build (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--step-timeout", type=float, default=300.0, help="seconds for one emulated step (default 300)")
    p.add_argument("--fp16", action="store_true", help="also measure the --dtype fp16 builds (scalar and RVV)")
    p.add_argument("--markdown", type=Path, help="also write the report to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_zoo_and_qemu("rvvbench", args.models)
    return run_grid(args, header(args), bench_one, report, "eg-rvvbench-")


if __name__ == "__main__":
    sys.exit(main())
