"""Sparse-update accuracy benchmark: fine-tune a pretrained zoo model on real data it never saw,
with the compiled host build (no torch), under several update schemes, and compare accuracy.

    python -m edgegrad.tools.sparsebench                          # both tasks, default schemes
    python -m edgegrad.tools.sparsebench --tasks fashion --budget fashion=96K --markdown sparse.md

Tasks (data held out from pretraining, models/README.md):

* ``fashion``: ``cnn_fashion_pre`` (pretrained on Fashion-MNIST classes 0-7, 10-way head). The
  training stream is ``--train`` images from the Fashion-MNIST *train* split, half from the new
  classes 8 and 9, half replayed from classes 0-7, shuffled; accuracy is measured on ``--eval``
  images of the *test* split (half new classes, half old). "all" is the accuracy over both halves.
* ``har``: ``mlp_har_pre`` (pretrained on HAPT subjects 1-24). The held-out subjects 25-30: for
  each, the first half of its windows (in recording order) is the training stream (shuffled),
  the second half the test set (personalisation: new users, same activities).

Schemes: ``all`` (full fine-tuning), ``last:1`` (last layer), ``bias:all``, ``none`` (before), and
``plan@B``: the scheme ``edgegrad plan --gain measured`` searches for the mcu SRAM budget B, with
the task's training samples as its calibration data (``--data``; the planner's defaults: 3
fine-tuning runs of ``--plan-steps`` steps per candidate, 4x as many held-back samples), and
``plan-proxy@B`` the one it finds with the first-order gain proxy. The predicted mcu SRAM of every scheme is
reported (compiler/memory.py, what ``compile --target mcu`` checks; "all" may not fit 256 KiB).

Every scheme fine-tunes from the same pretrained weights on the same stream with the same
optimizer and lr: one SGD step per sample (batch 1), ``--epochs`` passes. The lr is chosen per
task once (``--lr``), not per scheme.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgegrad.cli import _size
from edgegrad.demo import class_incremental_split
from edgegrad.pipeline import ROOT, CompileConfig, compile_model
from edgegrad.plan import search, write_scheme
from edgegrad.run import Session, load_build
from edgegrad.tools.bench import _csv, markdown_table
from edgegrad.tools.runner import open_device

TASKS = ("fashion", "har")
SCHEMES = ("none", "all", "last:1", "bias:all", "plan-proxy", "plan")
DEFAULT_BUDGET = {"fashion": 96 * 1024, "har": 64 * 1024}
DEFAULT_LR = {"fashion": 0.005, "har": 0.002}
MODEL = {"fashion": "cnn_fashion_pre", "har": "mlp_har_pre"}
COLUMNS = ("task", "scheme", "tensors", "params updated", "SRAM pred KiB", "acc all %", "acc new %", "acc old %",
           "Δ vs all (pts)", "host s")


@dataclass
class Task:
    name: str
    model: Path
    train: tuple[np.ndarray, np.ndarray]
    evals: dict[str, tuple[np.ndarray, np.ndarray]]  # "all", then named parts
    notes: str


def fashion_task(n_train: int, n_eval: int, seed: int) -> Task:
    train, (xn, yn), (xo, yo) = class_incremental_split(n_train, n_eval, seed)  # the demo's split
    both = (np.concatenate([xn, xo]), np.concatenate([yn, yo]))
    return Task("fashion", ROOT / "models" / "onnx" / "cnn_fashion_pre.onnx", train,
                {"all": both, "new": (xn, yn), "old": (xo, yo)},
                f"train {len(train[1])} Fashion-MNIST train images (half classes 8-9), "
                f"eval {len(both[1])} test images (new = classes 8-9, old = 0-7)")


def har_task(n_train: int, n_eval: int, seed: int) -> Task:
    sys.path.insert(0, str(ROOT))
    from models.datasets import har
    from models.mlp_har import HOLDOUT_SUBJECTS
    x, y, subj = har(subjects=HOLDOUT_SUBJECTS)
    tr, te = [], []
    for s in HOLDOUT_SUBJECTS:
        idx = np.flatnonzero(subj == s)
        tr.append(idx[: len(idx) // 2])
        te.append(idx[len(idx) // 2:])
    rng = np.random.default_rng(seed)
    tr_idx = rng.permutation(np.concatenate(tr))[:n_train]
    te_idx = rng.permutation(np.concatenate(te))[:n_eval]
    return Task("har", ROOT / "models" / "onnx" / "mlp_har_pre.onnx", (x[tr_idx], y[tr_idx]),
                {"all": (x[te_idx], y[te_idx])},
                f"held-out subjects {HOLDOUT_SUBJECTS[0]}-{HOLDOUT_SUBJECTS[-1]}: train {len(tr_idx)} windows "
                f"(first half of each subject), eval {len(te_idx)} (second half)")


@dataclass
class Row:
    task: str
    scheme: str
    tensors: int
    params: str
    sram: int
    acc: dict[str, float]
    seconds: float
    ref: float | None = None  # accuracy of "all"

    def cells(self) -> list[str]:
        a = self.acc
        delta = "" if self.ref is None or self.scheme == "all" else f"{100 * (a['all'] - self.ref):+.1f}"
        return [self.task, f"`{self.scheme}`", str(self.tensors), self.params, f"{self.sram / 1024:.1f}",
                f"{100 * a['all']:.1f}", f"{100 * a['new']:.1f}" if "new" in a else "",
                f"{100 * a['old']:.1f}" if "old" in a else "", delta, f"{self.seconds:.1f}"]


def accuracy(s: Session, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([int(np.argmax(s.infer(xi[None]))) == int(yi) for xi, yi in zip(x, y)]))


def fine_tune(task: Task, update: str, lr: float, epochs: int, out: Path) -> tuple[Row, dict]:
    t0 = time.time()
    before = update == "none"
    res = compile_model(task.model, out, CompileConfig(target="host", update="bias:all" if before else update,
                                                       lr=lr, quiet=True))
    mcu = compile_model(task.model, out.with_name(out.name + "_mcu"),
                        CompileConfig(target="mcu", update=update, lr=lr, quiet=True, build=False,
                                      sram_budget=1 << 30, flash_budget=1 << 30)) if not before else None
    info = load_build(res.out_dir)
    x, y = task.train
    with open_device(res.binary, "host") as dev:
        s = Session(dev, info)
        if not before:
            for _ in range(epochs):
                for xi, yi in zip(x, y):
                    loss = s.train(xi[None], int(yi))
                    if not np.isfinite(loss):
                        raise RuntimeError(f"{task.name} {update}: loss {loss}")
        acc = {k: accuracy(s, xe, ye) for k, (xe, ye) in task.evals.items()}
    if before:
        return Row(task.name, "none", 0, "0", 0, acc, time.time() - t0), {}
    n_upd = sum(v["k"] * int(np.prod(v["shape"])) // v["shape"][v["axis"]] for v in info["trainable"].values())
    n_all = sum(t.size for t in res.graph.params())
    row = Row(task.name, update, len(info["trainable"]), f"{n_upd:,}/{n_all:,}", mcu.info["predicted"]["sram_total"],
              acc, time.time() - t0)
    return row, info["trainable"]


def planned_scheme(task: Task, budget: int, steps: int, seed: int, lr: float, gain: str, work: Path) -> Path:
    """edgegrad plan's scheme for the budget, with the training stream as calibration data."""
    x, y = task.train
    calib = work / f"{task.name}_calib.npz"
    np.savez(calib, x=x, y=y)
    plan = search(task.model, budget, calib, steps=steps, seed=seed, gain=gain, lr=lr)
    path = work / f"{task.name}_plan_{gain}_{budget // 1024}K.json"
    write_scheme(plan.scheme, path)
    return path


