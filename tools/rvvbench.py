"""RVV benchmark: instructions per training step on the mcu, the scalar build (rv32imafc, the
reference kernels) against the RVV build (`--ext zve32f,zvl128b`: runtime_c/rvv/ conv and GEMM
variants, and clang's auto-vectorised reference kernels elsewhere), side by side in one run;
`--fp16` adds the `--dtype fp16` builds (scalar Zfh, and RVV with zfh+zvfh: the native fp16
kernels) as more columns, and a second table per conv kernel: every convolution (forward, input
and weight gradient) of the models in --kernel-models, run alone in a bare-metal harness
(tests/rvv_harness.c) as FP32 scalar / FP16 scalar (Zfh) / FP16 RVV (zvfh) / FP32 RVV, summed
per model, pass and layer kind (conv, depthwise, pointwise).

    python -m edgegrad.tools.rvvbench                                  # default models x schemes
    python -m edgegrad.tools.rvvbench --models cnn_fashion,dscnn --schemes all --markdown rvv.md
    python -m edgegrad.tools.rvvbench --models cnn_fashion,dscnn,resnet8,mobilenetv2_w035_96 --schemes all --fp16

Both builds train the same random samples in QEMU (-icount shift=0, so minstret is exact);
the table gives the median minstret of eg_train_step for each, their ratio, and the largest
relative difference between the two builds' losses (the RVV sums run in another order).
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
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
RVV_FP16 = ("zve32f", "zvl128b", "zfh", "zvfh")  # fp16 RVV: native zvfh kernels (vfwmacc), vector casts
FP16_SCALAR = ("zfh",)  # fp16 scalar: the portable fp16 kernels with flh/fcvt (Zfh)
KERNEL_MODELS = ("dscnn", "resnet8", "mobilenetv2_w035_96")
COLUMNS = ("model", "scheme", "MACs/step", "scalar instr/step", "RVV instr/step", "scalar/RVV",
           "RVV MACs/instr", "max loss rel diff", "flash scalar/RVV KiB")
FP16_COLUMNS = ("fp16 scalar (Zfh) instr/step", "fp16 RVV (zvfh) instr/step", "fp32 scalar / fp16 RVV",
                "fp16 / fp32 arena KiB", "fp16 held grads KiB")
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
    fp16: tuple[int, int, int, int, int] | None = None  # scalar, RVV instr/step; fp16, fp32 arena; held grads
    convs: list[tuple[str, dict]] = field(default_factory=list)  # (node op, conv_sizes) of the training graph
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        head = [self.model, f"`{self.scheme}`", f"{self.macs:,}"]
        if self.scalar is None or self.rvv is None:
            return head + [DASH] * (len(COLUMNS) + len(FP16_COLUMNS) - 3)
        cells = head + [f"{self.scalar:,}", f"{self.rvv:,}", f"{self.scalar / self.rvv:.2f}x",
                        f"{self.macs / self.rvv:.2f}", f"{self.loss_diff:.1e}",
                        f"{self.flash[0] / 1024:.1f} / {self.flash[1] / 1024:.1f}"]
        if self.fp16 is not None:
            cells += [f"{self.fp16[0]:,}", f"{self.fp16[1]:,}", f"{self.scalar / self.fp16[1]:.2f}x",
                      f"{self.fp16[2] / 1024:.1f} / {self.fp16[3] / 1024:.1f}", f"{self.fp16[4] / 1024:.1f}"]
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
            h_s, _, c_h = train_steps(entry, scheme, FP16_SCALAR, args, work / name / f"{tag}-fp16", "fp16")
            h_v, _, _ = train_steps(entry, scheme, RVV_FP16, args, work / name / f"{tag}-fp16-rvv", "fp16")
            held = sum(c_h.graph.tensors[n.inputs[0]].size * 2 for n in c_h.graph.nodes if n.op == "LossCheckF16")
            row.fp16 = (int(median(h_s)), int(median(h_v)), c_h.info["arena_bytes"], c_s.info["arena_bytes"], held)
    except BudgetError as err:
        row.notes.append(f"does not fit: {err}")
        log(f"  {name:22s} {scheme:12s} does not fit")
        return row
    row.macs = training_step_macs(c_s.graph)
    from edgegrad.passes.select_kernels import CONV_KINDS, conv_sizes
    row.convs = [(n.op, conv_sizes(c_s.graph, n)) for n in c_s.graph.nodes if n.op in CONV_KINDS]
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
        ("fp16 columns (--fp16): --dtype fp16 builds, scalar +zfh (portable fp16 kernels, flh/fcvt) and RVV "
         "+zve32f+zvl128b+zfh+zvfh (runtime_c/rvv/eg_conv_f16_zvfh.c: vle16 + vfwmacc into fp32 accumulators); "
         "held grads = the loss-scaled fp16 parameter gradients the all-or-nothing update keeps in the arena"),
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


# ---- per conv kernel: each convolution of the models alone, in the bare-metal harness -------------

ROOT = Path(__file__).resolve().parent.parent
KINDS = {"Conv": 0, "ConvBwInput": 1, "ConvBwWeight": 2}
PASS_NAMES = ("fw", "bw_input", "bw_weight")
KERNEL_COLUMNS = ("model", "pass", "layer kind", "calls", "FP32 scalar", "FP16 scalar (Zfh)", "FP16 RVV (zvfh)",
                  "FP32 RVV", "FP32 scalar / FP16 RVV", "FP32 RVV / FP16 RVV")
QEMU_CPU = {"scalar": "rv32,zfh=true", "vector": "rv32,v=true,vlen=128,elen=32,zfh=true,zvfh=true"}


def build_harness(out: Path, vector: bool) -> Path:
    """tests/rvv_harness.c as an mcu firmware: the fp32 and fp16 reference kernels (scalar build,
    -mcpu +zfh) or those and the RVV/zvfh variants (vector build)."""
    from edgegrad.build import render_linker_script

    rt, mcu = ROOT / "runtime_c", ROOT / "targets" / "mcu"
    mem = json.loads((mcu / "target.json").read_text())["memory"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "link.ld").write_text(render_linker_script(
        enforce=False, flash_origin=int(mem["flash_origin"], 0), flash_length=mem["flash_window"],
        sram_origin=int(mem["sram_origin"], 0), sram_length=mem["sram_window"], flash_budget=mem["flash_window"],
        sram_budget=mem["sram_window"], stack_size=mem["stack_bytes"]))
    mcpu = "generic_rv32+m+a+f+c+zfh" + ("+zve32f+zvl128b+zvfh" if vector else "")
    srcs = [rt / f for f in ("eg_conv.c", "eg_gemm.c", "eg_conv_f16.c", "eg_gemm_f16.c", "eg_f16.c")]
    if vector:
        srcs += sorted((rt / "rvv").glob("eg_*_rvv.c")) + sorted((rt / "rvv").glob("eg_*_zvfh.c"))
    elf = out / "harness.elf"
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "riscv32-freestanding-none", "-mabi=ilp32f",
           f"-mcpu={mcpu}", "-ffreestanding", "-nostdlib", "-static", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror",
           "-DEG_F16", "-DEG_BAREMETAL", *([] if vector else ["-DEG_NO_VECTOR"]), f"-I{rt}", f"-I{rt / 'rvv'}",
           f"-I{mcu}", str(ROOT / "tests" / "rvv_harness.c"), str(mcu / "startup.S"), str(mcu / "uart_16550.c"),
           *map(str, srcs), "-T", str(out / "link.ld"), "-o", str(elf)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return elf


def conv_record(op: str, d: dict, f16: bool) -> list[int]:
    """One quiet harness record (tests/rvv_harness.c) for this conv call."""
    ny, nx = d["N"] * d["M"] * d["OH"] * d["OW"], d["N"] * d["C"] * d["H"] * d["W"]
    nw = d["M"] * (d["C"] // d["G"]) * d["KH"] * d["KW"]
    p = [d[k] for k in ("N", "C", "H", "W", "M", "OH", "OW", "KH", "KW", "sh", "sw", "pt", "pl", "dh", "dw", "G")]
    kind = KINDS[op]
    if kind == 0:
        sizes = [ny, nx, nw, d["M"]]
    elif kind == 1:
        sizes = [nx, ny, nw, 0]
    else:
        sizes = [d["M_upd"] * d["Cg_upd"] * d["KH"] * d["KW"], ny, d["N"] * d["Cx"] * d["H"] * d["W"], 0]
        p += [d["M_upd"], d["Cg_upd"], d["Cx"]]
    return [(kind + (4 if f16 else 0)) | 0x100, 12345, *sizes, *p] + [0] * (22 - len(p))


def run_counts(elf: Path, cpu: str, records: list[list[int]], timeout: float) -> list[tuple[int, int]]:
    """(reference, variant) instructions of each record's two kernel calls, minstret under -icount."""
    data = b"".join(struct.pack(f"<{len(r)}i", *r) for r in records) + struct.pack("<28i", -1, *[0] * 27)
    cmd = ["qemu-system-riscv32", "-M", "virt", "-bios", "none", "-display", "none", "-monitor", "none",
           "-icount", "shift=0", "-chardev", "stdio,id=s0,signal=off", "-serial", "chardev:s0", "-cpu", cpu,
           "-kernel", str(elf)]
    out = subprocess.run(cmd, input=data, capture_output=True, check=True, timeout=timeout).stdout
    if len(out) != 12 * len(records):
        raise RuntimeError(f"harness returned {len(out)} bytes for {len(records)} records")
    res = []
    for i in range(len(records)):
        status, ref, var = struct.unpack_from("<iII", out, 12 * i)
        if status:
            raise RuntimeError(f"harness record {i}: a kernel wrote outside its output")
        res.append((ref, var))
    return res


