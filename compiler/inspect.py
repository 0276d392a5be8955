"""edgegrad inspect: explain a model (layers, parameters, MACs, what a scheme trains and keeps)
or a build (memory plan, section sizes)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from .autodiff import TrainConfig
from .cost import graph_macs, node_macs
from .passes.plan_memory import plan_memory
from .pipeline import CompileConfig, frontend_graph, int8_training_steps, is_quantized, training_steps
from .scheme import layers


def saved_activations(g) -> dict[str, int]:
    """Forward activations (and activation cuts) that a backward node reads: what training keeps."""
    n_fwd = g.meta["n_forward"]
    fwd_out = {o for n in g.nodes[:n_fwd] for o in n.outputs} | set(g.inputs)
    out = {}
    for n in g.nodes[n_fwd:]:
        for i in n.inputs:
            if i in fwd_out and g.tensors[i].role in ("activation", "input", "grad"):
                out[i] = g.tensors[i].nbytes
    return out


def _training(g, updates, cfg: CompileConfig):
    """The fp32 training graph of the pipeline for cfg (a copy of g), as compile builds it."""
    g = copy.deepcopy(g)
    for _, step in training_steps(updates, TrainConfig(), cfg):
        g = step(g)
    return g


def schedule_decisions(tg, plan, plain, fwd_macs: int) -> list[str]:
    """What the relu_mask and recompute passes decided for the mcu schedule, and what it saved."""
    base = plan_memory(plain).arena_bytes
    lines = [f"mcu schedule: arena {plan.arena_bytes} B; {base} B without 1-bit ReLU masks and recompute "
             f"({base - plan.arena_bytes} B saved)" if base != plan.arena_bytes else
             f"mcu schedule: arena {plan.arena_bytes} B (1-bit ReLU masks and recompute change nothing here)"]
    masks = tg.meta.get("relu_masks", [])
    if masks:
        full = sum(tg.tensors[y].nbytes for y in masks)
        bits = sum(tg.tensors[n.outputs[0]].nbytes for n in tg.nodes if n.op == "ReluMask")
        lines.append(f"1-bit ReLU masks: {len(masks)} ReLU/Clip outputs whose backward needs only the sign are kept "
                     f"as bit masks, {bits} B instead of {full} B fp32:")
        lines += [f"  {y[:60]:<60} {tg.tensors[y].nbytes:>8} B -> {(tg.tensors[y].size + 7) // 8:>6} B"
                  for y in masks[:20]]
        if len(masks) > 20:
            lines.append(f"  ... {len(masks) - 20} more")
    log = tg.meta.get("recompute_log", [])
    if log:
        macs = sum(d["macs"] for d in log)
        lines.append(f"recompute: {len(log)} kept activations recomputed in the backward instead of kept, arena "
                     f"{log[0]['arena_before']} B -> {log[-1]['arena_after']} B "
                     f"({log[-1]['arena_after'] - log[0]['arena_before']:+d} B), +{macs} MACs "
                     f"(+{100 * macs / max(1, fwd_macs):.1f}% of the forward)")
        for d in log:
            lines.append(f"  {d['tensor'][:50]:<50} {d['bytes']:>8} B  {'+'.join(d['ops'])[:28]:<28} before "
                         f"{d['before'][:40]}: arena {d['arena_before']} -> {d['arena_after']} B, +{d['macs']} MACs")
    else:
        lines.append("recompute: nothing recomputed (no kept activation at the peak is worth recomputing)")
    return lines


def inspect_model(path: Path, update: str, input_shapes: dict) -> str:
    cfg = CompileConfig(update=update, input_shapes=input_shapes, dtype="int8" if is_quantized(path) else "fp32")
    g, updates = frontend_graph(path, cfg)
    lines = [f"{path.name}: inputs " + ", ".join(f"{n}{list(g.tensors[n].shape)}" for n in g.inputs)
             + "; outputs " + ", ".join(f"{n}{list(g.tensors[n].shape)}" for n in g.outputs)]
    lines.append(f"{'layer':<34} {'op':<20} {'weight':<18} {'params':>8} {'MACs':>10}  trained")
    total_p = 0
    by_node = {n.name: n for n in g.nodes}
    for name, w, b in layers(g):
        n = by_node[name]
        p = sum(g.tensors[t].size for t in (w, b) if t)
        total_p += p
        tr = ", ".join(f"{'w' if t == w else 'b'}" + (f"[{updates[t].axis}:{updates[t].rows(g.tensors[t].shape)}]"
                                                        if updates[t].fraction < 1 else "")
                       for t in (w, b) if t and t in updates)
        lines.append(f"{name[:34]:<34} {n.op:<20} {str(list(g.tensors[w].shape)) if w else '-':<18} {p:>8} "
                     f"{node_macs(n, g):>10}  {tr or '-'}")
    fwd = graph_macs(g)
    lines.append(f"total: {len(g.nodes)} nodes, {sum(t.size for t in g.params())} parameters "
                 f"({sum(t.nbytes for t in g.params())} B), {fwd} forward MACs"
                 + (" (int8 QDQ model: int8 weights, int32 biases)" if cfg.dtype == "int8" else ""))
    if updates:
        if cfg.dtype == "int8":
            tg = g
            for _, step in int8_training_steps(updates, TrainConfig(), cfg):
                tg = step(tg)
            plain = None
        else:  # the mcu schedule (1-bit ReLU masks and recompute on), and the same without them
            tg = _training(g, updates, CompileConfig(target="mcu"))
            plain = _training(g, updates, CompileConfig(target="mcu", relu_mask=False, recompute=False))
        plan = plan_memory(tg)
        saved = saved_activations(tg)
        lines.append(f"scheme {update!r}: {len(updates)} tensors updated; training step {graph_macs(tg)} MACs "
                     f"({len(tg.nodes)} nodes)")
        if plain is not None:
            lines += schedule_decisions(tg, plan, plain, fwd)
        lines.append(f"kept for backward: {len(saved)} activations, {sum(saved.values())} B")
        for k, v in list(saved.items())[:40]:
            lines.append(f"  {k[:60]:<60} {v:>8} B")
        lines.append(plan.table(tg, limit=20))
    return "\n".join(lines)


def inspect_build(build: Path) -> str:
    info = json.loads((build / "build.json").read_text())
    cfg = info["config"]
    lines = [(f"build {build}: {info['source']} for {cfg['target']}, update {cfg['update']!r}, "
             f"{cfg['optimizer']} lr={cfg['lr']}, loss {cfg['loss']}"),
             (f"arena {info['arena_bytes']} B (lower bound {info['arena_lower_bound']} B), trainable "
             f"{info['trainable_bytes']} B, optimizer state {info['state_bytes']} B, frozen {info['frozen_bytes']} B")]
    if info.get("fused"):  # passes/fuse_eltwise.py + fuse.py: nodes per fusion
        lines.append("fused: " + ", ".join(f"{k} x{v}" for k, v in info["fused"].items()))
    if "sections" in info:
        lines.append("sections: " + ", ".join(f"{k} {v} B" for k, v in info["sections"].items()))
    if info.get("backend"):
        lines += backend_table(info["backend"])
    text = (build / "model.c").read_text()
    head = text.split("*/", 1)[0]
    lines += [ln[3:] for ln in head.splitlines() if ln.startswith(" *   ")]
    return "\n".join(lines)


def backend_table(b: dict) -> list[str]:
    """--backend tvm|auto: the kernel each conv/Gemm node got, with the instruction counts behind it."""
    if not b.get("tvm"):
        return [f"backend {b['mode']}: {b.get('note', 'TVM not installed')}"]
    lines = [(f"backend {b['mode']}: TVM {b['tvm']} for {b['llvm_target']['mcpu']} (board {b['board']}); cost = "
              f"aarch64 instructions of one call under qemu-aarch64, 1 thread"),
             f"{'node':<40} {'op':<12} {'pass':<9} {'shape':<26} {'ours instr':>11} {'TVM instr':>11}  kernel"]
    for c in b["choices"]:
        num = (lambda v: f"{v:>11,}" if v is not None else f"{'-':>11}")
        lines.append(f"{c['node'][-40:]:<40} {c['op']:<12} {c['kind']:<9} {c.get('shape', '-')[:26]:<26} "
                     f"{num(c.get('ours_instr'))} {num(c.get('tvm_instr'))}  {c['chosen']}"
                     + ("" if c.get("ours_instr") is not None else f" ({c['why']})"))
    n = sum(c["chosen"] == "tvm" for c in b["choices"])
    lines.append(f"{n} of {len(b['choices'])} kernels from TVM")
    return lines