def run(tasks: list[str], schemes: list[str], budgets: dict[str, int], lrs: dict[str, float], n_train: int,
        n_eval: int, epochs: int, plan_steps: int, seed: int, work: Path, log=print) -> tuple[list[Row], list[str]]:
    rows, notes = [], []
    for name in tasks:
        task = (fashion_task if name == "fashion" else har_task)(n_train, n_eval, seed)
        notes.append(f"{name}: {MODEL[name]}, {task.notes}, SGD lr {lrs[name]}, {epochs} epoch(s), batch 1")
        ref = None
        task_rows = []
        for scheme in schemes:
            update, label = scheme, scheme
            if scheme in ("plan", "plan-proxy"):
                t0 = time.time()
                gain = "measured" if scheme == "plan" else "proxy"
                path = planned_scheme(task, budgets[name], plan_steps, seed, lrs[name], gain, work)
                update, label = str(path), f"{scheme}@{budgets[name] // 1024}K"
                calib = (f"{plan_steps} samples of the training stream" if gain == "proxy" else
                         f"the training stream: 3 runs of {plan_steps} steps per candidate, {4 * plan_steps} "
                         f"held-back samples each")
                notes.append(f"{name} `{label}` ({time.time() - t0:.1f} s to plan, {gain} gain, calibration = "
                             f"{calib}): {path.read_text().strip()}".replace("\n", ""))
            row, _ = fine_tune(task, update, lrs[name], epochs, work / f"{name}_{len(task_rows)}")
            row.scheme = label
            if scheme == "all":
                ref = row.acc["all"]
            task_rows.append(row)
            log(f"[sparsebench] {name} {label}: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in row.acc.items())
                + f" (SRAM {row.sram / 1024:.1f} KiB, {row.seconds:.1f} s)")
        for r in task_rows:
            r.ref = ref
        rows += task_rows
    return rows, notes