def layer_kind(d: dict) -> str:
    if d["G"] > 1 and d["G"] == d["C"] == d["M"]:
        return "depthwise"
    if d["KH"] == d["KW"] == 1 and d["sh"] == d["sw"] == 1:
        return "pointwise"
    return "conv"


def kernel_table(rows: list[Row], models: list[str], work: Path, log, timeout: float) -> str:
    calls = [(r.model, op, d) for r in rows if r.model in models and r.scheme == "all" for op, d in r.convs]
    if not calls:
        return ""
    mult: dict[tuple, int] = {}  # identical calls (repeated blocks) run once, counted as often as they occur
    uniq = []
    for c in calls:
        key = (c[0], c[1], tuple(sorted(c[2].items())))
        if key not in mult:
            uniq.append(c)
        mult[key] = mult.get(key, 0) + 1
    recs = [conv_record(op, d, f16) for _, op, d in uniq for f16 in (False, True)]
    t0 = time.monotonic()
    scalar = run_counts(build_harness(work / "harness-scalar", False), QEMU_CPU["scalar"], recs, timeout)
    vector = run_counts(build_harness(work / "harness-vector", True), QEMU_CPU["vector"], recs, timeout)
    log(f"  per-kernel: {len(recs)} calls x 4 variants in {time.monotonic() - t0:.1f} s")
    sums: dict[tuple[str, str, str], list[int]] = {}
    for i, (model, op, d) in enumerate(uniq):
        key = (model, PASS_NAMES[KINDS[op]], layer_kind(d))
        k = mult[(model, op, tuple(sorted(d.items())))]
        acc = sums.setdefault(key, [0, 0, 0, 0, 0])
        acc[0] += k * scalar[2 * i][0]      # fp32 reference, scalar build
        acc[1] += k * scalar[2 * i + 1][0]  # fp16 reference, scalar Zfh build
        acc[2] += k * vector[2 * i + 1][1]  # fp16 zvfh variant
        acc[3] += k * vector[2 * i][1]      # fp32 rvv variant
        acc[4] += k
    order = {m: i for i, m in enumerate(models)}
    lines = []
    for (model, pas, kind), (f32s, f16s, f16v, f32v, n) in sorted(
            sums.items(), key=lambda kv: (order[kv[0][0]], PASS_NAMES.index(kv[0][1]), kv[0][2])):
        lines.append(_Cells([model, pas, kind, str(n), f"{f32s:,}", f"{f16s:,}", f"{f16v:,}", f"{f32v:,}",
                             f"{f32s / f16v:.2f}x", f"{f32v / f16v:.2f}x"]))
    head = ("", "### Per conv kernel (FP32 scalar / FP16 scalar / FP16 RVV / FP32 RVV)", "",
            ("- each convolution call of the training step (`--update all`) run alone in tests/rvv_harness.c as an "
             "mcu firmware (QEMU -icount shift=0, minstret around the call); random inputs in [-1, 1); "
             "scalar = -mcpu +zfh without V, RVV = +zve32f+zvl128b+zfh+zvfh; summed per model, pass and layer kind"),
            "")
    return "\n".join(head) + "\n" + markdown_table(lines, KERNEL_COLUMNS) + "\n"


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
    p.add_argument("--kernel-models", type=_csv, default=list(KERNEL_MODELS),
                   help="with --fp16: the models whose conv layers the per-kernel table measures (their "
                        f"`all` rows; default: {','.join(KERNEL_MODELS)})")
    p.add_argument("--markdown", type=Path, help="also write the report to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_zoo_and_qemu("rvvbench", args.models)
    log = lambda *a: print(*a, file=sys.stderr, flush=True)

    def report_all(head, rows):
        text = report(head, rows)
        if args.fp16:
            import tempfile
            with tempfile.TemporaryDirectory(prefix="eg-rvvkern-") as tmp:
                text += kernel_table(rows, args.kernel_models, Path(tmp), log, args.step_timeout * 4)
        return text

    return run_grid(args, header(args), bench_one, report_all, "eg-rvvbench-")


if __name__ == "__main__":
    sys.exit(main())
