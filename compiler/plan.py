"""edgegrad plan: search the sparse update scheme that buys the most expected accuracy gain
within an SRAM budget (TTE-style contribution analysis + memory-aware greedy search).

Candidates, per layer in the order of ``scheme.layers(graph)``: frozen, bias only, then the
weight's leading share 1/8, 1/4, 1/2, 1 of its output channels (plus the bias), and for
Conv/Gemm/MatMul weights with more than one input channel also the leading share 1/8, 1/4, 1/2
of the input channels ``{"in": f}`` (plus the bias).

Memory of a scheme (exact, not a model): the pipeline's own passes fold_frozen ->
fold_batchnorm -> build_training_graph -> recompute -> select_kernels(target) -> plan_memory, then
``memory.predict(...)["sram_total"]`` (arena + trainable params + optimizer state + stack +
runtime), i.e. the number ``compile --target mcu`` checks. Cached per scheme. The empty scheme
is the inference-only plan of the forward graph.

Gain (the cheap proxy for TTE's contribution analysis, which fine-tunes once per layer):
the first-order loss decrease of one SGD step restricted to the updated entries. With the
per-sample gradients g_i (numpy Interpreter, one training step of the full ``all`` graph with
lr=0, over S calibration samples) and their mean G = (1/S) sum_i g_i,

    score(tensor t, share s) = || G_t[s] ||^2          (s: the leading rows/input columns)
    score(scheme)            = sum over its (tensor, share) of score(t, s)
    gain %                   = 100 * score(scheme) / score(all)

so loss(w - lr*G_S) ~ loss(w) - lr * score(S): the share of the full-update first-order loss
decrease that the scheme keeps. Using the mean gradient (not the mean of ||g_i||^2) counts only
the direction consistent across samples, i.e. what a stream of batch-1 steps accumulates.
Without ``--data`` the samples are random N(0,1) inputs with random labels: the scores then
only say where gradient mass flows, and the output says so.

Measured gain (``--gain measured``, the default with ``--data``): TTE's contribution analysis
on the host, no torch. The 2*steps calibration samples are split in halves; each candidate alone
is fine-tuned for ``steps`` batch-1 steps on the first half at ``--lr`` (the numpy Interpreter
running the pipeline's own training graph for that scheme) and scored by the decrease of the
cross-entropy on the second half. Gains are then summed across layers as if independent, which
overstates overlapping layers; so each final scheme of the search is itself fine-tuned and
measured, and the best measured one wins. On the Fashion-MNIST class-incremental task the
first-order proxy picks the convolutions' weights and the classifier's bias (cheap per byte)
and learns nothing of the new classes; the measured gain picks the classifier
(``python -m edgegrad.tools.sparsebench``).

Search: greedy by gain per byte. From the empty scheme, repeatedly evaluate, for every layer,
each candidate that scores higher than the layer's current choice; a candidate over budget is
dropped for good (memory grows with the scheme); take the best (gain delta)/(SRAM delta) and
repeat until nothing fits. As a 0/1 knapsack greedy can be crowded out of one large valuable
item by cheap ones, the greedy also starts from each of the best ``seeds`` single candidates,
and the best final scheme is kept. A final feasibility check re-predicts the written scheme from its
JSON through ``parse_scheme``.
"""

from __future__ import annotations

import copy
import heapq
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .autodiff import TrainConfig, build_training_graph
from .errors import BudgetError, EdgegradError
from .frontend import import_onnx, load_onnx
from .interp import Interpreter
from .ir import Graph
from .memory import _kib, predict
from .passes.fold_batchnorm import fold_batchnorm
from .passes.fold_frozen import fold_frozen
from .passes.plan_memory import plan_memory
from .passes.recompute import recompute
from .passes.select_kernels import select_kernels
from .scheme import Update, input_axis, layers, parse_scheme

SHARES = (1 / 8, 1 / 4, 1 / 2, 1.0)
IN_SHARES = (1 / 8, 1 / 4, 1 / 2)
IN_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class Candidate:
    label: str  # "frozen", "bias", "w 1/4", "in 1/2"
    updates: tuple[tuple[str, int, float], ...]  # (tensor, axis, fraction)
    score: float = 0.0

    def json(self) -> dict:
        return {t: (f if axis == 0 else {"in": f}) for t, axis, f in self.updates}


