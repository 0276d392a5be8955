"""recompute: trade a little compute for the memory peak, by recomputing kept forward values in
the backward pass instead of keeping them from the forward pass.

Assumes: the training graph of build_training_graph (forward nodes first, ``meta["n_forward"]``
of them, then loss, backward and updates), before select_kernels. Guarantees: the same values
reach every backward node (the recomputed nodes are copies of forward nodes with the same
inputs, so the numbers are bit-identical), and the planned peak (max live arena bytes, the
planner's lower bound) only goes down; every rewrite that does not lower it is undone.

A kept tensor t (a forward activation a backward node reads) is recomputable when its producer
and, recursively, the producers of its inputs that are not kept themselves, are cheap ops
(elementwise, activations, views, pooling, a convolution) whose leaves are parameters, graph
inputs or tensors the backward keeps anyway. The rewrite copies that chain right before the
first backward node that reads t and points the backward readers at the copy, so t dies after
its last forward use (each rewrite is recorded in ``meta["recompute_log"]``: tensor, bytes, the
recomputed ops, the arena before and after, MACs; ``edgegrad inspect`` prints it). E.g. a
bias-only MobileNetV2 without relu_mask keeps every ReLU6 output for its gradient mask;
recomputing the output of a depthwise conv + ReLU6 from its (kept) input frees it for the
whole stretch between the forward pass and that layer's backward.

Greedy: at the current peak step, try the ``max_trials`` largest recomputable kept tensors live
there (each trial re-plans the graph, so the pass stays within seconds on MobileNetV2); apply the one
that gives the smallest arena (then lower bound, then fewest MACs), if it shrinks the planned
arena by at least ``min_gain`` of it without raising the lower bound; repeat until nothing does
or the extra MACs would exceed ``max_extra`` of the forward pass's MACs. The mcu target runs it
by default (SRAM is what binds there); the host build only on request (CompileConfig.recompute).
"""

from __future__ import annotations

import copy

from ..cost import graph_macs, node_macs
from ..ir import Graph, Node
from .plan_memory import plan_memory

RECOMPUTABLE = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Add", "Sub", "Mul",
                "Div", "Reshape", "Flatten", "AveragePool", "GlobalAveragePool", "MaxPool", "Conv"}
MAX_CHAIN = 4  # nodes recomputed for one kept tensor


def _kept(g: Graph, n_fwd: int) -> dict[str, int]:
    """Forward activations read by the backward: tensor -> index of its first backward reader."""
    fwd_out = {o for n in g.nodes[:n_fwd] for o in n.outputs if o}
    first: dict[str, int] = {}
    for i, n in enumerate(g.nodes[n_fwd:], n_fwd):
        for t in n.inputs:
            if t in fwd_out and g.tensors[t].role == "activation":
                first.setdefault(t, i)
    return first


def _chain(g: Graph, t: str, producers: dict[str, Node], kept: dict[str, int]) -> list[Node] | None:
    """The forward nodes that recompute t from params, inputs and other kept tensors (forward order)."""
    chain: list[Node] = []

    def visit(name: str) -> bool:
        p = producers.get(name)
        if p is None or p.op not in RECOMPUTABLE or p.attrs.get("save") or len(p.outputs) != 1:
            return False
        for i in p.inputs:
            if not i or g.tensors[i].role in ("param", "const", "input") or (i in kept and i != t):
                continue
            if any(i in c.outputs for c in chain):
                continue
            if not visit(i):
                return False
        if p not in chain:
            chain.append(p)
        return len(chain) <= MAX_CHAIN

    return chain if visit(t) else None


def _rewrite(g: Graph, t: str, chain: list[Node], at: int, n_fwd: int) -> Graph:
    """A copy of g with ``chain`` recomputed right before node ``at`` and the backward reading it."""
    g2 = copy.copy(g)
    g2.tensors = dict(g.tensors)
    rename: dict[str, str] = {}
    new_nodes = []
    for n in chain:
        out = n.outputs[0]
        name = g2.unique(f"{out}/recompute")
        src = g.tensors[out]
        g2.add(name, src.shape, src.dtype, "activation")
        rename[out] = name
        new_nodes.append(Node(n.op, [rename.get(i, i) for i in n.inputs], [name], dict(n.attrs),
                              f"{n.name}/recompute"))
    tail = [Node(n.op, [rename.get(i, i) for i in n.inputs], list(n.outputs), n.attrs, n.name)
            for n in g.nodes[at:]]
    g2.nodes = g.nodes[:at] + new_nodes + tail
    g2.meta = dict(g.meta)
    g2.meta["recomputed"] = list(g.meta.get("recomputed", [])) + [t]
    return g2


def recompute(g: Graph, max_extra: float = 0.25, min_gain: float = 0.01, max_trials: int = 8) -> Graph:
    n_fwd = g.meta.get("n_forward")
    if n_fwd is None:
        return g
    budget = max_extra * graph_macs(g, g.nodes[:n_fwd])
    spent = 0
    peak = plan_memory(g)
    while True:
        kept = _kept(g, n_fwd)
        producers = {o: n for n in g.nodes[:n_fwd] for o in n.outputs if o}
        live = {m for b in peak.buffers if b.start <= peak.peak_step <= b.end for m in b.members}
        best = None
        # Each trial re-plans the whole graph: try the largest kept tensors at the peak first, a few.
        trials = sorted((t for t in kept if t in live), key=lambda t: -g.tensors[t].nbytes)[:max_trials]
        for t in trials:
            at = kept[t]
            chain = _chain(g, t, producers, kept)
            if not chain:
                continue
            macs = sum(node_macs(n, g) for n in chain)
            if spent + macs > budget:
                continue
            g2 = _rewrite(g, t, chain, at, n_fwd)
            p2 = plan_memory(g2)
            key = (p2.arena_bytes, p2.lower_bound, macs)
            if p2.arena_bytes <= peak.arena_bytes - min_gain * peak.arena_bytes and p2.lower_bound <= peak.lower_bound \
                    and (best is None or key < best[0]):
                best = (key, g2, p2, {"tensor": t, "bytes": g.tensors[t].nbytes, "ops": [n.op for n in chain],
                                      "before": g.nodes[at].name, "arena_before": peak.arena_bytes,
                                      "arena_after": p2.arena_bytes, "macs": macs})
        if best is None:
            break
        (_, _, macs), g, peak, decision = best
        g.meta["recompute_log"] = list(g.meta.get("recompute_log", [])) + [decision]
        spent += macs
    g.meta.pop("memory_plan", None)
    return g
