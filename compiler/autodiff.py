"""Reverse-mode autodiff over the IR, driven by the update scheme.

Assumes a forward graph (frontend output, passes applied) and ``updates``: the trained params and
the share of each. Guarantees: the graph gains a loss node on output 0, gradient nodes only for
tensors on a path from an updated param to the loss, backward stops at the earliest updated
tensor, and each param's optimizer update is emitted right after its last gradient contribution
(so the gradient buffer dies at once). Fan-out gradients are summed; broadcast gradients are
reduced back to the input's shape; partial updates get only their leading rows/columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import EdgegradError
from .ir import Graph, Node
from .ops import NON_DIFFERENTIABLE, OPS, Need
from .scheme import Update
from .shapes import infer_shapes


@dataclass
class TrainConfig:
    loss: str = "cross_entropy"  # or "mse"
    optimizer: str = "sgd"  # sgd | momentum | adam
    lr: float = 0.01
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


class GradBuilder:
    """Emits backward nodes, naming each after the forward node it differentiates."""

    def __init__(self, g: Graph):
        self.g = g
        self.nodes: list[Node] = []
        self.owner = "grad"

    def shape(self, name: str) -> tuple[int, ...]:
        return self.g.tensors[name].shape

    def emit(self, op: str, inputs: list[str], attrs: dict | None = None, n_out: int = 1) -> str | list[str]:
        node = Node(op, list(inputs), [], dict(attrs or {}), f"{self.owner}/{op}")
        outs = []
        for (shape, dtype) in infer_shapes(node, self.g):
            name = self.g.unique(f"{self.owner}/{op}")
            self.g.add(name, shape, dtype, role="grad")
            outs.append(name)
        node.outputs = outs
        self.nodes.append(node)
        return outs[0] if n_out == 1 else outs

    def reshape(self, x: str, shape: tuple[int, ...]) -> str:
        if tuple(self.shape(x)) == tuple(shape):
            return x
        return self.emit("Reshape", [x], {"shape": list(shape)})

    def scale(self, x: str, alpha: float) -> str:
        return self.emit("Scale", [x], {"alpha": float(alpha)})

    def slice(self, x: str, axis: int, k: int, save: bool = False) -> str:
        """Leading k entries of ``axis``. ``save`` marks a forward activation cut that the
        scheduler hoists next to its producer, so only the slice stays alive."""
        attrs = {"starts": [0], "ends": [k], "axes": [axis], "steps": [1]}
        if save:
            attrs["save"] = True
        return self.emit("Slice", [x], attrs)

    def reduce_to(self, x: str, shape: tuple[int, ...], channel_axis: int | None = None) -> str:
        xs = self.shape(x)
        if tuple(xs) == tuple(shape):
            return x
        if int(np.prod(xs)) == int(np.prod(shape)):  # only size-1 axes differ: a view, not a sum
            return self.reshape(x, tuple(shape))
        if channel_axis is not None and len(shape) == 1 and len(xs) > channel_axis and xs[channel_axis] == shape[0]:
            # a per-channel bias: align its one dim with the channel axis, not the last axis
            kept = tuple(xs[i] if i == channel_axis else 1 for i in range(len(xs)))
            return self.reshape(self.emit("ReduceSumTo", [x], {"shape": list(kept)}), tuple(shape))
        return self.emit("ReduceSumTo", [x], {"shape": list(shape)})

    def clip_bounds(self, node: Node) -> tuple[float, float]:
        return node.attrs["lo"], node.attrs["hi"]


def build_training_graph(g: Graph, updates: dict[str, Update], cfg: TrainConfig) -> Graph:
    if not updates:
        raise EdgegradError("the update scheme trains nothing: name at least one parameter")
    for name in updates:
        if name not in g.tensors or g.tensors[name].role != "param":
            raise EdgegradError(f"{name!r} is not a parameter of the model")
    logits = g.outputs[0]
    # Which tensors carry a gradient: those computed from an updated param.
    requires = set(updates)
    for n in g.nodes:
        if any(i in requires for i in n.inputs if i):
            requires.update(n.outputs)
    # Which tensors the loss depends on.
    ancestors = {logits}
    for n in reversed(g.nodes):
        if any(o in ancestors for o in n.outputs):
            ancestors.update(i for i in n.inputs if i)
    unused = [p for p in updates if p not in ancestors]
    if unused:
        raise EdgegradError(f"updated parameter(s) {', '.join(unused)} do not influence output 0 ({logits})")

    gb = GradBuilder(g)
    # --- loss
    ls = g.tensors[logits].shape
    if cfg.loss == "cross_entropy":
        target = g.add("target", (1,), "i32", role="target")
        loss_op = "SoftmaxCrossEntropy"
    elif cfg.loss == "mse":
        target = g.add("target", ls, "f32", role="target")
        loss_op = "MSELoss"
    else:
        raise EdgegradError(f"unknown loss {cfg.loss!r} (cross_entropy or mse)")
    gb.owner = "loss"
    loss, dlogits = gb.emit(loss_op, [logits, target.name], n_out=2)
    g.tensors[loss].role = "loss"
    contributions: dict[str, list[str]] = {logits: [dlogits]}
    if cfg.optimizer == "adam":
        gb.nodes.append(Node("AdamStep", [], [], {"beta1": cfg.beta1, "beta2": cfg.beta2}, "optimizer/step"))

    pending = {p: sum(1 for n in g.nodes if p in n.inputs and any(o in ancestors for o in n.outputs))
               for p in updates}
    state_names: list[str] = []
    update_meta = []
    forward_nodes = list(g.nodes)
    for node in reversed(forward_nodes):
        if not any(o in contributions for o in node.outputs):
            continue
        if not any(i in requires for i in node.inputs if i):
            continue
        if node.op in NON_DIFFERENTIABLE or OPS[node.op].grad is None:
            raise EdgegradError(f"no gradient for {node.op} ({node.name}), which lies between an updated "
                                f"parameter and the loss")
        gb.owner = node.name or node.op
        dys = [_sum(gb, contributions.pop(o)) if o in contributions else None for o in node.outputs]
        need: list[Need | None] = []
        for idx, i in enumerate(node.inputs):
            if not i or i not in requires or idx in OPS[node.op].no_grad:
                need.append(None)
            elif i in updates:
                shape = g.tensors[i].shape
                u = updates[i]
                need.append(Need(u.axis, u.rows(shape), shape) if shape else Need(0, 1, (1,)))
            else:
                shape = g.tensors[i].shape
                need.append(Need(0, shape[0] if shape else 1, shape if shape else (1,)))
        grads = OPS[node.op].grad(node, dys, need, gb)
        for i, gname, nd in zip(node.inputs, grads, need):
            if nd is None or gname is None:
                continue
            gname = _fit(gb, gname, nd, g.tensors[i].shape)
            contributions.setdefault(i, []).append(gname)
        for i in dict.fromkeys(node.inputs):
            if i in updates and i in contributions:
                pending[i] -= 1
                if pending[i] == 0:
                    gsum = _sum(gb, contributions.pop(i))
                    gb.owner = f"{i}/update"
                    st, meta = _emit_update(gb, i, gsum, updates[i], cfg)
                    state_names += st
                    update_meta.append(meta)
    never = [p for p, c in pending.items() if c > 0]
    if never:
        raise EdgegradError(f"internal: no gradient reached {never}")
    backward = _hoist_saves(forward_nodes, gb.nodes)  # mutates forward_nodes
    g.nodes = forward_nodes + backward
    g.meta.update(loss=loss, target="target", updates=update_meta, state=state_names, config=cfg,
                  n_forward=len(forward_nodes))
    return g


def _sum(gb: GradBuilder, parts: list[str]) -> str:
    total = parts[0]
    for p in parts[1:]:
        total = gb.emit("Add", [total, p])
    return total


def _fit(gb: GradBuilder, gname: str, need: Need, shape: tuple[int, ...]) -> str:
    """Reduce a broadcast gradient to the input's shape; cut a full gradient to a partial update."""
    gs = gb.shape(gname)
    if shape == () and gs != ():
        gname = gb.reshape(gb.emit("ReduceSumTo", [gname], {"shape": [1]}), ())
    elif tuple(gs) != tuple(shape) and tuple(gs) != need.shape:
        gname = gb.reduce_to(gname, shape)
    if need.partial and tuple(gb.shape(gname)) == tuple(shape):
        gname = gb.slice(gname, need.axis, need.k)
    return gname