@dataclass
class Plan:
    scheme: dict  # the JSON contract
    choices: list[tuple[str, Candidate]]  # (layer, chosen candidate), every layer
    predicted: dict  # memory.predict of the scheme
    score: float
    score_all: float
    budget: int
    proxy: bool
    evaluations: int
    seconds: float
    base_sram: int = 0
    gain: str = "proxy"  # how scores were obtained: proxy or measured
    notes: list[str] = field(default_factory=list)


def _frac(f: float) -> str:
    return {1 / 8: "1/8", 1 / 4: "1/4", 1 / 2: "1/2", 1.0: "1"}.get(f, f"{f:g}")


def training_graph(g0: Graph, updates: dict[str, Update], tcfg: TrainConfig, target: str = "mcu") -> Graph:
    """The pipeline's training graph for ``updates`` (a fresh copy of the forward graph g0)."""
    g = copy.deepcopy(g0)
    trainable = set(updates)
    g = build_training_graph(fold_batchnorm(fold_frozen(g, trainable), trainable), updates, tcfg)
    if target == "mcu":  # the pipeline's default (CompileConfig.recompute)
        g = recompute(g)
    return select_kernels(g, target)


class MemoryModel:
    """SRAM prediction per scheme, exactly as compile_model computes it, cached."""

    def __init__(self, g0: Graph, tcfg: TrainConfig, target: str = "mcu"):
        from .build import load_target
        self.g0, self.tcfg, self.target = g0, tcfg, target
        self.stack = load_target("mcu")["memory"]["stack_bytes"]
        self.cache: dict[tuple, dict] = {}

    def predict(self, updates: dict[str, Update]) -> dict:
        key = tuple(sorted((t, u.axis, u.fraction) for t, u in updates.items()))
        if key not in self.cache:
            self.cache[key] = self._predict(updates)
        return self.cache[key]

    def _predict(self, updates: dict[str, Update]) -> dict:
        if not updates:  # inference only: the forward graph's plan
            g = fold_frozen(copy.deepcopy(self.g0), set())
            plan = plan_memory(g)
            info = {"arena_bytes": plan.arena_bytes, "trainable_bytes": 0, "state_bytes": 0,
                    "frozen_bytes": sum(t.nbytes for t in self.g0.tensors.values()
                                        if t.role in ("param", "const") and t.dtype == "f32")}
            return predict(info, self.stack)
        g = training_graph(self.g0, updates, self.tcfg, self.target)
        plan = plan_memory(g)
        info = {"arena_bytes": plan.arena_bytes,
                "trainable_bytes": sum(g.tensors[p].nbytes for p in updates),
                "state_bytes": sum(g.tensors[s].nbytes for s in g.meta["state"]),
                "frozen_bytes": sum(t.nbytes for t in g.tensors.values() if t.role in ("param", "const")
                                    and t.name not in updates and t.dtype == "f32")}
        pred = predict(info, self.stack)
        pred["arena_lower_bound"] = plan.lower_bound
        return pred


def load_calibration(path: str | Path | None, g0: Graph, steps: int, seed: int) -> tuple[list, bool]:
    """[(x, label)] samples: from an .npz with x [N, ...] and y [N], or random (proxy=True)."""
    shape = g0.tensors[g0.inputs[0]].shape
    rng = np.random.default_rng(seed)
    if path is None:
        n_cls = int(g0.tensors[g0.outputs[0]].shape[-1])
        return [(rng.standard_normal(shape).astype(np.float32), np.array([rng.integers(n_cls)]))
                for _ in range(steps)], True
    try:
        d = np.load(path)
        x, y = np.asarray(d["x"], np.float32), np.asarray(d["y"])
    except (OSError, KeyError, ValueError) as e:
        raise EdgegradError(f"--data {path}: expected an .npz with arrays x [N, ...] and y [N] ({e})")
    if len(x) != len(y) or not len(x) or x[0].size != int(np.prod(shape)):
        raise EdgegradError(f"--data {path}: x {list(x.shape)} / y {list(y.shape)} do not match the model input "
                            f"{list(shape)} (one sample per row, as many labels as samples)")
    idx = rng.permutation(len(x))[:steps]
    return [(x[i].reshape(shape), np.array([int(y[i])])) for i in idx], False


def gradient_scores(g0: Graph, samples: list, tcfg: TrainConfig) -> dict[str, np.ndarray]:
    """Mean gradient of every trainable tensor over the samples (the ``all`` graph, lr=0)."""
    upd = parse_scheme("all", g0)
    g = training_graph(g0, upd, TrainConfig(loss=tcfg.loss, optimizer="sgd", lr=0.0), "host")
    grads = {n.inputs[0]: n.inputs[1] for n in g.nodes if n.op == "SGDUpdate"}
    it = Interpreter(g)
    acc = {p: np.zeros(g0.tensors[p].shape, np.float64) for p in grads}
    for x, y in samples:
        it.train_step([x], y)
        for p, gn in grads.items():
            acc[p] += it.values[gn].reshape(acc[p].shape)
    return {p: a / max(1, len(samples)) for p, a in acc.items()}


