"""A numpy interpreter for IR graphs (forward and training step), built from the registry's
references. It is the compiler's own oracle: tests compare the generated C against it and
against PyTorch, and `edgegrad plan` can score schemes with it without torch."""

from __future__ import annotations

import numpy as np

from .ir import Graph
from .ops import run_ref


class Interpreter:
    def __init__(self, g: Graph):
        self.g = g
        self.values = {n: t.data.copy() for n, t in g.tensors.items()
                       if t.role in ("param", "const", "state") and t.data is not None}
        self.b1t = self.b2t = 1.0

    def _run(self, nodes) -> None:
        v = self.values
        for n in nodes:
            if n.op == "AdamStep":
                self.b1t *= n.attrs["beta1"]
                self.b2t *= n.attrs["beta2"]
                continue
            if n.op.endswith("Update"):
                self._update(n)
                continue
            outs = run_ref(n, [v[i] if i else None for i in n.inputs])
            for name, val in zip(n.outputs, outs):
                v[name] = val

    def _update(self, n) -> None:
        a, v = n.attrs, self.values
        w = v[n.inputs[0]].reshape(-1)
        g = v[n.inputs[1]].reshape(-1).astype(np.float32)
        idx = (np.arange(a["rows"])[:, None] * a["stride"] + np.arange(a["inner"])[None, :]).reshape(-1)
        f32 = np.float32
        if n.op == "SGDUpdate":
            w[idx] = w[idx] - f32(a["lr"]) * g
        elif n.op == "MomentumUpdate":
            m = v[n.inputs[2]]
            m[:] = f32(a["mu"]) * m + g
            w[idx] = w[idx] - f32(a["lr"]) * m
        else:
            m, s = v[n.inputs[2]], v[n.inputs[3]]
            b1, b2 = f32(a["beta1"]), f32(a["beta2"])
            m[:] = b1 * m + (f32(1) - b1) * g
            s[:] = b2 * s + (f32(1) - b2) * g * g
            bc1, bc2 = f32(1 - self.b1t), f32(1 - self.b2t)
            denom = np.sqrt(s) / np.sqrt(bc2) + f32(a["eps"])
            w[idx] = w[idx] - (f32(a["lr"]) / bc1) * m / denom

    def infer(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        for name, x in zip(self.g.inputs, inputs):
            self.values[name] = np.asarray(x, np.float32).reshape(self.g.tensors[name].shape)
        n_fwd = self.g.meta.get("n_forward", len(self.g.nodes))
        self._run([n for n in self.g.nodes[:n_fwd] if not n.attrs.get("save")])
        return [self.values[o] for o in self.g.outputs]

    def train_step(self, inputs: list[np.ndarray], target) -> float:
        for name, x in zip(self.g.inputs, inputs):
            self.values[name] = np.asarray(x, np.float32).reshape(self.g.tensors[name].shape)
        t = self.g.tensors["target"]
        self.values["target"] = np.asarray(target).astype(np.int32 if t.dtype == "i32" else np.float32).reshape(t.shape)
        self._run(self.g.nodes)
        return float(self.values[self.g.meta["loss"]][0])

    def param(self, name: str) -> np.ndarray:
        return self.values[name]