def _budgets(values: list[str]) -> dict[str, int]:
    out = dict(DEFAULT_BUDGET)
    for v in values:
        task, _, b = v.partition("=")
        out[task] = _size(b)
    return out


def _lrs(values: list[str]) -> dict[str, float]:
    out = dict(DEFAULT_LR)
    for v in values:
        task, _, lr = v.partition("=")
        out[task] = float(lr)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m edgegrad.tools.sparsebench",
        description="Fine-tuning accuracy of sparse update schemes on data held out from pretraining "
                    "(compiled host build, batch-1 SGD).",
        epilog="example: python -m edgegrad.tools.sparsebench --tasks fashion --budget fashion=96K "
               "--markdown sparse.md")
    p.add_argument("--tasks", type=_csv, default=list(TASKS), help=f"comma-separated (default: {','.join(TASKS)})")
    p.add_argument("--schemes", type=_csv, default=list(SCHEMES),
                   help="comma-separated update schemes; 'plan' = edgegrad plan at the task's budget with "
                        "measured gains (--gain measured), 'plan-proxy' = with the first-order proxy, "
                        f"'none' = before fine-tuning (default: {','.join(SCHEMES)})")
    p.add_argument("--budget", type=_csv, default=[],
                   help="TASK=SIZE SRAM budgets for 'plan' (default: fashion=96K,har=64K)")
    p.add_argument("--lr", type=_csv, default=[], help="TASK=LR (default: fashion=0.005,har=0.002)")
    p.add_argument("--train", type=int, default=1000, help="training samples per task (default 1000)")
    p.add_argument("--eval", type=int, default=1000, help="held-out evaluation samples per task (default 1000)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--plan-steps", type=int, default=64, help="calibration samples for edgegrad plan (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", type=Path, help="also write the table as markdown to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="eg-sparsebench-") as work:
        rows, notes = run(a.tasks, a.schemes, _budgets(a.budget), _lrs(a.lr), a.train, a.eval, a.epochs,
                          a.plan_steps, a.seed, Path(work))
    text = "\n".join([markdown_table(rows, COLUMNS), ""] + [f"- {n}" for n in notes]) + "\n"
    print(text)
    if a.markdown:
        a.markdown.write_text(text)
        print(f"wrote {a.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
