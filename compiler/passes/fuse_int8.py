"""fuse_int8: memory-saving rewrites of the int8 forward pass, run after autodiff.

1. ``int8_input``: the graph input becomes the int8 tensor its Quantize node wrote (as TFLite Micro
   models take int8 inputs): the host quantizes each sample (scale and zero point are in build.json),
   so the device never holds the fp32 image. Guarantees: no Quantize node remains; the input keeps
   its ONNX name, dtype s8.
2. ``pointwise + depthwise``: a frozen 1x1 expansion QConv whose only consumer is a depthwise QConv
   (MobileNetV2's inverted residual) becomes one QConvPwDw node that computes the expansion one
   channel at a time into a one-plane scratch and applies that channel's depthwise filter at once,
   so the expanded activation (the largest tensor of the block) never exists in full. Only done
   when the expanded activation is not read by the backward pass.
"""

from __future__ import annotations

from ..ir import Graph, Node


def int8_input(g: Graph) -> Graph:
    removed = 0
    for q in [n for n in g.nodes if n.op == "Quantize"]:
        src = q.inputs[0]
        if src not in g.inputs:
            continue
        users = [n for n in g.nodes if src in n.inputs and n is not q]
        if users:
            continue
        t = g.tensors[src]
        out = q.outputs[0]
        g.nodes.remove(q)
        for n in g.nodes:
            n.inputs = [src if i == out else i for i in n.inputs]
        del g.tensors[out]
        t.dtype = "s8"
        g.meta.setdefault("input_quant", {})[src] = {"scale": q.attrs["scale"], "zp": q.attrs["zp"]}
        removed += 1
    g.meta["n_forward"] = g.meta.get("n_forward", len(g.nodes) + removed) - removed
    return g


def fuse_pointwise_depthwise(g: Graph) -> Graph:
    n_fwd = g.meta.get("n_forward", len(g.nodes))
    fwd = g.nodes[:n_fwd]
    readers: dict[str, list[Node]] = {}
    for n in g.nodes:
        for i in n.inputs:
            if i:
                readers.setdefault(i, []).append(n)
    fused = 0
    out: list[Node] = []
    skip: set[int] = set()
    for idx, n in enumerate(fwd):
        if idx in skip:
            continue
        mid = n.outputs[0] if n.outputs else ""
        users = readers.get(mid, [])
        dw = users[0] if len(users) == 1 else None
        if (n.op == "QConv" and dw is not None and dw.op == "QConv" and dw.inputs[0] == mid
                and g.tensors[n.inputs[1]].shape[2:] == (1, 1) and n.attrs["group"] == 1
                and n.attrs["strides"] == [1, 1] and n.attrs["pads"] == [0, 0, 0, 0]
                and dw.attrs["group"] == g.tensors[mid].shape[1] == g.tensors[dw.inputs[1]].shape[0]
                and g.tensors[mid].shape[0] == 1 and mid not in g.outputs):
            plane = g.tensors[mid].shape[2] * g.tensors[mid].shape[3]
            scratch = g.unique(f"{n.name}/plane")
            g.add(scratch, (plane,), "s8", role="scratch")
            attrs = {"pw": dict(n.attrs), "dw": dict(dw.attrs), "mid_shape": list(g.tensors[mid].shape)}
            out.append(Node("QConvPwDw", list(n.inputs) + list(dw.inputs[1:]), [dw.outputs[0], scratch], attrs,
                            f"{n.name}+{dw.name}"))
            skip.add(fwd.index(dw))
            del g.tensors[mid]
            fused += 1
            continue
        out.append(n)
    g.nodes = out + g.nodes[n_fwd:]
    g.meta["n_forward"] = len(out)
    g.meta["fused_pwdw"] = fused
    return g


def fold_weight_dequantize(g: Graph) -> Graph:
    """3. Input gradients read the int8 weights directly: a backward ``Dequantize(w, scale)`` whose only
    readers are ConvBwInput / the dx Gemm is dropped and they become ConvBwInputS8W / GemmS8W over
    (dy, w, scale), so no fp32 copy of a weight is ever held. Same products, same order (conv)."""
    readers: dict[str, list[Node]] = {}
    for n in g.nodes:
        for i in n.inputs:
            if i:
                readers.setdefault(i, []).append(n)
    drop = []
    for n in g.nodes:
        if n.op != "Dequantize" or len(n.inputs) != 2:
            continue
        wf = n.outputs[0]
        users = readers.get(wf, [])
        ok = all((u.op == "ConvBwInput" and u.inputs[1] == wf) or
                 (u.op == "Gemm" and u.inputs[1:] == [wf] and not u.attrs.get("transA") and not u.attrs.get("transB"))
                 for u in users)
        if not users or not ok:
            continue
        for u in users:
            u.op = "ConvBwInputS8W" if u.op == "ConvBwInput" else "GemmS8W"
            u.inputs = [u.inputs[0], n.inputs[0], n.inputs[1]]
        drop.append(n)
        del g.tensors[wf]
    n_fwd = g.meta.get("n_forward", len(g.nodes))
    g.nodes = [n for n in g.nodes if n not in drop]
    g.meta["n_forward"] = n_fwd  # only backward nodes were dropped
    return g
