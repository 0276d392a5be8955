"""edgegrad plan: search the sparse update scheme that buys the most expected accuracy gain
within an SRAM budget (TTE-style contribution analysis + memory-aware greedy search).

Candidates, per layer in the order of ``scheme.layers(graph)``: frozen, bias only, then the
weight's leading share 1/8, 1/4, 1/2, 1 of its output channels (plus the bias), and for
Conv/Gemm/MatMul weights with more than one input channel also the leading share 1/8, 1/4, 1/2
of the input channels ``{"in": f}`` (plus the bias).

Memory of a scheme (exact, not a model): the pipeline's own passes for the dtype
(``pipeline.training_steps``: fp32 fold_frozen -> fold_batchnorm -> build_training_graph ->
recompute; fp16 the same then lower_fp16; int8 build_training_graph -> quantize_qas -> int8_input ->
fuse_pointwise_depthwise -> fold_weight_dequantize), select_kernels(target), plan_memory, then
``memory.predict(pipeline.memory_info(...))["sram_total"]`` (arena + trainable params and int8
masters + optimizer state + stack + runtime), i.e. the number ``compile --target mcu --dtype D``
checks. Cached per scheme. The empty scheme is the inference-only plan of the forward graph (fp16:
of the fp32 forward graph, an upper bound, so it refuses nothing by itself).

``--dtype int8`` reads a quantized QDQ model (``edgegrad quantize``) as compile does; its candidates
take leading output-channel shares only (QAS scales are per output channel). The fine-tuning runs
and gradients use ``StepInterpreter``: the numpy interpreter plus the fp16 nodes (binary16 rounding
at every stored tensor, dynamic loss scaling, skipped steps) and QUpdate (QAS SGD/momentum in integer
units, fp32 master or not), tested against the compiled host build in that dtype.

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
on the host, no torch. Each candidate alone is fine-tuned ``repeats`` times (default 3) for
``steps`` batch-1 steps at ``--lr`` (the numpy interpreter running the pipeline's own training
graph for that scheme, in the dtype), each run on its own random split of the calibration data
into ``steps`` training and ``holdout`` (default 4*steps) held-back samples, and scored by the
held-back accuracy it gains (the loss breaks ties), as a lower confidence bound over the runs
(FineTuner). Gains are then summed across layers as if independent, which overstates
overlapping layers; so each final scheme of the search is itself fine-tuned and measured, and
the best measured one wins. If no candidate gains anything, the least harmful single candidate
is written, with a note. On the Fashion-MNIST class-incremental task the
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

from .autodiff import TrainConfig
from .errors import BudgetError, EdgegradError
from .interp import Interpreter
from .ir import Graph
from .memory import _kib, predict
from .passes.fold_frozen import fold_frozen
from .passes.fuse_eltwise import fuse_eltwise
from .passes.fuse_int8 import fuse_pointwise_depthwise, int8_input
from .passes.plan_memory import plan_memory
from .passes.select_kernels import select_kernels
from .scheme import Update, input_axis, layers, parse_scheme

DTYPES = ("fp32", "fp16", "int8")
# int8 passes that only move memory (int8 graph input, fused pointwise+depthwise, weights read as int8 by the
# input gradients): same numbers, so the fine-tuning runs of the numpy interpreter skip them.
MEMORY_ONLY = ("int8_input", "fuse_pointwise_depthwise", "fold_weight_dequantize")

SHARES = (1 / 8, 1 / 4, 1 / 2, 1.0)
IN_SHARES = (1 / 8, 1 / 4, 1 / 2)
IN_OPS = ("Conv", "Gemm", "MatMul")
TIE_BREAK = 0.01  # measured gain: weight of the held-back loss decrease next to the accuracy gain
RISK = 1.0  # measured gain: the mean over the runs minus RISK standard errors (a lower confidence bound)


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
    dtype: str = "fp32"
    notes: list[str] = field(default_factory=list)
    measured: str = ""  # measured gain: the written scheme's, described
    measured_all: str = ""  # the full update's
    runs: str = ""  # measured gain: how many fine-tuning runs of how many steps


def _frac(f: float) -> str:
    return {1 / 8: "1/8", 1 / 4: "1/4", 1 / 2: "1/2", 1.0: "1"}.get(f, f"{f:g}")


def _config(tcfg: TrainConfig, target: str, dtype: str, int8_master: str = "fp32"):
    from .pipeline import CompileConfig
    return CompileConfig(target=target, dtype=dtype, optimizer=tcfg.optimizer, lr=tcfg.lr, momentum=tcfg.momentum,
                         loss=tcfg.loss, int8_master=int8_master)


def forward_graph(model: str | Path, dtype: str = "fp32", input_shapes: dict | None = None) -> Graph:
    """The frontend's graph of MODEL as ``compile --dtype`` reads it (int8: a quantized QDQ model,
    lowered by quantize_lower); the errors are compile's (a float model with int8 and vice versa)."""
    from .pipeline import CompileConfig, frontend_graph
    if dtype not in DTYPES:
        raise EdgegradError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    return frontend_graph(model, CompileConfig(dtype=dtype, update="none", input_shapes=input_shapes or {}))[0]