def _share_score(G: np.ndarray, axis: int, f: float) -> float:
    k = Update(axis, f).rows(G.shape)
    sl = [slice(None)] * G.ndim
    sl[axis] = slice(0, k)
    return float(np.sum(G[tuple(sl)] ** 2))


def candidates(g0: Graph, G: dict[str, np.ndarray]) -> list[tuple[str, list[Candidate]]]:
    by_node = {n.name: n for n in g0.nodes}
    out = []
    for name, w, b in layers(g0):
        bias = ((b, 0, 1.0),) if b else ()
        sb = _share_score(G[b], 0, 1.0) if b and b in G else 0.0
        cs = [Candidate("frozen", ())]
        if b and b in G:
            cs.append(Candidate("bias", bias, sb))
        if w and w in G:
            shape = g0.tensors[w].shape
            for f in SHARES:
                if f < 1 and shape and Update(0, f).rows(shape) == Update(0, f * 2).rows(shape):
                    continue  # too few channels for this share to differ from the next
                cs.append(Candidate(f"w {_frac(f)}", ((w, 0, f),) + bias, _share_score(G[w], 0, f) + sb))
            ax = input_axis(g0, w)
            if by_node[name].op in IN_OPS and len(shape) > ax and shape[ax] > 1:
                for f in IN_SHARES:
                    if Update(ax, f).rows(shape) == Update(ax, f * 2).rows(shape):
                        continue
                    cs.append(Candidate(f"in {_frac(f)}", ((w, ax, f),) + bias, _share_score(G[w], ax, f) + sb))
        out.append((name, cs))
    return out


def _updates(choice: dict[str, Candidate]) -> dict[str, Update]:
    return {t: Update(axis, f) for c in choice.values() for t, axis, f in c.updates}


def _val_loss(it: Interpreter, samples: list, loss: str) -> float:
    """Mean loss of the interpreter's current weights on held-back samples (no update)."""
    total = 0.0
    for x, y in samples:
        z = it.infer([x])[0].reshape(-1).astype(np.float64)
        if loss == "cross_entropy":
            z = z - z.max()
            total += float(np.log(np.exp(z).sum()) - z[int(np.asarray(y).reshape(-1)[0])])
        else:
            total += float(np.mean((z - np.asarray(y, np.float64).reshape(-1)) ** 2))
    return total / max(1, len(samples))


class FineTuner:
    """TTE's contribution analysis on the host, without torch: fine-tune a scheme for a few
    batch-1 steps with the numpy Interpreter of the pipeline's own training graph, and measure the
    decrease of the loss on held-back calibration samples. Cached per scheme."""

    def __init__(self, g0: Graph, tcfg: TrainConfig, train: list, val: list):
        self.g0, self.tcfg, self.train, self.val = g0, tcfg, train, val
        self.base = _val_loss(Interpreter(copy.deepcopy(g0)), val, tcfg.loss)
        self.cache: dict[tuple, float] = {}

    def gain(self, updates: dict[str, Update]) -> float:
        key = tuple(sorted((t, u.axis, u.fraction) for t, u in updates.items()))
        if key not in self.cache:
            if not updates:
                self.cache[key] = 0.0
            else:
                it = Interpreter(training_graph(self.g0, updates, self.tcfg, "host"))
                for x, y in self.train:
                    it.train_step([x], y)
                self.cache[key] = self.base - _val_loss(it, self.val, self.tcfg.loss)
        return self.cache[key]


def _greedy(cands, choice: dict[str, Candidate], mem: MemoryModel, fits) -> tuple[dict[str, Candidate], dict]:
    """Lazy greedy (CELF) by score per SRAM byte from ``choice``: a candidate's ratio, measured
    against an older scheme, is re-measured only when it reaches the top of the heap; it is taken
    when its ratio is current. A candidate over budget is dropped for good (memory only grows)."""
    choice = dict(choice)
    cur = mem.predict(_updates(choice))
    version = 0
    heap = [(-float("inf"), i, j, -1) for i, (_, cs) in enumerate(cands) for j in range(1, len(cs))]
    heapq.heapify(heap)
    while heap:
        _, i, j, ver = heapq.heappop(heap)
        name, c = cands[i][0], cands[i][1][j]
        if c.score <= choice[name].score:
            continue  # no better than what the layer already has
        trial = dict(choice)
        trial[name] = c
        p = mem.predict(_updates(trial))
        if not fits(p):
            continue
        if ver != version:
            ratio = (c.score - choice[name].score) / max(p["sram_total"] - cur["sram_total"], 1)
            heapq.heappush(heap, (-ratio, i, j, version))
            continue
        choice[name], cur, version = c, p, version + 1
    return choice, cur


