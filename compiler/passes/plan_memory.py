"""Static memory plan: one arena, offsets from liveness over the final schedule.

Assumes: ``g.nodes`` is the final schedule (forward, loss, backward with interleaved updates).
Arena tensors are graph inputs, activations, gradients and the loss; params, optimizer state,
constants and the target live in their own static arrays.

Algorithm (greedy by size, as in TFLite Micro's GreedyMemoryPlanner):
1. Views (Reshape) share their input's buffer; an elementwise op whose input 0 dies at that
   node (and has the output's size) writes in place into it. Both merge tensors into one
   buffer whose lifetime is the union of its members' [first def, last use].
2. Buffers are placed largest first, each at the lowest 16-byte aligned offset where it
   overlaps in address with no already-placed buffer that is alive at the same time.
Guarantees: every arena tensor is written before any node reads it (else an internal EdgegradError naming
the tensor, its reader and its writer); no two buffers alive at the same step overlap (``check_plan`` proves it); the
arena size is reported against the lower bound max_t sum(live bytes at t).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import EdgegradError
from ..ir import Graph
from ..ops import OPS

ALIGN = 16
ARENA_ROLES = ("input", "activation", "grad", "scratch")


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Buffer:
    id: int
    size: int
    start: int
    end: int
    members: list[str] = field(default_factory=list)
    offset: int = -1


@dataclass
class MemoryPlan:
    arena_bytes: int
    lower_bound: int
    buffers: list[Buffer]
    tensor_buffer: dict[str, int]  # tensor -> buffer id
    tensor_offset: dict[str, int]  # tensor -> byte offset in the arena
    peak_step: int

    def table(self, g: Graph, limit: int = 60) -> str:
        rows = sorted(self.buffers, key=lambda b: b.offset)
        lines = [(f"arena {self.arena_bytes} B, lower bound {self.lower_bound} B "
                 f"({100.0 * self.arena_bytes / max(1, self.lower_bound):.1f}%), {len(rows)} buffers"),
                 f"{'offset':>8} {'bytes':>8} {'live':>11}  tensors"]
        for b in rows[:limit]:
            names = ", ".join(b.members[:3]) + (f" +{len(b.members) - 3}" if len(b.members) > 3 else "")
            lines.append(f"{b.offset:>8} {b.size:>8} {b.start:>5}-{b.end:<5}  {names}")
        if len(rows) > limit:
            lines.append(f"... {len(rows) - limit} more")
        return "\n".join(lines)


def plan_memory(g: Graph) -> MemoryPlan:
    arena = {n for n, t in g.tensors.items() if t.role in ARENA_ROLES}
    defined: dict[str, int] = {n: -1 for n in g.inputs}
    last: dict[str, int] = {}
    for i, node in enumerate(g.nodes):
        for t in node.inputs:
            if t in arena:
                if t not in defined:
                    _read_before_write(g, t, node, i)
                last[t] = i
        for t in node.outputs:
            if t in arena:
                defined.setdefault(t, i)
    # Graph outputs must survive the whole forward pass (eg_infer reads them at its end).
    n_fwd = g.meta.get("n_forward", len(g.nodes))
    for o in g.outputs:
        if o in arena:
            last[o] = max(last.get(o, 0), n_fwd)
    parent: dict[str, str] = {}

    def root(t: str) -> str:
        while t in parent:
            t = parent[t]
        return t

    group_last: dict[str, int] = {}
    for t in arena:
        group_last[t] = last.get(t, defined.get(t, 0))
    for i, node in enumerate(g.nodes):
        d = OPS.get(node.op)
        if d is None or not node.outputs or not node.inputs or node.inputs[0] not in arena:
            continue
        x, y = node.inputs[0], node.outputs[0]
        if y not in arena:
            continue
        rx = root(x)
        if d.view or d.inplace and g.tensors[x].nbytes == g.tensors[y].nbytes and group_last[rx] <= i \
                and rx not in g.inputs and all(root(o) != rx for o in node.inputs[1:] if o in arena):
            parent[y] = rx
            group_last[rx] = max(group_last[rx], group_last.pop(y))
    buffers: dict[str, Buffer] = {}
    for t in sorted(arena, key=lambda n: defined.get(n, 0)):
        r = root(t)
        b = buffers.get(r)
        size = _align(g.tensors[t].nbytes)
        if b is None:
            b = buffers[r] = Buffer(len(buffers), size, defined.get(r, 0), group_last[r])
        b.size = max(b.size, size)
        b.start = min(b.start, defined.get(t, 0))
        b.members.append(t)
    bl = list(buffers.values())
    # greedy by size
    placed: list[Buffer] = []
    for b in sorted(bl, key=lambda b: (-b.size, b.start)):
        overlapping = sorted((p for p in placed if p.start <= b.end and b.start <= p.end), key=lambda p: p.offset)
        off = 0
        for p in overlapping:
            if off + b.size <= p.offset:
                break
            off = max(off, p.offset + p.size)
        b.offset = off
        placed.append(b)
    arena_bytes = max((b.offset + b.size for b in bl), default=0)
    lower, peak_step = 0, 0
    steps = range(-1, len(g.nodes))
    for s in steps:
        live = sum(b.size for b in bl if b.start <= s <= b.end)
        if live > lower:
            lower, peak_step = live, s
    tb = {t: buffers[root(t)].id for t in arena}
    to = {t: buffers[root(t)].offset for t in arena}
    plan = MemoryPlan(arena_bytes, lower, bl, tb, to, peak_step)
    check_plan(plan)
    g.meta["memory_plan"] = plan
    return plan


def _read_before_write(g: Graph, t: str, reader, i: int) -> None:
    """An arena tensor read at step i that no earlier node wrote: its buffer would hold whatever the
    planner overlapped there (a compiler bug, e.g. a fusion reading a recomputed activation before its
    recompute). Names the tensor, the reader and the writer."""
    writer = next((f"{n.name} ({n.op}) at step {j}" for j, n in enumerate(g.nodes) if t in n.outputs), "no node")
    raise EdgegradError(f"internal error: memory plan: {reader.name} ({reader.op}) at step {i} reads {t!r} "
                        f"before it is written (written by {writer}); please report this model")


def check_plan(plan: MemoryPlan) -> None:
    """Prove that no two buffers alive at the same step share a byte."""
    bs = sorted(plan.buffers, key=lambda b: b.offset)
    for i, a in enumerate(bs):
        for b in bs[i + 1:]:
            if b.offset >= a.offset + a.size:
                break
            if a.start <= b.end and b.start <= a.end:
                raise AssertionError(f"memory plan overlap: buffers {a.members[0]} and {b.members[0]}")
