"""fold_batchnorm: merge an inference BatchNormalization into the Conv before it.

Assumes: the update scheme is known. Folds only when the Conv's weight and bias and all of the
BN's tensors are frozen and the Conv output feeds nothing but the BN (then the exported model,
which keeps the original tensors, is unaffected). Otherwise the BN stays a per-channel affine
node with its own gradients. Guarantees: same forward values up to fp32 rounding.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph


def fold_batchnorm(g: Graph, trainable: set[str]) -> Graph:
    producers, consumers = g.producers(), g.consumers()
    keep = []
    for n in g.nodes:
        if n.op != "BatchNormalization":
            keep.append(n)
            continue
        conv = producers.get(n.inputs[0])
        tensors = n.inputs[1:5] + (conv.inputs[1:3] if conv is not None else [])
        if (conv is None or conv.op != "Conv" or len(consumers.get(n.inputs[0], [])) != 1
                or any(t in trainable for t in tensors)
                or any(g.tensors[t].data is None for t in tensors)):
            keep.append(n)
            continue
        scale, bias, mean, var = (g.tensors[t].data.astype(np.float64) for t in n.inputs[1:5])
        k = scale / np.sqrt(var + n.attrs.get("epsilon", 1e-5))
        w = g.tensors[conv.inputs[1]].data.astype(np.float64)
        b = g.tensors[conv.inputs[2]].data.astype(np.float64) if len(conv.inputs) > 2 else np.zeros(w.shape[0])
        wname, bname = g.unique(conv.inputs[1] + "/bnfold"), g.unique(n.name + "/bnfold_bias")
        g.add(wname, w.shape, role="const", data=(w * k.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32))
        g.add(bname, b.shape, role="const", data=((b - mean) * k + bias).astype(np.float32))
        conv.inputs = [conv.inputs[0], wname, bname]
        # the conv now writes the BN's output tensor directly
        del g.tensors[conv.outputs[0]]
        conv.outputs = [n.outputs[0]]
    g.nodes = keep
    return g