def search(model: str | Path, budget: int, data: str | Path | None = None, target: str = "mcu",
           optimizer: str = "sgd", flash_budget: int = 1024 * 1024, steps: int = 16, seed: int = 0,
           input_shapes: dict | None = None, log=None, gain: str | None = None, lr: float = 0.01,
           seeds: int = 4) -> Plan:
    """Search the scheme; ``gain``: "measured" (short fine-tuning runs, needs data; the default
    with data) or "proxy" (first-order, the default without data)."""
    if target != "mcu":
        raise EdgegradError(f"edgegrad plan predicts SRAM for the mcu target only, not {target!r}")
    gain = gain or ("proxy" if data is None else "measured")
    if gain not in ("proxy", "measured"):
        raise EdgegradError(f"--gain must be proxy or measured, not {gain!r}")
    if gain == "measured" and data is None:
        raise EdgegradError("--gain measured fine-tunes on calibration data: give --data calib.npz")
    t0 = time.time()
    log = log or (lambda *a: None)
    g0 = import_onnx(load_onnx(model), input_shapes or {})
    tcfg = TrainConfig(optimizer=optimizer)
    mem = MemoryModel(g0, tcfg, target)

    def fits(p: dict) -> bool:
        return p["sram_total"] <= budget and p["flash_total"] <= flash_budget

    cur = mem.predict({})
    base = cur["sram_total"]
    if not fits(cur):
        parts = ", ".join(f"{k} {_kib(v)}" for k, v in cur["sram"].items() if v)
        raise BudgetError(f"{Path(model).name}: inference alone needs SRAM {_kib(base)} ({parts}) vs budget "
                          f"{_kib(budget)}, flash {_kib(cur['flash_total'])} vs budget {_kib(flash_budget)}: "
                          f"no update scheme can fit; use a smaller input or model, or larger --budget-sram/"
                          f"--budget-flash")
    samples, proxy = load_calibration(data, g0, steps if gain == "proxy" else 2 * steps, seed)
    log(f"[plan] gradients over {len(samples)} {'random' if proxy else 'calibration'} samples")
    G = gradient_scores(g0, samples, tcfg)
    score_all = sum(float(np.sum(v ** 2)) for v in G.values()) or 1.0
    cands = candidates(g0, G)
    tuner = None
    if gain == "measured":
        # Contribution analysis: each candidate alone, fine-tuned on the first half of the
        # samples at the scheme's lr, scored by the loss decrease on the second half.
        half = len(samples) // 2
        tuner = FineTuner(g0, TrainConfig(loss=tcfg.loss, optimizer=optimizer, lr=lr), samples[:half],
                          samples[half:])
        n = sum(len(cs) - 1 for _, cs in cands)
        log(f"[plan] contribution analysis: {n} candidates x {half} fine-tuning steps (lr {lr}), "
            f"validation loss {tuner.base:.4f} before")
        cands = [(name, [cs[0]] + [Candidate(c.label, c.updates, tuner.gain(_updates({name: c})))
                                   for c in cs[1:]]) for name, cs in cands]
        score_all = tuner.gain(parse_scheme("all", g0)) or 1.0
    # Greedy by gain per byte can be fooled by a large item (the classifier) that is worth more
    # than the cheap items that crowd it out (0/1 knapsack): start the greedy from the empty
    # scheme and from each of the best single candidates, and keep the best final scheme.
    starts = [{}]
    singles = sorted(((c.score, i, j) for i, (_, cs) in enumerate(cands) for j, c in enumerate(cs) if j),
                     reverse=True)
    for _, i, j in singles:
        if len(starts) > seeds:
            break
        if cands[i][1][j].score > 0 and fits(mem.predict(_updates({cands[i][0]: cands[i][1][j]}))):
            starts.append({cands[i][0]: cands[i][1][j]})
    best = None
    for start in starts:
        choice0 = {name: start.get(name, cs[0]) for name, cs in cands}
        choice, p = _greedy(cands, choice0, mem, fits)
        ups = _updates(choice)
        if not ups:
            continue
        total = tuner.gain(ups) if tuner else sum(c.score for c in choice.values())
        log(f"[plan] greedy from {'empty' if not start else next(iter(start.values())).label + ' ' + next(iter(start))}"
            f": {len(ups)} tensors, SRAM {_kib(p['sram_total'])}, {'measured' if tuner else 'proxy'} gain "
            f"{100 * total / score_all:.1f}%")
        if best is None or total > best[0]:
            best = (total, choice, p)
    if best is None:
        raise BudgetError(f"{Path(model).name}: no parameter can be trained within {_kib(budget)} SRAM "
                          f"(inference alone needs {_kib(base)}; the cheapest training scheme does not fit)")
    cur_score, choice, cur = best
    scheme = {}
    for c in choice.values():
        scheme.update(c.json())
    return Plan(scheme, [(n, choice[n]) for n, _ in cands], cur, cur_score, score_all, budget, proxy,
                len(mem.cache), time.time() - t0, base_sram=base, gain=gain)


