"""The IR: a flat, topologically ordered list of nodes over named, statically shaped tensors.

Roles: ``input`` (graph input), ``param`` (float weight from an initializer or a float Constant;
trainable or frozen is decided by the update scheme), ``const`` (non-float or folded constant),
``activation`` (forward value), ``grad``, ``state`` (optimizer state), ``target`` (label), ``loss``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DTYPE_BYTES = {"f32": 4, "f16": 2, "i64": 8, "i32": 4, "s8": 1, "u8": 1, "bool": 1}
NP_TO_DTYPE = {np.dtype("float32"): "f32", np.dtype("float64"): "f32", np.dtype("float16"): "f16",
               np.dtype("int64"): "i64", np.dtype("int32"): "i32", np.dtype("int8"): "s8",
               np.dtype("uint8"): "u8", np.dtype("bool"): "bool"}


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str = "f32"
    role: str = "activation"
    data: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * DTYPE_BYTES[self.dtype]


@dataclass
class Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)
    name: str = ""

    def __str__(self) -> str:
        attrs = ", ".join(f"{k}={v}" for k, v in self.attrs.items() if k != "value")
        return f"{self.name or '?'}: {', '.join(self.outputs)} = {self.op}({', '.join(self.inputs)}){' {' + attrs + '}' if attrs else ''}"


@dataclass
class Graph:
    tensors: dict[str, Tensor] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    # Training-graph facts filled in by autodiff: the loss tensor, the target tensor,
    # which params are updated and with what slice, and the optimizer state tensors.
    meta: dict = field(default_factory=dict)

    def add(self, name: str, shape, dtype: str = "f32", role: str = "activation", data=None) -> Tensor:
        t = Tensor(name, tuple(int(d) for d in shape), dtype, role, data)
        self.tensors[name] = t
        return t

    def unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.tensors:
            name = f"{base}_{i}"
            i += 1
        return name

    def producers(self) -> dict[str, Node]:
        return {o: n for n in self.nodes for o in n.outputs if o}

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def sole_reader(self, t: str, consumers: dict[str, list[Node]]) -> Node | None:
        """The one node that reads t, or None where t is a graph output or has no reader or several (a
        fusion that absorbs t into its producer needs t read once, by the node it fuses)."""
        users = consumers.get(t, [])
        return users[0] if len(users) == 1 and t not in self.outputs else None

    def params(self) -> list[Tensor]:
        return [t for t in self.tensors.values() if t.role == "param"]

    def dump(self) -> str:
        lines = [f"inputs: {', '.join(f'{n}{list(self.tensors[n].shape)}' for n in self.inputs)}"]
        for n in self.nodes:
            shapes = " ".join(str(list(self.tensors[o].shape)) for o in n.outputs if o)
            lines.append(f"  {n}  -> {shapes}")
        lines.append(f"outputs: {', '.join(self.outputs)}")
        return "\n".join(lines)

    def verify(self) -> None:
        """Check SSA form, topological order and that every referenced tensor exists."""
        defined = {n for n, t in self.tensors.items() if t.role in ("input", "param", "const", "target", "state")}
        for node in self.nodes:
            for i in node.inputs:
                if i and i not in defined:
                    raise AssertionError(f"node {node.name} ({node.op}) reads {i!r} before it is defined")
            for o in node.outputs:
                if not o:
                    continue
                if o not in self.tensors:
                    raise AssertionError(f"node {node.name} writes unknown tensor {o!r}")
                if o in defined and self.tensors[o].role not in ("param", "state"):
                    raise AssertionError(f"tensor {o!r} defined twice")
                defined.add(o)