def training_graph(g0: Graph, updates: dict[str, Update], tcfg: TrainConfig, target: str = "mcu",
                   dtype: str = "fp32", interpret: bool = False, int8_master: str = "fp32") -> Graph:
    """The pipeline's training graph for ``updates`` and dtype (a fresh copy of the forward graph g0):
    compile_model's own passes (pipeline.training_steps), then select_kernels and fuse_eltwise. ``interpret``: without
    the int8 passes that only move memory (MEMORY_ONLY), for the numpy interpreter."""
    from .pipeline import training_steps
    g = copy.deepcopy(g0)
    for name, step in training_steps(updates, tcfg, _config(tcfg, target, dtype, int8_master)):
        if not (interpret and name in MEMORY_ONLY):
            g = step(g)
    return fuse_eltwise(select_kernels(g, target), target)


class StepInterpreter(Interpreter):
    """The numpy Interpreter plus the nodes the fp16 and int8 training graphs add, with the
    generated C's semantics (runtime_c/eg_f16.c, eg_int8.c): fp16 storage (CastF16 and every
    native fp16 kernel round what they store to binary16, CastF32 widens), dynamic loss scaling
    (LossCheckF16 / LossUnscale(F16), updates skipped on overflow), and QUpdate
    (QAS-scaled SGD/momentum in integer units, optional fp32 master, round half away from zero,
    saturate). So the measured gains of ``--dtype fp16/int8`` come from fine-tuning in that dtype."""

    def _run(self, nodes) -> None:
        v = self.values
        for n in nodes:
            if n.op == "CastF16":
                v[n.outputs[0]] = v[n.inputs[0]].astype(np.float16).astype(np.float32)
            elif n.op == "CastF32":
                v[n.outputs[0]] = v[n.inputs[0]].astype(np.float32)
            elif n.op == "LossScale":
                ls = v[n.inputs[1]]
                ls[2] = 0.0
                v[n.outputs[0]] = v[n.inputs[0]] * np.float32(2.0 ** (n.attrs["log2_init"] + int(ls[0])))
            elif n.op == "LossUnscale":
                ls, x = v[n.inputs[1]], v[n.inputs[0]]
                if not np.all(np.isfinite(x)):
                    ls[2] = 1.0
                v[n.inputs[0]] = x * np.float32(2.0 ** -(n.attrs["log2_init"] + int(ls[0])))
            elif n.op == "LossScaleUpdate":
                ls, a = v[n.inputs[0]], n.attrs
                if ls[2] != 0:
                    ls[0] -= 1.0 if a["log2_init"] + int(ls[0]) > -24 else 0.0
                    ls[1] = 0.0
                else:
                    ls[1] += 1.0
                    if ls[1] >= a["growth_interval"]:
                        ls[0] += 1.0 if a["log2_init"] + int(ls[0]) < 15 else 0.0
                        ls[1] = 0.0
            elif n.op == "LossCheckF16":  # an fp16 parameter gradient: flag inf/NaN
                if not np.all(np.isfinite(v[n.inputs[0]])):
                    v[n.inputs[1]][2] = 1.0
            elif n.op == "LossUnscaleF16":  # into a short-lived fp32 copy
                ls = v[n.inputs[1]]
                v[n.outputs[0]] = v[n.inputs[0]] * np.float32(2.0 ** -(n.attrs["log2_init"] + int(ls[0])))
            elif n.op == "QUpdate":
                self._qupdate(n)
            elif n.attrs.get("skip_on_overflow") and v[n.attrs["skip_on_overflow"]][2] != 0:
                continue  # an fp16 step that overflowed writes no parameter
            else:
                super()._run([n])
                for o in n.outputs:  # a native fp16 kernel rounds what it stores
                    if o and self.g.tensors[o].dtype == "f16":
                        v[o] = v[o].astype(np.float16).astype(np.float32)

    def _qupdate(self, n) -> None:
        a, v = n.attrs, self.values
        param, grad, gscale, master, mom = n.inputs
        w = v[param].reshape(-1)
        idx = (np.arange(a["rows"])[:, None] * a["stride"] + np.arange(a["inner"])[None, :]).reshape(-1)
        f32 = np.float32
        t = np.repeat(v[gscale].astype(f32), a["inner"]) * v[grad].reshape(-1).astype(f32)
        if mom:
            m = v[mom].reshape(-1)
            m[:] = f32(a["mu"]) * m + t
            t = m
        base = v[master].reshape(-1) if master else w[idx].astype(f32)
        new = base - f32(a["lr"]) * t
        if master:
            v[master].reshape(-1)[:] = new
        lim = 127.0 if w.dtype == np.int8 else 2147483520.0
        w[idx] = np.trunc(np.clip(new, -lim, lim) + np.where(new >= 0, f32(0.5), f32(-0.5))).clip(-lim, lim)


