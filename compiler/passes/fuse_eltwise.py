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
- ``conv + bias + ReLU`` on ``host``: a Conv whose chosen kernel is in FUSE_ACT_KERNELS and whose
  output only a Relu reads gets ``attrs["act"] = "relu"`` and writes the Relu's output
  (conv2d_f32_fw_implicit_act / conv2d_f32_fw_tiled_act, conv2d_f32_fw_winograd: a trailing
  ``int act``); a Clip(0, 6) (ReLU6) likewise as ``act = "relu6"`` (implicit, tiled: act 2).
  ReluGrad reads the Relu output, which the conv now writes; the pre-activation
  tensor is gone. A Conv whose output has another reader (an Add, a second branch) keeps its Relu.
- ``input gradient + ReluGrad / ClipGrad`` on ``host``: the ConvBwInput that produces the dy of a
  ReluGrad(dy, y) or ClipGrad(dy, y), where that ReluGrad/ClipGrad is dy's only reader, masks
  its store by y (``attrs["mask"] = (kind, lo, hi)``, y a third input), lowered to
  conv2d_f32_bw_input_{implicit,tiled,winograd}_mask (the implicit one strided too: its phase kernel
  masks each dx row as it zips the phases into it; the Winograd one as its output transform stores a row). A dy that is a sum of branches (the ReLU after a
  ResNet Add, whose output feeds the next block and its skip connection) is produced by an Add,
  not a convolution, and is left alone, as is a dy that something else reads unmasked.
- ``Gemm + bias + ReLU/ReLU6`` and ``Gemm input gradient + ReluGrad/ClipGrad`` on ``host``: the same two
  rewrites for a Gemm run by the ``gemv`` kernel (batch-1 linear layers, mlp_har and the classifier
  heads): ``attrs["act"]`` -> gemm_f32_gemv_act; ``attrs["mask"]`` with y as a fourth input after C
  ("" where there is none) -> gemm_f32_gemv_mask (runtime_c/eg_gemv.h), the epilogue after alpha/beta.
"""

from __future__ import annotations

from ..ir import Graph

FUSE_TARGETS = {"host"}
FUSE_ACT_KERNELS = {"implicit", "tiled", "winograd"}  # forward kernels with the trailing int act
FUSE_RELU6_KERNELS = {"implicit", "tiled"}  # ... and act 2, ReLU6 = Clip(0, 6)
FUSE_MASK_KERNELS = {"implicit", "tiled", "winograd"}  # input-gradient kernels with the _mask variant
FUSE_GEMM_KERNELS = {"gemv"}  # Gemm kernels with the _act and _mask variants (runtime_c/eg_gemv.h)


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
        clip = g.sole_reader(mid, consumers)
        if clip is None or clip.op != "Clip" or clip.inputs[0] != mid or clip.attrs.get("skip_on_overflow"):
            continue
        n.attrs["clip"] = (float(clip.attrs["lo"]), float(clip.attrs["hi"]))
        n.attrs["kernel"] = "dwclip"
        n.outputs = [clip.outputs[0]]
        drop.add(id(clip))
        del g.tensors[mid]
    drop |= _fuse_act(g, consumers)
    drop |= _fuse_mask(g, consumers)
    if drop:
        g.meta["n_forward"] = n_fwd - sum(1 for n in g.nodes[:n_fwd] if id(n) in drop)
        g.nodes = [n for n in g.nodes if id(n) not in drop]
    return g


def _plain_f32(g: Graph, n, kernels: set[str]) -> bool:
    return (n.attrs.get("kernel") in kernels and not n.attrs.get("f16") and not n.attrs.get("skip_on_overflow")
            and g.tensors[n.outputs[0]].dtype == "f32")


def _fuse_act(g: Graph, consumers) -> set[int]:
    """Conv -> Relu (or ReLU6): the activation moves into the conv's store."""
    drop: set[int] = set()
    for n in g.nodes:
        if "act" in n.attrs or "clip" in n.attrs:
            continue
        if not (n.op == "Conv" and _plain_f32(g, n, FUSE_ACT_KERNELS)
                or n.op == "Gemm" and _plain_f32(g, n, FUSE_GEMM_KERNELS)):
            continue
        mid = n.outputs[0]
        relu = g.sole_reader(mid, consumers)
        if relu is None or relu.inputs[0] != mid or relu.attrs.get("skip_on_overflow") or relu.attrs.get("f16") \
                or g.tensors[relu.outputs[0]].dtype != "f32":
            continue
        if relu.op == "Relu":
            n.attrs["act"] = "relu"
        elif (relu.op == "Clip" and (float(relu.attrs["lo"]), float(relu.attrs["hi"])) == (0.0, 6.0)
              and n.attrs["kernel"] in FUSE_RELU6_KERNELS | FUSE_GEMM_KERNELS):
            n.attrs["act"] = "relu6"
        else:
            continue
        n.outputs = [relu.outputs[0], *n.outputs[1:]]
        drop.add(id(relu))
        del g.tensors[mid]
    return drop


def _fuse_mask(g: Graph, consumers) -> set[int]:
    """ConvBwInput -> ReluGrad/ClipGrad(dy, y): the mask moves into the input gradient's store."""
    producers = g.producers()
    order = {id(n): i for i, n in enumerate(g.nodes)}
    drop: set[int] = set()
    for act in g.nodes:
        if act.op not in ("ReluGrad", "ClipGrad") or act.attrs.get("skip_on_overflow") or act.attrs.get("f16") \
                or g.tensors[act.outputs[0]].dtype != "f32":
            continue
        dy, y = act.inputs[0], act.inputs[1]
        conv = producers.get(dy)
        if conv is None or "mask" in conv.attrs or "act" in conv.attrs or not (
                conv.op == "ConvBwInput" and _plain_f32(g, conv, FUSE_MASK_KERNELS)
                or conv.op == "Gemm" and _plain_f32(g, conv, FUSE_GEMM_KERNELS)):
            continue
        if g.sole_reader(dy, consumers) is None or g.tensors[y].dtype != "f32":
            continue
        if y in producers and order[id(producers[y])] > order[id(conv)]:
            continue  # y is written after the input gradient (a recomputed activation, passes/recompute.py)
        if act.op == "ReluGrad":
            conv.attrs["mask"] = ("relu", 0.0, 0.0)
        else:
            conv.attrs["mask"] = ("clip", float(act.attrs["lo"]), float(act.attrs["hi"]))
        if conv.op == "Gemm":  # y after C ("" where the product has none): inputs (a, b, c, y)
            conv.inputs = [*conv.inputs, *[""] * (3 - len(conv.inputs)), y]
        else:
            conv.inputs = [*conv.inputs, y]
        conv.outputs = [act.outputs[0], *conv.outputs[1:]]
        drop.add(id(act))
        del g.tensors[dy]
    return drop
