"""Planned scheme vs full fine-tuning on real data, for the zoo's MCU-sized image models inside 256 KiB.

    python -m edgegrad.tools.planbench --seeds 0,1 --markdown planbench.md

Tasks (class-incremental Fashion-MNIST, the demo's split ``class_incremental_split``: the model was
pretrained on classes 0-7 only; the training stream is ``--train`` train-split images, half from the
unseen classes 8-9, half replayed from 0-7; accuracy on ``--eval`` held-out test images, half new):

* ``mbv2``: ``mobilenetv2_w035_128_pre`` (MobileNetV2-w0.35, 128x128x3: the 28x28 images resized
  and repeated on 3 channels, ``models.datasets.to_rgb``). Full fine-tuning is fp32 (``--update
  all``, 4.3 MiB of SRAM: it cannot run on the MCU). The model is quantized (``edgegrad quantize``,
  calibration = ``--calib`` pretraining images of classes 0-7), and ``edgegrad plan --dtype int8
  --budget-sram 256K --data`` (the training stream as calibration data) searches the scheme, which
  is then trained in int8 with QAS on the int8 host build (bit-identical to the mcu build).

Rows per task and seed: ``none`` (before fine-tuning; int8 too for mbv2), ``all`` (full fine-tuning,
the reference), ``plan@256K`` and, as a baseline, ``last:1`` (the classifier) in the plan's dtype.
Every row fine-tunes the same pretrained weights on the same stream, one SGD step per sample (batch
1), same lr. "SRAM pred" is what ``compile --target mcu`` predicts and checks (compiler/memory.py).
With ``--mcu-steps N`` (default 2) the planned scheme of the first seed is also built for the mcu, run in
QEMU and trained N steps on stream images there: the table below the main one gives its ELF SRAM, the
stack high-water mark, instructions per step and the losses next to the host build's.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from edgegrad.cli import _size
from edgegrad.demo import class_incremental_split
from edgegrad.pipeline import ROOT, CompileConfig, compile_model
from edgegrad.run import Session, load_build
from edgegrad.tools.bench import _csv, markdown_table
from edgegrad.tools.runner import open_device

TASKS = ("mbv2",)
MODEL = {"mbv2": "mobilenetv2_w035_128_pre"}
SIZE = {"mbv2": 128}
PLAN_DTYPE = {"mbv2": "int8"}
DEFAULT_LR = {"mbv2": 0.005}
SCHEMES = ("none", "all", "last:1", "plan")
# edgegrad plan --gain per task: measured contribution runs need ~250 candidates x (steps + held-back
# forwards) numpy-interpreter steps of 0.2-0.4 s for MobileNetV2 int8 (over an hour on 2 cores), so
# MobileNetV2 uses the first-order proxy over the calibration samples by default
DEFAULT_GAIN = {"mbv2": "proxy"}
COLUMNS = ("task", "scheme", "seed", "dtype", "tensors", "params updated", "SRAM pred KiB", "fits", "acc all %",
           "acc new %", "acc old %", "Δ vs all (pts)", "host s")


@dataclass
class Data:
    train: tuple[np.ndarray, np.ndarray]
    new: tuple[np.ndarray, np.ndarray]
    old: tuple[np.ndarray, np.ndarray]
    calib: np.ndarray  # quantization calibration: pretraining images of classes 0-7


def task_data(task: str, n_train: int, n_eval: int, n_calib: int, seed: int) -> Data:
    """The demo's class-incremental split, resized to the model's input (models.datasets.to_rgb)."""
    sys.path.insert(0, str(ROOT))
    from models.datasets import fashion_mnist, to_rgb
    (x, y), (xn, yn), (xo, yo) = class_incremental_split(n_train, n_eval, seed)
    size = SIZE[task]
    xp, yp = fashion_mnist("train")
    calib = xp[np.flatnonzero(yp < 8)[:n_calib]]  # the first images of classes 0-7: in every pretraining set
    return Data((to_rgb(x, size), y), (to_rgb(xn, size), yn), (to_rgb(xo, size), yo), to_rgb(calib, size))


@dataclass
class Row:
    task: str
    scheme: str
    seed: int
    dtype: str
    tensors: int
    params: str
    sram: int
    acc: dict[str, float]
    seconds: float
    ref: float | None = None  # accuracy of "all" (same task and seed)
    budget: int = 256 * 1024

    def cells(self) -> list[str]:
        a = self.acc
        delta = "" if self.ref is None or self.scheme == "all" else f"{100 * (a['all'] - self.ref):+.1f}"
        fits = "" if not self.sram else ("yes" if self.sram <= self.budget else "no")
        return [self.task, f"`{self.scheme}`", str(self.seed), self.dtype, str(self.tensors), self.params,
                f"{self.sram / 1024:,.1f}" if self.sram else "", fits, f"{100 * a['all']:.1f}",
                f"{100 * a['new']:.1f}", f"{100 * a['old']:.1f}", delta, f"{self.seconds:.1f}"]


@dataclass
class McuRun:
    task: str
    seed: int
    scheme: str
    sram_pred: int
    sram_elf: int
    sram_used: int
    flash_elf: int
    instret: list[int]
    losses: list[float]
    host_losses: list[float] = field(default_factory=list)


def accuracy(s: Session, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([int(np.argmax(s.infer(xi[None]))) == int(yi) for xi, yi in zip(x, y)]))


def _config(dtype: str, update: str, lr: float, master: str, **kw) -> CompileConfig:
    return CompileConfig(update=update, lr=lr, dtype=dtype, int8_master=master, quiet=True, **kw)


class Builds:
    """Compiled host builds and mcu predictions, reused across seeds (a fresh process starts from the
    pretrained weights every time)."""

    def __init__(self, work: Path, cflags: tuple[str, ...] = ()):
        self.work, self.cflags, self.cache = work, cflags, {}

    def get(self, model: Path, dtype: str, update: str, lr: float, master: str):
        text = Path(update).read_text() if update.endswith(".json") else update
        key = (str(model), dtype, text, lr, master)
        if key not in self.cache:
            out = self.work / f"build{len(self.cache)}"
            res = compile_model(model, out, _config(dtype, update, lr, master, target="host",
                                                    extra_cflags=self.cflags))
            mcu = compile_model(model, out.with_name(out.name + "_mcu"),
                                _config(dtype, update, lr, master, target="mcu", build=False, sram_budget=1 << 30,
                                        flash_budget=1 << 30))
            self.cache[key] = (res, mcu.info["predicted"]["sram_total"])
        return self.cache[key]


def _eval(s: Session, data: Data) -> dict[str, float]:
    acc = {"new": accuracy(s, *data.new), "old": accuracy(s, *data.old)}
    n_new, n_old = len(data.new[1]), len(data.old[1])
    acc["all"] = (acc["new"] * n_new + acc["old"] * n_old) / (n_new + n_old)
    return acc


def fine_tune(task: str, seed: int, model: Path, dtype: str, update: str, label: str, data: Data, lr: float,
              master: str, builds: Builds, log) -> tuple[Row, Row]:
    """Train the host build on the stream with the generated C; held-out accuracy before and after.
    Returns (before, after) rows; SRAM is the mcu prediction of the scheme."""
    t0 = time.time()
    res, sram = builds.get(model, dtype, update, lr, master)
    info = load_build(res.out_dir)
    x, y = data.train
    with open_device(res.binary, "host", timeout=60.0) as dev:
        s = Session(dev, info)
        acc0 = _eval(s, data)
        t1 = time.time()
        for xi, yi in zip(x, y):
            loss = s.train(xi[None], int(yi))
            if not np.isfinite(loss):
                raise RuntimeError(f"{task} {label}: loss {loss}")
        t2 = time.time()
        acc = _eval(s, data)
    log(f"[planbench] {task} seed {seed} {label} {dtype}: build + first eval {t1 - t0:.1f} s, "
        f"{len(y)} steps {t2 - t1:.1f} s, eval {time.time() - t2:.1f} s")
    g = res.graph
    upd = sum(u.rows(g.tensors[p].shape) * g.tensors[p].size // g.tensors[p].shape[u.axis]
              for p, u in res.updates.items())
    before = Row(task, "none", seed, dtype, 0, "0", 0, acc0, 0.0)
    return before, Row(task, label, seed, dtype, len(res.updates), f"{upd:,}/{n_params(model):,}", sram, acc,
                       time.time() - t0)


@functools.cache
def n_params(model: Path) -> int:
    """Weights and biases of the model (fp32 or int8: the same count)."""
    from edgegrad.pipeline import frontend_graph
    from edgegrad.scheme import layers
    g, _ = frontend_graph(model, CompileConfig(dtype="int8" if "_int8" in model.stem else "fp32", update="all"))
    return sum(g.tensors[t].size for _, w, b in layers(g) for t in (w, b) if t)


def quantize(model: Path, calib: np.ndarray, work: Path) -> Path:
    from edgegrad.quantize import quantize_model
    np.save(work / "qcalib.npy", calib)
    out = work / f"{model.stem}_int8.onnx"
    quantize_model(model, work / "qcalib.npy", out)
    return out


@dataclass
class PlanOpts:
    gain: str | None = None  # edgegrad plan --gain (None: DEFAULT_GAIN of the task)
    steps: int = 8  # --steps
    repeats: int = 1  # --repeats
    holdout: int | None = None  # --holdout (default 4 x steps)


def plan_scheme(model: Path, dtype: str, budget: int, data: Data, opts: PlanOpts, seed: int, lr: float, master: str,
                work: Path, log) -> tuple[Path, str]:
    """``edgegrad plan --dtype D --budget-sram B --data`` with the training stream as calibration data."""
    from edgegrad import plan as planner
    x, y = data.train
    calib = work / f"{model.stem}_stream{seed}.npz"
    n = min(len(y), 256)
    np.savez(calib, x=x[:n], y=y[:n])
    path = work / f"{model.stem}_plan_{budget // 1024}K_seed{seed}.json"
    t0 = time.time()
    p = planner.search(model, budget, calib, steps=opts.steps, seed=seed, lr=lr, log=log, gain=opts.gain,
                       dtype=dtype, int8_master=master, repeats=opts.repeats, holdout=opts.holdout)
    planner.write_scheme(p.scheme, path)
    how = (f"{opts.repeats} run(s) of {opts.steps} steps per candidate" if p.gain == "measured"
           else f"first-order proxy over {opts.steps} samples")
    note = (f"`edgegrad plan --dtype {dtype} --budget-sram {budget // 1024}K --gain {p.gain}` ({how}; "
            f"{time.time() - t0:.0f} s, {p.evaluations} schemes): " + json.dumps(p.scheme, separators=(",", ":")))
    return path, note


def mcu_run(task: str, seed: int, model: Path, dtype: str, scheme: Path, data: Data, lr: float, master: str,
            steps: int, work: Path, builds: Builds) -> McuRun:
    """Build the scheme for the mcu (256 KiB SRAM budget enforced), train ``steps`` stream samples in QEMU,
    and the same steps on a fresh host build (the losses must agree)."""
    cfg = _config(dtype, str(scheme), lr, master, target="mcu")
    c = compile_model(model, work / f"{task}_{seed}_mcu", cfg)
    sec, pred = c.info["sections"], c.info["predicted"]
    x, y = data.train
    losses, instret = [], []
    with open_device(c.binary, "mcu") as dev:
        s = Session(dev, c.info)
        for i in range(steps):
            losses.append(s.train(x[i][None], int(y[i]), timeout=3600.0))
            instret.append(dev.last_instret)
        stats = dev.stats()
    h, _ = builds.get(model, dtype, str(scheme), lr, master)
    with open_device(h.binary, "host", timeout=60.0) as dev:
        s = Session(dev, load_build(h.out_dir))
        host = [s.train(x[i][None], int(y[i])) for i in range(steps)]
    used = sec["data"] + sec["bss"] + sec["stack"] - stats["stack_free"]
    return McuRun(task, seed, scheme.name, pred["sram_total"], sec["sram_used"], used, sec["flash_used"], instret,
                  losses, host)


def run(tasks: list[str], seeds: list[int], schemes: list[str], budget: int, lrs: dict[str, float], n_train: int,
        n_eval: int, n_calib: int, plan: PlanOpts, master: str, mcu_steps: int, work: Path, given: str | None = None,
        log=print, cflags: tuple[str, ...] = ()) -> tuple[list[Row], list[McuRun], list[str]]:
    sys.path.insert(0, str(ROOT))
    from models import ZOO
    rows, mcus, notes = [], [], []
    builds = Builds(work, cflags)
    for task in tasks:
        fp32_model = ZOO[MODEL[task]].path
        dtype, lr = PLAN_DTYPE[task], lrs[task]
        model = fp32_model
        if dtype == "int8":  # calibrated once on pretraining images: the same int8 model for every seed
            model = quantize(fp32_model, task_data(task, 2, 2, n_calib, 0).calib, work)
        notes.append(f"{task}: {MODEL[task]}, stream {n_train} images (half classes 8-9), eval {n_eval} test "
                     f"images (half new), SGD lr {lr}, 1 epoch, batch 1"
                     + (f"; int8 = `edgegrad quantize` on {n_calib} pretraining images, QAS, "
                        f"--int8-master {master}" if dtype == "int8" else ""))
        for seed in seeds:
            data = task_data(task, n_train, n_eval, n_calib, seed)
            ref, task_rows, plan_path, before = None, [], None, {}
            for scheme in schemes:
                if scheme == "none":
                    continue  # the "before" accuracies of the other rows' builds
                if scheme == "plan":
                    if given:
                        plan_path, note, label = Path(given), f"given scheme {given}", "given"
                    else:
                        opts = PlanOpts(plan.gain or DEFAULT_GAIN[task], plan.steps, plan.repeats, plan.holdout)
                        plan_path, note = plan_scheme(model, dtype, budget, data, opts, seed, lr, master, work,
                                                      lambda *a: log(*a))
                        label = f"plan@{budget // 1024}K"
                    notes.append(f"{task} seed {seed} `{label}`: {note}")
                    dt, m, update = dtype, model, str(plan_path)
                elif scheme == "all":
                    dt, m, update, label = "fp32", fp32_model, "all", "all"
                else:
                    dt, m, update, label = dtype, model, scheme, scheme
                b, row = fine_tune(task, seed, m, dt, update, label, data, lr, master, builds, log)
                row.budget = budget
                before.setdefault(dt, b)
                if scheme == "all":
                    ref = row.acc["all"]
                task_rows.append(row)
                log(f"[planbench] {task} seed {seed} {label} {dt}: "
                    + ", ".join(f"{k} {100 * v:.1f}%" for k, v in row.acc.items())
                    + f" (SRAM {row.sram / 1024:.1f} KiB, {row.seconds:.1f} s)")
            if "none" in schemes:
                task_rows = list(before.values()) + task_rows
            for r in task_rows:
                r.ref = ref
            rows += task_rows
            if mcu_steps and plan_path is not None and seed == seeds[0]:  # one QEMU run per task
                t1 = time.time()
                mr = mcu_run(task, seed, model, dtype, plan_path, data, lr, master, mcu_steps, work, builds)
                mcus.append(mr)
                log(f"[planbench] {task} seed {seed} QEMU: SRAM ELF {mr.sram_elf / 1024:.1f} KiB, losses "
                    f"{mr.losses} (host {mr.host_losses}), {time.time() - t1:.1f} s")
    return rows, mcus, notes


def mcu_table(mcus: list[McuRun]) -> str:
    head = ("| task | seed | scheme | SRAM pred / ELF KiB | SRAM used KiB | flash ELF KiB | instr/step | losses QEMU "
            "| losses host build |")
    lines = [head, "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for m in mcus:
        lines.append(f"| {m.task} | {m.seed} | `{m.scheme}` | {m.sram_pred / 1024:.1f} / {m.sram_elf / 1024:.1f} | "
                     f"{m.sram_used / 1024:.1f} | {m.flash_elf / 1024:.1f} | {int(np.median(m.instret)):,} | "
                     + " ".join(f"{v:.4f}" for v in m.losses) + " | " + " ".join(f"{v:.4f}" for v in m.host_losses)
                     + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m edgegrad.tools.planbench",
        description="Accuracy of the scheme `edgegrad plan` finds for a 256 KiB MCU vs full fine-tuning, on "
                    "Fashion-MNIST classes held out from pretraining (MobileNetV2-w0.35@128 int8; "
                    "compiled host builds, batch-1 SGD), plus a QEMU run of the planned scheme.",
        epilog="example: python -m edgegrad.tools.planbench --tasks mbv2 --seeds 0,1 --markdown planbench.md")
    p.add_argument("--tasks", type=_csv, default=list(TASKS), help=f"comma-separated (default: {','.join(TASKS)})")
    p.add_argument("--seeds", type=_csv, default=["0", "1"], help="data/plan seeds (default 0,1)")
    p.add_argument("--schemes", type=_csv, default=list(SCHEMES),
                   help=f"rows: none, all (fp32), plan, or any --update shorthand (default: {','.join(SCHEMES)})")
    p.add_argument("--budget-sram", type=_size, default=256 * 1024, help="SRAM budget for plan (default 256K)")
    p.add_argument("--lr", type=_csv, default=[], help="TASK=LR (default: " +
                   ",".join(f"{k}={v}" for k, v in DEFAULT_LR.items()) + ")")
    p.add_argument("--train", type=int, default=1000, help="training stream length (default 1000)")
    p.add_argument("--eval", type=int, default=1000, help="held-out test images (default 1000)")
    p.add_argument("--calib", type=int, default=128, help="quantization calibration images (default 128)")
    p.add_argument("--plan-gain", choices=["measured", "proxy"],
                   help="edgegrad plan --gain (default: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_GAIN.items())
                   + "; measured = short fine-tuning runs per candidate)")
    p.add_argument("--plan-steps", type=int, default=8, help="edgegrad plan --steps (default 8)")
    p.add_argument("--plan-repeats", type=int, default=1, help="edgegrad plan --repeats (default 1)")
    p.add_argument("--plan-holdout", type=int, help="edgegrad plan --holdout (default 4 x --plan-steps)")
    p.add_argument("--int8-master", default="none", choices=["fp32", "none"],
                   help="int8 weight update (as compile --int8-master; default none: no fp32 copy in SRAM)")
    p.add_argument("--mcu-steps", type=int, default=2, help="training steps of the planned scheme in QEMU (0: skip)")
    p.add_argument("--scheme-file", help="train this scheme JSON instead of running edgegrad plan")
    p.add_argument("--markdown", type=Path, help="also write the tables as markdown to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    lrs = dict(DEFAULT_LR)
    for v in a.lr:
        k, _, lr = v.partition("=")
        lrs[k] = float(lr)
    unknown = [t for t in a.tasks if t not in TASKS]
    if unknown:
        raise SystemExit(f"planbench: unknown task(s) {', '.join(unknown)} (known: {', '.join(TASKS)})")
    with tempfile.TemporaryDirectory(prefix="eg-planbench-") as work:
        rows, mcus, notes = run(a.tasks, [int(s) for s in a.seeds], a.schemes, a.budget_sram, lrs, a.train, a.eval,
                                a.calib, PlanOpts(a.plan_gain, a.plan_steps, a.plan_repeats, a.plan_holdout),
                                a.int8_master, a.mcu_steps, Path(work), a.scheme_file)
    parts = [markdown_table(rows, COLUMNS), ""]
    if mcus:
        parts += [mcu_table(mcus), ""]
    text = "\n".join(parts + [f"- {n}" for n in notes]) + "\n"
    print(text)
    if a.markdown:
        a.markdown.write_text(text)
        print(f"wrote {a.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