class MemoryModel:
    """SRAM prediction per scheme, exactly as compile_model computes it for the dtype, cached."""

    def __init__(self, g0: Graph, tcfg: TrainConfig, target: str = "mcu", dtype: str = "fp32",
                 int8_master: str = "fp32"):
        from .build import load_target
        self.g0, self.tcfg, self.target, self.dtype, self.int8_master = g0, tcfg, target, dtype, int8_master
        self.stack = load_target("mcu")["memory"]["stack_bytes"]
        self.cache: dict[tuple, dict] = {}

    def predict(self, updates: dict[str, Update]) -> dict:
        key = tuple(sorted((t, u.axis, u.fraction) for t, u in updates.items()))
        if key not in self.cache:
            self.cache[key] = self._predict(updates)
        return self.cache[key]

    def _predict(self, updates: dict[str, Update]) -> dict:
        from .pipeline import memory_info
        if not updates:  # inference only: the forward graph's plan (fp16: its fp32 forward, an upper bound)
            g = copy.deepcopy(self.g0)
            g = fuse_pointwise_depthwise(int8_input(g)) if self.dtype == "int8" else fold_frozen(g, set())
            plan = plan_memory(g)
            info = {"arena_bytes": plan.arena_bytes, "trainable_bytes": 0, "state_bytes": 0,
                    "frozen_bytes": sum(t.nbytes for t in g.tensors.values() if t.role in ("param", "const")
                                        and (t.dtype == "f32" or self.dtype == "int8"))}
            return predict(info, self.stack)
        g = training_graph(self.g0, updates, self.tcfg, self.target, self.dtype, int8_master=self.int8_master)
        plan = plan_memory(g)
        pred = predict(memory_info(g, updates, plan), self.stack)
        pred["arena_lower_bound"] = plan.lower_bound
        return pred


def load_calibration(path: str | Path | None, g0: Graph, steps: int | None, seed: int) -> tuple[list, bool]:
    """[(x, label)] samples: ``steps`` of them (None: all, shuffled) from an .npz with x [N, ...] and
    y [N], or random (proxy=True)."""
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
    idx = rng.permutation(len(x))[:steps]  # steps=None: all of them
    return [(x[i].reshape(shape), np.array([int(y[i])])) for i in idx], False


