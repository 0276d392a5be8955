"""The memory timeline of a training step: arena bytes alive at every step of the schedule,
split by kind, as text and as a PNG (the way TTE's memory figures look).

Uses the same training graph and plan as ``compile --target mcu`` (compiler/plan.py's
training_graph + plan_memory). A buffer (tensors merged by views and in-place ops) is alive
at steps [start, end]; step -1 is "inputs written before the first node". Each buffer gets one
kind: ``input`` (holds a graph input), ``scratch`` (kernel workspace), ``kept`` (a forward
activation or activation cut that a backward node reads), ``gradient`` (made by the backward
pass), ``mask`` (a 1-bit ReLU mask, passes/relu_mask.py, kept for the backward instead of the
ReLU's output) or ``activation`` (a forward activation that dies in the forward pass). The live-bytes
column is the plan's own liveness sum, so its maximum is the plan's arena lower bound.
"""

from __future__ import annotations

from pathlib import Path

from .autodiff import TrainConfig
from .frontend import import_onnx, load_onnx
from .inspect import saved_activations
from .passes.plan_memory import plan_memory
from .scheme import parse_scheme

KINDS = ("input", "kept", "mask", "activation", "gradient", "scratch")
LABELS = {"input": "inputs", "kept": "activations kept for backward", "mask": "1-bit ReLU masks kept for backward",
          "activation": "activations (forward only)", "gradient": "gradients", "scratch": "scratch"}
COLORS = {"input": "#7f7f7f", "kept": "#1f77b4", "mask": "#9467bd", "activation": "#aec7e8", "gradient": "#d62728",
          "scratch": "#2ca02c"}


def timeline(g, plan) -> dict:
    """Per step: node name, op, live bytes per kind, live total, arena top and high-water."""
    saved = set(saved_activations(g))
    masks = {n.outputs[0] for n in g.nodes if n.op == "ReluMask"}
    n_fwd = g.meta.get("n_forward", len(g.nodes))
    made_by = {o: i for i, n in enumerate(g.nodes) for o in n.outputs}
    kind = {}
    for b in plan.buffers:
        roles = {g.tensors[t].role for t in b.members}
        if any(t in g.inputs for t in b.members):
            kind[b.id] = "input"
        elif "scratch" in roles:
            kind[b.id] = "scratch"
        elif any(t in masks for t in b.members):
            kind[b.id] = "mask"
        elif any(t in saved for t in b.members):
            kind[b.id] = "kept"
        elif any(made_by.get(t, -1) >= n_fwd for t in b.members):
            kind[b.id] = "gradient"
        else:
            kind[b.id] = "activation"
    rows, high = [], 0
    for s in range(-1, len(g.nodes)):
        live = [b for b in plan.buffers if b.start <= s <= b.end]
        per = {k: sum(b.size for b in live if kind[b.id] == k) for k in KINDS}
        top = max((b.offset + b.size for b in live), default=0)
        high = max(high, top)
        node = g.nodes[s] if s >= 0 else None
        rows.append({"step": s, "node": node.name if node else "(inputs)", "op": node.op if node else "-",
                     "phase": "fwd" if s < n_fwd else "bwd", "live": sum(per.values()), "top": top,
                     "high_water": high, **per})
    return {"rows": rows, "peak": max(r["live"] for r in rows), "arena": plan.arena_bytes,
            "lower_bound": plan.lower_bound, "n_forward": n_fwd}


def model_timeline(path, update: str, input_shapes: dict | None = None, optimizer: str = "sgd"):
    """(training graph, plan, timeline) of MODEL for an update scheme, as the mcu compile sees it."""
    from .plan import training_graph
    g0 = import_onnx(load_onnx(path), input_shapes or {})
    g = training_graph(g0, parse_scheme(update, g0), TrainConfig(optimizer=optimizer), "mcu")
    plan = plan_memory(g)
    return g, plan, timeline(g, plan)


def table(tl: dict, limit: int = 400) -> str:
    lines = [(f"memory timeline: peak live {tl['peak']} B (= arena lower bound {tl['lower_bound']} B), "
             f"arena {tl['arena']} B; steps 0..{tl['n_forward'] - 1} forward, then loss + backward"),
             (f"{'step':>5} {'ph':<3} {'node':<44} {'op':<16} {'live B':>8} {'kept':>8} {'masks':>6} {'grads':>8} "
             f"{'high-water':>10}")]
    rows = tl["rows"]
    for r in rows[:limit]:
        lines.append(f"{r['step']:>5} {r['phase']:<3} {r['node'][-44:]:<44} {r['op'][:16]:<16} {r['live']:>8} "
                     f"{r['kept']:>8} {r['mask']:>6} {r['gradient']:>8} {r['high_water']:>10}"
                     + ("  <- peak" if r["live"] == tl["peak"] else ""))
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more steps")
    return "\n".join(lines)


def plot(tl: dict, png: str | Path, title: str = "", budget: int | None = None, static_bytes: int = 0) -> Path:
    """Stacked live bytes per step by kind; the budget line is the SRAM budget minus what lives
    outside the arena (params, optimizer state, stack, runtime), i.e. what the arena may use."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = tl["rows"]
    xs = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(12, 4.2))
    ax.stackplot(xs, *[[r[k] / 1024 for r in rows] for k in KINDS], labels=[LABELS[k] for k in KINDS],
                 colors=[COLORS[k] for k in KINDS], step="mid")
    ax.plot(xs, [r["high_water"] / 1024 for r in rows], color="k", lw=1, ls=":", label="arena high-water")
    ax.axvline(tl["n_forward"] - 0.5, color="k", lw=0.8, alpha=0.5)
    ax.text(tl["n_forward"] - 0.5, ax.get_ylim()[1] * 0.97, " backward", va="top", fontsize=8)
    if budget:
        avail = (budget - static_bytes) / 1024
        ax.axhline(avail, color="r", lw=1.2, ls="--",
                   label=f"budget {budget / 1024:.0f} KiB - static {static_bytes / 1024:.1f} KiB")
    ax.set_xlabel("schedule step (node)")
    ax.set_ylabel("live arena KiB")
    ax.set_title(title or "training-step memory timeline")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.margins(x=0)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def memory_report(path, update: str, input_shapes: dict | None = None, png=None, budget: int | None = None,
                  limit: int = 400) -> str:
    from .build import load_target
    from .memory import predict
    g, plan, tl = model_timeline(path, update, input_shapes)
    trainable = {n.inputs[0] for n in g.nodes if n.op.endswith("Update")}
    info = {"arena_bytes": plan.arena_bytes, "trainable_bytes": sum(g.tensors[p].nbytes for p in trainable),
            "state_bytes": sum(g.tensors[s].nbytes for s in g.meta["state"]), "frozen_bytes": 0}
    pred = predict(info, load_target("mcu")["memory"]["stack_bytes"])
    static = pred["sram_total"] - plan.arena_bytes
    out = table(tl, limit)
    out += f"\npredicted mcu SRAM {pred['sram_total']} B (arena {plan.arena_bytes} B + static {static} B)"
    if budget:
        out += f" vs budget {budget} B: {'fits' if pred['sram_total'] <= budget else 'DOES NOT FIT'}"
    if png:
        p = plot(tl, png, f"{Path(path).name}, update {update}", budget, static)
        out += f"\nwrote {p}"
    return out