def write_scheme(scheme: dict, path: str | Path) -> None:
    """Write the JSON atomically (a temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(scheme, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def verify(model: str | Path, scheme_path: str | Path, budget: int, optimizer: str = "sgd",
           input_shapes: dict | None = None) -> dict:
    """Final feasibility check: re-predict the written JSON through parse_scheme."""
    g0 = import_onnx(load_onnx(model), input_shapes or {})
    updates = parse_scheme(str(scheme_path), g0)
    p = MemoryModel(g0, TrainConfig(optimizer=optimizer)).predict(updates)
    if p["sram_total"] > budget:
        raise BudgetError(f"internal: planned scheme {scheme_path} needs {_kib(p['sram_total'])} > {_kib(budget)}")
    return p


def report(plan: Plan, model: str | Path) -> str:
    lines = [(f"{Path(model).name}: update plan for SRAM budget {_kib(plan.budget)} "
              f"({plan.evaluations} schemes evaluated in {plan.seconds:.1f} s)")]
    if plan.proxy:
        lines.append("NOTE: no --data given: gains are a proxy from random inputs and labels "
                     "(where gradient mass flows, not measured accuracy)")
    lines.append(f"{'#':>3} {'choice':<7} {'tensors (share of output channels, or in: input channels)':<72} "
                 f"{'gain %':>7}")
    for k, (name, c) in enumerate(plan.choices):
        if not c.updates:
            continue
        ts = ", ".join(f"{t} ({_frac(f) if ax == 0 else 'in ' + _frac(f)})" for t, ax, f in c.updates)
        lines.append(f"{k:>3} {c.label:<7} {ts[:72]:<72} {100 * c.score / plan.score_all:>7.2f}")
    frozen = sum(1 for _, c in plan.choices if not c.updates)
    lines.append(f"{len(plan.scheme)} tensors updated, {frozen}/{len(plan.choices)} layers frozen")
    p = plan.predicted
    lines.append(f"predicted peak SRAM {_kib(p['sram_total'])} ({p['sram_total']} B) <= budget {_kib(plan.budget)}"
                 f" ({plan.budget} B): " + ", ".join(f"{k} {_kib(v)}" for k, v in p["sram"].items() if v))
    lines.append(f"inference alone: {_kib(plan.base_sram)}; flash {_kib(p['flash_total'])}")
    if plan.gain == "measured":
        lines.append(f"measured gain: validation loss decrease {plan.score:.4g} after the short fine-tuning run = "
                     f"{100 * plan.score / plan.score_all:.1f}% of the full update's ({plan.score_all:.4g})")
    else:
        lines.append(f"score: {plan.score:.4g} = {100 * plan.score / plan.score_all:.1f}% of the full-update "
                     f"first-order gain sum ||mean grad||^2 ({plan.score_all:.4g})")
    return "\n".join(lines)


def run_plan(model: str, budget: int, out: str, data: str | None = None, target: str = "mcu",
             optimizer: str = "sgd", flash_budget: int = 1024 * 1024, steps: int = 16, seed: int = 0,
             input_shapes: dict | None = None, quiet: bool = False, gain: str | None = None,
             lr: float = 0.01) -> Plan:
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    plan = search(model, budget, data, target, optimizer, flash_budget, steps, seed, input_shapes, log, gain, lr)
    write_scheme(plan.scheme, out)
    plan.predicted = verify(model, out, budget, optimizer, input_shapes)
    print(report(plan, model))
    print(f"wrote {out}")
    return plan