def gradient_scores(g0: Graph, samples: list, tcfg: TrainConfig, dtype: str = "fp32") -> dict[str, np.ndarray]:
    """Mean gradient of every trainable tensor over the samples (the ``all`` graph in dtype, lr=0).
    In int8 it is the real-valued gradient of the dequantized graph: QAS scales the integer step so
    that the real weight moves by -lr * g, as in fp32 (passes/quantize_qas.py)."""
    upd = parse_scheme("all", g0)
    g = training_graph(g0, upd, TrainConfig(loss=tcfg.loss, optimizer="sgd", lr=0.0), "host", dtype, interpret=True)
    grads = {n.inputs[0]: n.inputs[1] for n in g.nodes if n.op in ("SGDUpdate", "QUpdate")}
    it = StepInterpreter(g)
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


def candidates(g0: Graph, G: dict[str, np.ndarray], dtype: str = "fp32") -> list[tuple[str, list[Candidate]]]:
    """Every layer's candidates; int8 has no input-channel shares (its QAS scales are per output channel)."""
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
            if dtype != "int8" and by_node[name].op in IN_OPS and len(shape) > ax and shape[ax] > 1:
                for f in IN_SHARES:
                    if Update(ax, f).rows(shape) == Update(ax, f * 2).rows(shape):
                        continue
                    cs.append(Candidate(f"in {_frac(f)}", ((w, ax, f),) + bias, _share_score(G[w], ax, f) + sb))
        out.append((name, cs))
    return out


def _updates(choice: dict[str, Candidate]) -> dict[str, Update]:
    return {t: Update(axis, f) for c in choice.values() for t, axis, f in c.updates}


def _val_stats(it: Interpreter, samples: list, loss: str) -> tuple[float, float]:
    """(accuracy, mean loss) of the interpreter's current weights on held-back samples (no update);
    accuracy is 0 for the MSE loss."""
    total, hits = 0.0, 0
    for x, y in samples:
        z = it.infer([x])[0].reshape(-1).astype(np.float64)
        if loss == "cross_entropy":
            label = int(np.asarray(y).reshape(-1)[0])
            hits += int(np.argmax(z) == label)
            z = z - z.max()
            total += float(np.log(np.exp(z).sum()) - z[label])
        else:
            total += float(np.mean((z - np.asarray(y, np.float64).reshape(-1)) ** 2))
    n = max(1, len(samples))
    return hits / n, total / n


