"""Update schemes: which parameters are trained, and which leading share of each.

Contract (DESIGN.md): ``all``, or a JSON file ``{"tensor": fraction}`` where fraction in (0, 1]
is the leading share of dim 0, or ``{"tensor": {"in": f}}`` for the leading share of the
weight's input-channel axis. Shorthands, comma-separated and combined by union:
``all``, ``none``, ``last:N`` (weights and biases of the last N layers), ``bias:all``,
``bias:last:N``, ``weights:last:N@F`` (the last N layers' weights, leading share F of their
output channels), ``in:last:N@F`` (leading share F of the input channels).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .errors import EdgegradError
from .ir import Graph

LAYER_OPS = {"Conv": (1, 2), "Gemm": (1, 2), "MatMul": (1, None), "BatchNormalization": (1, 2), "PRelu": (1, None),
             "QConv": (1, 2), "QGemm": (1, 2)}


@dataclass(frozen=True)
class Update:
    axis: int  # 0: output channels (dim 0); 1: input channels
    fraction: float

    def rows(self, shape: tuple[int, ...]) -> int:
        if not shape:  # a scalar parameter is one row
            return 1
        return max(1, math.ceil(self.fraction * shape[self.axis] - 1e-9))


def layers(g: Graph) -> list[tuple[str, str | None, str | None]]:
    """(node name, weight, bias) for every forward node that owns parameters, in order."""
    out = []
    for n in g.nodes:
        if n.op not in LAYER_OPS:
            continue
        wi, bi = LAYER_OPS[n.op]
        w = n.inputs[wi] if wi < len(n.inputs) and g.tensors.get(n.inputs[wi]) is not None \
            and g.tensors[n.inputs[wi]].role == "param" else None
        b = n.inputs[bi] if bi is not None and bi < len(n.inputs) and n.inputs[bi] \
            and g.tensors[n.inputs[bi]].role == "param" else None
        if w or b:
            out.append((n.name, w, b))
    return out


def input_axis(g: Graph, weight: str) -> int:
    """The weight's input-channel axis: 1 for Conv and Gemm(transB=1), 0 for MatMul/Gemm(transB=0)."""
    for n in g.nodes:
        if len(n.inputs) > 1 and n.inputs[1] == weight:
            if n.op == "MatMul" or (n.op == "Gemm" and not n.attrs.get("transB", 0)):
                return 0
            return 1
    return 1


def trainable_params(g: Graph) -> list[str]:
    """Params that some node reads at a differentiable position (not BN running statistics,
    shapes or indices)."""
    from .ops import OPS
    out = {}
    for n in g.nodes:
        for idx, i in enumerate(n.inputs):
            if i and g.tensors[i].role == "param" and idx not in OPS[n.op].no_grad:
                out[i] = True
    return list(out)


def parse_scheme(spec: str, g: Graph) -> dict[str, Update]:
    params = set(trainable_params(g))
    spec = spec.strip()
    if spec.endswith(".json") or Path(spec).is_file():
        try:
            raw = json.loads(Path(spec).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise EdgegradError(f"update scheme {spec}: {e}")
        if not isinstance(raw, dict):
            raise EdgegradError(f"update scheme {spec}: expected a JSON object {{tensor: fraction}}")
        out = {}
        for name, v in raw.items():
            if name not in params:
                near = ", ".join(sorted(params)[:8])
                what = "a parameter that can be trained" if name in g.tensors else "a parameter of the model"
                raise EdgegradError(f"update scheme names {name!r}, which is not {what} "
                                    f"(parameters: {near}{', ...' if len(params) > 8 else ''})")
            if isinstance(v, dict) and set(v) == {"in"}:
                u = Update(input_axis(g, name), float(v["in"]))
            elif isinstance(v, (int, float)):
                u = Update(0, float(v))
            else:
                raise EdgegradError(f"update scheme: value for {name!r} must be a number or {{\"in\": f}}, got {v!r}")
            if not 0 < u.fraction <= 1:
                raise EdgegradError(f"update scheme: fraction for {name!r} must be in (0, 1], got {u.fraction}")
            if len(g.tensors[name].shape) <= u.axis:
                raise EdgegradError(f"update scheme: {name!r} has no axis {u.axis} for an input-channel share")
            out[name] = u
        return out
    out: dict[str, Update] = {}
    ls = layers(g)
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        try:
            out.update(_shorthand(part, ls, g))
        except (ValueError, IndexError):
            raise EdgegradError(f"cannot read update scheme {part!r}: use all, none, last:N, bias:all, bias:last:N, "
                                f"weights:last:N@F, in:last:N@F, or a JSON file")
    return out


def _shorthand(part: str, ls, g: Graph) -> dict[str, Update]:
    if part == "all":
        return {name: Update(0, 1.0) for name in trainable_params(g)}
    if part == "none":
        return {}
    kind, _, rest = part.partition(":") if part.split(":")[0] in ("bias", "weights", "in") else ("both", "", part)
    frac = 1.0
    if "@" in rest:
        rest, f = rest.split("@")
        frac = float(f)
        if not 0 < frac <= 1:
            raise ValueError
    if rest == "all":
        chosen = ls
    elif rest.startswith("last:"):
        n = int(rest.split(":")[1])
        chosen = ls[-n:] if n > 0 else []
    else:
        raise ValueError
    out = {}
    for _, w, b in chosen:
        if w and kind in ("both", "weights"):
            out[w] = Update(0, frac)
        if w and kind == "in":
            out[w] = Update(input_axis(g, w), frac)
        if b and kind in ("both", "bias"):
            out[b] = Update(0, frac if kind == "both" else 1.0)
    return out
