"""wino_frozen: transform the weights of frozen Winograd convolutions once, at compile time.

Assumes: select_kernels ran (``kernel == "winograd"`` with ``wino_tile`` and a scratch output on the
forward and input-gradient convolutions it chose). Guarantees: a Winograd Conv / ConvBwInput whose
weight is frozen (a ``const``, or a ``param`` the scheme does not train: emitted ``static const``, and
the protocol refuses writes to frozen buffers, so it cannot change after the build) reads its
transformed weights U = G g G^T from a new ``const`` tensor (named in ``attrs["wino_u"]``;
kernels_winograd.winograd_weights) through the ``_winograd_pre`` kernel, instead of transforming the
weight on every call (with the tile kernels_winograd.winograd_tile_frozen measured faster so); its
scratch loses U's part. Trained weights change every step and keep the
per-call transform.
"""

from __future__ import annotations

from ..ir import Graph
from ..kernels_winograd import winograd_scratch_floats, winograd_tile_frozen, winograd_weights
from .select_kernels import conv_sizes


def wino_frozen(g: Graph, trainable: set[str]) -> Graph:
    done: dict[tuple[str, str, int], str] = {}  # (weight, kind, tile) -> U: one copy per weight and transform
    for n in g.nodes:
        if n.op not in ("Conv", "ConvBwInput") or n.attrs.get("kernel") != "winograd" or len(n.outputs) < 2:
            continue
        w = g.tensors[n.inputs[1]]
        frozen = w.role == "const" or (w.role == "param" and w.name not in trainable)
        if not frozen or w.dtype != "f32" or w.data is None:
            continue
        kind, s = ("fw" if n.op == "Conv" else "bw_input"), conv_sizes(g, n)
        # without the per-call weight transform the faster tile may differ (kernels_winograd.MEASURED_PRE)
        tile = n.attrs["wino_tile"] = winograd_tile_frozen(n.attrs["wino_tile"], **s, kind=kind)
        if (w.name, kind, tile) not in done:
            u = done[w.name, kind, tile] = g.unique(f"{w.name}/winograd{tile}_{kind}")
            data = winograd_weights(w.data.reshape(w.shape), kind, tile)
            g.add(u, data.shape, "f32", role="const", data=data)
        n.attrs["wino_u"] = done[w.name, kind, tile]
        scratch = g.tensors[n.outputs[1]]
        scratch.shape = (winograd_scratch_floats(kind, s["C"], s["M"], s["H"], s["W"], s["OH"], s["OW"], tile,
                                                 pre=True),)
    return g