def _emit_update(gb: GradBuilder, param: str, gname: str, u: Update, cfg: TrainConfig):
    shape = gb.shape(param) or (1,)
    k = u.rows(shape)
    inner_after = int(np.prod(shape[u.axis + 1:], dtype=np.int64))
    if u.axis == 0:
        rows, inner, stride = k, inner_after, inner_after
    else:
        rows, inner, stride = shape[0], k * inner_after, int(np.prod(shape[1:], dtype=np.int64))
    block = {"rows": rows, "inner": inner, "stride": stride, "axis": u.axis, "k": k}
    states = []
    if cfg.optimizer == "sgd":
        op, attrs = "SGDUpdate", {"lr": cfg.lr}
    elif cfg.optimizer == "momentum":
        op, attrs = "MomentumUpdate", {"lr": cfg.lr, "mu": cfg.momentum}
        states = [f"{param}/momentum"]
    elif cfg.optimizer == "adam":
        op, attrs = "AdamUpdate", {"lr": cfg.lr, "beta1": cfg.beta1, "beta2": cfg.beta2, "eps": cfg.eps}
        states = [f"{param}/adam_m", f"{param}/adam_v"]
    else:
        raise EdgegradError(f"unknown optimizer {cfg.optimizer!r} (sgd, momentum or adam)")
    for s in states:
        gb.g.add(s, (rows * inner,), "f32", role="state", data=np.zeros(rows * inner, np.float32))
    gb.nodes.append(Node(op, [param, gname] + states, [], dict(attrs, **block), f"{param}/update"))
    return states, {"param": param, "op": op, "state": states, **block}


def _hoist_saves(forward: list[Node], backward: list[Node]) -> list[Node]:
    """Move activation cuts (Slice with save=True) into the forward pass right after their
    input's producer: the full activation then dies after its forward use and only the cut
    is kept for the backward pass. Returns the backward list without them; inserts into forward."""
    saves = [n for n in backward if n.op == "Slice" and n.attrs.get("save")]
    for s in saves:
        backward.remove(s)
        pos = 0
        for i, n in enumerate(forward):
            if s.inputs[0] in n.outputs:
                pos = i + 1
        forward.insert(pos, s)
    return backward
