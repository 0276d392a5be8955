"""fuse_eltwise: fold an elementwise tail into the kernel that produces its input, after autodiff.

Assumes: the training graph after select_kernels (kernel variants chosen; forward nodes first,
``meta["n_forward"]`` of them). Guarantees: the graph computes the same values; a fused node's
output is the tail's output, the intermediate tensor is gone (one pass over memory fewer, and no
buffer for it), and only rewrites whose kernel exists for the target are made.

Fusions (each chosen per target, at compile time):
- ``depthwise + Clip`` (MobileNetV2's ReLU6) on ``host``: a depthwise Conv (C == M == group, 2-D,
  the ``tiled`` variant) whose output only a Clip reads becomes one Conv with ``attrs["clip"] =
  (lo, hi)``, lowered to depthwise2d_f32_fw_clip (runtime_c/eg_dwconv_tiled.c), which clamps in
  its epilogue. The backward is unchanged: ClipGrad reads the Clip's output, which the fused node
  now writes, and no gradient reads the pre-clip values (checked: nothing else reads them).
"""

from __future__ import annotations

from ..ir import Graph

FUSE_TARGETS = {"host"}


def _depthwise_2d(g: Graph, n) -> bool:
    if n.op != "Conv" or n.attrs.get("kernel") != "tiled" or len(n.outputs) != 1:
        return False
    xs, ws = g.tensors[n.inputs[0]].shape, g.tensors[n.inputs[1]].shape
    G = n.attrs["group"]
    return len(xs) == 4 and xs[1] == G and ws[0] == G and ws[1] == 1 and g.tensors[n.outputs[0]].dtype == "f32"


def fuse_eltwise(g: Graph, target: str) -> Graph:
    if target not in FUSE_TARGETS:
        return g
    consumers = g.consumers()
    n_fwd = g.meta.get("n_forward", len(g.nodes))
    drop: set[int] = set()
    for n in g.nodes:
        if not _depthwise_2d(g, n):
            continue
        mid = n.outputs[0]
        users = consumers.get(mid, [])
        if len(users) != 1 or mid in g.outputs:
            continue
        clip = users[0]
        if clip.op != "Clip" or clip.inputs[0] != mid or clip.attrs.get("skip_on_overflow"):
            continue
        n.attrs["clip"] = (float(clip.attrs["lo"]), float(clip.attrs["hi"]))
        n.attrs["kernel"] = "dwclip"
        n.outputs = [clip.outputs[0]]
        drop.add(id(clip))
        del g.tensors[mid]
    if drop:
        g.meta["n_forward"] = n_fwd - sum(1 for n in g.nodes[:n_fwd] if id(n) in drop)
        g.nodes = [n for n in g.nodes if id(n) not in drop]
    return g