class FineTuner:
    """TTE's contribution analysis on the host, without torch: fine-tune a scheme for a few
    batch-1 steps with the numpy interpreter of the pipeline's own training graph in the dtype, and
    measure what it buys on held-back calibration samples; repeated over ``folds`` (independent
    random train/validation splits of the calibration data) and averaged. Cached per scheme.

    Per run: the increase of the held-back accuracy (a fraction: 0.01 = one point) + TIE_BREAK x the
    decrease of the loss (cross-entropy; the loss decrease alone for MSE). gain = the mean over the
    runs minus RISK standard errors of it: a lower confidence bound, so a candidate whose runs
    disagree ranks below a steady one of the same mean. Why each part (``sparsebench`` on HAR,
    README): accuracy, not loss, is what the plan is for (the classifier's weights lower the held-back
    loss the most and lose accuracy at the end of the stream: batch-1 SGD on the classifier swings
    between sitting and standing); a single run on 64 held-back samples ranks candidates by noise
    (one sample is 1.6 points), hence several runs, 4x as many held-back samples as steps
    (``holdout``), and the bound; on a few hundred samples accuracy still ties, the loss breaks it."""

    def __init__(self, g0: Graph, tcfg: TrainConfig, folds: list[tuple[list, list]], dtype: str = "fp32",
                 int8_master: str = "fp32"):
        self.g0, self.tcfg, self.folds, self.dtype = g0, tcfg, folds, dtype
        self.int8_master = int8_master
        before = Interpreter(copy.deepcopy(g0))
        self.bases = [_val_stats(before, val, tcfg.loss) for _, val in folds]
        self.base_acc = float(np.mean([a for a, _ in self.bases]))
        self.base = float(np.mean([lo for _, lo in self.bases]))  # mean held-back loss before
        self.cache: dict[tuple, float] = {}
        self.stats: dict[tuple, tuple[float, float]] = {}  # (accuracy gain, loss decrease), fold means
        self.runs: dict[tuple, np.ndarray] = {}  # per-fold gains

    def gain(self, updates: dict[str, Update]) -> float:
        key = tuple(sorted((t, u.axis, u.fraction) for t, u in updates.items()))
        if key not in self.cache:
            if not updates:
                self.stats[key] = (0.0, 0.0)
            else:
                runs = []  # (accuracy gain, loss decrease) per fold
                for (train, val), (acc0, loss0) in zip(self.folds, self.bases):
                    it = StepInterpreter(training_graph(self.g0, updates, self.tcfg, "host", self.dtype,
                                                        interpret=True, int8_master=self.int8_master))
                    with np.errstate(all="ignore"):  # a diverging run scores -inf, quietly
                        for x, y in train:
                            it.train_step([x], y)
                        acc, loss = _val_stats(it, val, self.tcfg.loss)
                    runs.append((acc - acc0, loss0 - loss))
                self.stats[key] = tuple(float(v) for v in np.mean(runs, axis=0))
                self.runs[key] = np.array([da + TIE_BREAK * dl if self.tcfg.loss == "cross_entropy" else dl
                                           for da, dl in runs])
            r = self.runs.get(key, np.zeros(1))
            sem = float(np.std(r, ddof=1) / np.sqrt(len(r))) if len(r) > 1 else 0.0
            score = float(np.mean(r)) - RISK * sem
            self.cache[key] = score if np.isfinite(score) else -np.inf  # a run that diverged (inf/NaN loss)
        return self.cache[key]

    def describe(self, updates: dict[str, Update]) -> str:
        self.gain(updates)
        da, dl = self.stats[tuple(sorted((t, u.axis, u.fraction) for t, u in updates.items()))]
        acc = f"held-back accuracy {100 * da:+.1f} points, " if self.tcfg.loss == "cross_entropy" else ""
        return f"{acc}loss {-dl:+.4f}"


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
           seeds: int = 4, dtype: str = "fp32", int8_master: str = "fp32", repeats: int = 3,
           holdout: int | None = None) -> Plan:
    """Search the scheme; ``gain``: "measured" (short fine-tuning runs, needs data; the default
    with data; ``repeats`` runs of ``steps`` steps, ``holdout`` held-back samples each, default
    4*steps) or "proxy" (first-order, the default without data). ``dtype``: the scheme's memory
    is that of ``compile --target mcu --dtype D`` and the fine-tuning runs train in D (int8: a
    quantized QDQ model, as ``edgegrad quantize`` writes it)."""
    if target != "mcu":
        raise EdgegradError(f"edgegrad plan predicts SRAM for the mcu target only, not {target!r}")
    gain = gain or ("proxy" if data is None else "measured")
    if gain not in ("proxy", "measured"):
        raise EdgegradError(f"--gain must be proxy or measured, not {gain!r}")
    if gain == "measured" and data is None:
        raise EdgegradError("--gain measured fine-tunes on calibration data: give --data calib.npz")
    t0 = time.time()
    log = log or (lambda *a: None)
    if dtype == "int8" and optimizer not in ("sgd", "momentum"):
        raise EdgegradError("--dtype int8 trains with --optimizer sgd or momentum (the QAS setting)")
    g0 = forward_graph(model, dtype, input_shapes)
    tcfg = TrainConfig(optimizer=optimizer)
    mem = MemoryModel(g0, tcfg, target, dtype, int8_master)

    def fits(p: dict) -> bool:
        return p["sram_total"] <= budget and p["flash_total"] <= flash_budget

    cur = mem.predict({})
    base = cur["sram_total"]
    if not fits(cur) and dtype != "fp16":  # fp16: the fp32 forward is only an upper bound
        parts = ", ".join(f"{k} {_kib(v)}" for k, v in cur["sram"].items() if v)
        raise BudgetError(f"{Path(model).name}: inference alone needs SRAM {_kib(base)} ({parts}) vs budget "
                          f"{_kib(budget)}, flash {_kib(cur['flash_total'])} vs budget {_kib(flash_budget)}: "
                          f"no update scheme can fit; use a smaller input or model, or larger --budget-sram/"
                          f"--budget-flash")
    if steps < 1 or repeats < 1:
        raise EdgegradError(f"--steps and --repeats must be at least 1 (got {steps}, {repeats})")
    if gain == "proxy":
        samples, proxy = load_calibration(data, g0, steps, seed)
    else:  # repeated hold-out: each run draws 2*steps of all the calibration samples
        pool, proxy = load_calibration(data, g0, None, seed)
        n_train = min(steps, len(pool) // 2)
        n = min(len(pool), n_train + (holdout or 4 * steps))
        if n_train < 1:
            raise EdgegradError(f"--data {data}: --gain measured needs at least 2 calibration samples")
        samples, rng = pool[:n], np.random.default_rng(seed + 1)
        folds = []
        for r in range(repeats):
            part = samples if r == 0 else [pool[i] for i in rng.permutation(len(pool))[:n]]
            folds.append((part[:n_train], part[n_train:]))
    log(f"[plan] gradients over {len(samples)} {'random' if proxy else 'calibration'} samples")
    G = gradient_scores(g0, samples, tcfg, dtype)
    score_all = sum(float(np.sum(v ** 2)) for v in G.values()) or 1.0
    cands = candidates(g0, G, dtype)
    tuner = None
    if gain == "measured":
        # Contribution analysis: each candidate alone, fine-tuned on the first half of each
        # fold at the scheme's lr, scored on the second half (FineTuner), averaged over the folds.
        tuner = FineTuner(g0, TrainConfig(loss=tcfg.loss, optimizer=optimizer, lr=lr), folds, dtype, int8_master)
        k = sum(len(cs) - 1 for _, cs in cands)
        log(f"[plan] contribution analysis: {k} candidates x {repeats} run(s) of {n_train} {dtype} fine-tuning steps "
            f"(lr {lr}), held-back accuracy {100 * tuner.base_acc:.1f}% and loss {tuner.base:.4f} before")
        cands = [(name, [cs[0]] + [Candidate(c.label, c.updates, tuner.gain(_updates({name: c})))
                                   for c in cs[1:]]) for name, cs in cands]
        score_all = tuner.gain(parse_scheme("all", g0))
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
            f": {len(ups)} tensors, SRAM {_kib(p['sram_total'])}, "
            + (f"measured: {tuner.describe(ups)}" if tuner else f"proxy gain {100 * total / score_all:.1f}%"))
        if best is None or total > best[0]:
            best = (total, choice, p)
    notes = []
    if best is None and tuner:  # no candidate helped on held-back samples: the least harmful single one
        for _, i, j in singles:
            c = {cands[i][0]: cands[i][1][j]}
            p = mem.predict(_updates(c))
            if fits(p):
                choice = {name: c.get(name, cs[0]) for name, cs in cands}
                best = (tuner.gain(_updates(choice)), choice, p)
                notes.append(f"no candidate improved the held-back calibration samples in the contribution runs "
                             f"(the full update: {tuner.describe(parse_scheme('all', g0))}); wrote the least "
                             f"harmful single candidate. Consider a smaller --lr or not training on this data")
                break
    if best is None:
        raise BudgetError(f"{Path(model).name}: no parameter can be trained within {_kib(budget)} SRAM "
                          f"(inference alone needs {_kib(base)}; the cheapest training scheme does not fit)")
    cur_score, choice, cur = best
    scheme = {}
    for c in choice.values():
        scheme.update(c.json())
    return Plan(scheme, [(n, choice[n]) for n, _ in cands], cur, cur_score, score_all, budget, proxy,
                len(mem.cache), time.time() - t0, base_sram=base, gain=gain, dtype=dtype, notes=notes,
                measured=tuner.describe(_updates(choice)) if tuner else "",
                measured_all=tuner.describe(parse_scheme("all", g0)) if tuner else "",
                runs=f"{repeats} run(s) of {n_train} steps, {n - n_train} held-back samples each" if tuner
                else "")


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
           input_shapes: dict | None = None, dtype: str = "fp32", int8_master: str = "fp32") -> dict:
    """Final feasibility check: re-predict the written JSON through parse_scheme."""
    g0 = forward_graph(model, dtype, input_shapes)
    updates = parse_scheme(str(scheme_path), g0)
    p = MemoryModel(g0, TrainConfig(optimizer=optimizer), dtype=dtype, int8_master=int8_master).predict(updates)
    if p["sram_total"] > budget:
        raise BudgetError(f"internal: planned scheme {scheme_path} needs {_kib(p['sram_total'])} > {_kib(budget)}")
    return p


