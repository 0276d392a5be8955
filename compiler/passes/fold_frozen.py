"""fold_frozen: evaluate at compile time every node whose inputs are all frozen constants.

Assumes: the update scheme is known (frozen = a param not in the scheme). Guarantees: nodes that
depend only on frozen weights (weight reshapes/transposes written by exporters, constant
arithmetic) become constants; nothing that depends on a graph input or a trained tensor moves.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph
from ..ops import run_ref


def fold_frozen(g: Graph, trainable: set[str]) -> Graph:
    keep = []
    for n in g.nodes:
        ins = [i for i in n.inputs if i]
        if ins and all(g.tensors[i].role in ("param", "const") and i not in trainable
                       and g.tensors[i].data is not None for i in ins):
            vals = run_ref(n, [g.tensors[i].data if i else None for i in n.inputs])
            for name, v in zip(n.outputs, vals):
                v = np.asarray(v, dtype=np.float32) if np.asarray(v).dtype == np.float64 else np.asarray(v)
                t = g.tensors[name]
                t.role, t.data = "const", v
            continue
        keep.append(n)
    g.nodes = keep
    return g
