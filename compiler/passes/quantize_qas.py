"""quantize_qas: rewrite the optimizer updates of int8 weights / int32 biases into QUpdate nodes.

Assumes: the training graph of an int8 model (passes/quantize_lower, then autodiff). Gradients
reaching the updates are real-valued (the gradient of the dequantized graph, fp32).
Guarantees: every SGDUpdate/MomentumUpdate on an s8/i32 param becomes one QUpdate that
  1. scales the gradient per output channel into the integer domain and applies QAS
     (Tiny Training Engine, Lin et al. 2022): the gradient of the integer weight W_q = W / s_w is
     s_w * g_W, and QAS multiplies it by s_w^-2, giving g_W / s_w (bias: g_b * s_x s_w, times
     (s_x s_w)^-2 = g_b / (s_x s_w)). With ``qas=False`` (the ablation) the unscaled integer-domain
     gradient s_w * g_W (bias s_x s_w * g_b) is used instead;
  2. runs SGD or momentum (PyTorch's formulas) in integer units;
  3. writes the weight back as int8 (symmetric, [-127, 127]) / the bias as int32, rounding half
     away from zero. With ``master="fp32"`` an fp32 copy of the updated block (only the sparse
     rows) accumulates the steps and is re-quantized after each one, so updates smaller than half
     an LSB are not lost; ``master="none"`` rounds the weight itself each step.
The scales are per output channel, so only updates along the output-channel axis are supported.
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgegradError
from ..ir import Graph, Node


def _row_scales(g: Graph, param: str) -> tuple[np.ndarray, str]:
    """Per-row real scale of an int8 weight (s_w) or int32 bias (s_x s_w), and which it is."""
    for n in g.nodes:
        if n.op in ("QConv", "QGemm"):
            s_w = np.asarray(n.attrs["w_scale"], np.float64)
            if n.inputs[1] == param:
                return s_w, "weight"
            if len(n.inputs) > 2 and n.inputs[2] == param:
                return n.attrs["x_scale"] * s_w, "bias"
    raise EdgegradError(f"int8: {param!r} is not the weight or bias of an int8 layer")


def quantize_qas(g: Graph, qas: bool = True, master: str = "fp32") -> Graph:
    if master not in ("fp32", "none"):
        raise EdgegradError(f"unknown --int8-master {master!r} (fp32 or none)")
    new_nodes = []
    masters = []
    for n in g.nodes:
        if n.op not in ("SGDUpdate", "MomentumUpdate", "AdamUpdate") or g.tensors[n.inputs[0]].dtype == "f32":
            new_nodes.append(n)
            continue
        param, grad = n.inputs[:2]
        if n.op == "AdamUpdate":
            raise EdgegradError("--dtype int8 trains with sgd or momentum (the QAS setting), not adam")
        a = n.attrs
        if a["axis"] != 0:
            raise EdgegradError(f"int8: {param!r} is updated along its input channels; QAS scales are per "
                                f"output channel, so int8 updates take a leading share of output channels only")
        scales, _ = _row_scales(g, param)
        s = scales[: a["rows"]]
        gscale = (1.0 / s) if qas else s
        gs_name = g.unique(f"{param}/gscale")
        g.add(gs_name, (a["rows"],), "f32", role="const", data=gscale.astype(np.float32))
        m_name = ""
        if master == "fp32":
            t = g.tensors[param]
            block = t.data.reshape(t.shape[0], -1)[: a["rows"], : a["inner"]].astype(np.float32).reshape(-1)
            m_name = g.unique(f"{param}/master")
            g.add(m_name, (block.size,), "f32", role="param", data=block)
            masters.append(m_name)
        v = n.inputs[2] if n.op == "MomentumUpdate" else ""
        attrs = {k: a[k] for k in ("rows", "inner", "stride", "axis", "k")}
        attrs.update(lr=a["lr"], mu=a.get("mu", 0.0), qas=qas)
        new_nodes.append(Node("QUpdate", [param, grad, gs_name, m_name, v], [], attrs, n.name))
    g.nodes = new_nodes
    g.meta["masters"] = masters
    for u in g.meta.get("updates", []):
        if g.tensors[u["param"]].dtype != "f32":
            u["op"] = "QUpdate"
    return g