def report(plan: Plan, model: str | Path) -> str:
    lines = [(f"{Path(model).name}: {plan.dtype} update plan for SRAM budget {_kib(plan.budget)} "
              f"({plan.evaluations} schemes evaluated in {plan.seconds:.1f} s)")]
    if plan.proxy:
        lines.append("NOTE: no --data given: gains are a proxy from random inputs and labels "
                     "(where gradient mass flows, not measured accuracy)")
    measured = plan.gain == "measured"
    lines.append(f"{'#':>3} {'choice':<7} {'tensors (share of output channels, or in: input channels)':<72} "
                 + (f"{'gain':>7}" if measured else f"{'gain %':>7}"))
    for k, (name, c) in enumerate(plan.choices):
        if not c.updates:
            continue
        ts = ", ".join(f"{t} ({_frac(f) if ax == 0 else 'in ' + _frac(f)})" for t, ax, f in c.updates)
        lines.append(f"{k:>3} {c.label:<7} {ts[:72]:<72} "
                     + (f"{100 * c.score:>+7.2f}" if measured else f"{100 * c.score / (plan.score_all or 1):>7.2f}"))
    frozen = sum(1 for _, c in plan.choices if not c.updates)
    lines.append(f"{len(plan.scheme)} tensors updated, {frozen}/{len(plan.choices)} layers frozen")
    p = plan.predicted
    lines.append(f"predicted peak SRAM {_kib(p['sram_total'])} ({p['sram_total']} B) <= budget {_kib(plan.budget)}"
                 f" ({plan.budget} B): " + ", ".join(f"{k} {_kib(v)}" for k, v in p["sram"].items() if v))
    lines.append(f"inference alone: {_kib(plan.base_sram)}; flash {_kib(p['flash_total'])}")
    if measured:
        lines.append(f"measured gain ({plan.runs}; gain column: accuracy points + {TIE_BREAK} x loss decrease, "
                     f"each layer alone): {plan.measured}; the full update: {plan.measured_all}")
    else:
        lines.append(f"score: {plan.score:.4g} = {100 * plan.score / plan.score_all:.1f}% of the full-update "
                     f"first-order gain sum ||mean grad||^2 ({plan.score_all:.4g})")
    lines += [f"NOTE: {n}" for n in plan.notes]
    return "\n".join(lines)


def run_plan(model: str, budget: int, out: str, data: str | None = None, target: str = "mcu",
             optimizer: str = "sgd", flash_budget: int = 1024 * 1024, steps: int = 16, seed: int = 0,
             input_shapes: dict | None = None, quiet: bool = False, gain: str | None = None,
             lr: float = 0.01, dtype: str = "fp32", int8_master: str = "fp32", repeats: int = 3,
             holdout: int | None = None) -> Plan:
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    plan = search(model, budget, data, target, optimizer, flash_budget, steps, seed, input_shapes, log, gain, lr,
                  dtype=dtype, int8_master=int8_master, repeats=repeats, holdout=holdout)
    write_scheme(plan.scheme, out)
    plan.predicted = verify(model, out, budget, optimizer, input_shapes, dtype, int8_master)
    print(report(plan, model))
    print(f"wrote {out}")
    return plan
