"""select_kernels: choose each node's kernel variant for the target, at compile time.

Assumes: the final training schedule (after autodiff). Guarantees: a node whose variant needs
workspace gets an extra ``scratch`` output tensor, alive only during that node, so the memory
planner places it in the arena like any other buffer (no malloc, no hidden static buffers).
The reference kernels are the fallback: a variant is chosen only where its constraints hold.

Variants (their C lives in runtime_c/, their constraints and scratch sizes in Python here):
- ``tiled``: im2col/GEMM-blocked convolutions (runtime_c/eg_conv_tiled.c) for targets with
  caches and wide registers (host, rpi, jetson). The MCU keeps the direct reference kernels,
  whose zero workspace is what a 256 KiB SRAM wants.
- ``rvv``: RISC-V vector (zve32f) variants of the convolutions and GEMM (runtime_c/rvv/), for an
  mcu build whose extensions include zve32f. No scratch and no shape constraints: every call
  the reference takes, the variant takes.
- ``zvfh``: the native fp16 conv/GEMM kernels of `--dtype fp16` (nodes marked ``f16`` by
  lower_fp16; vle16 + widening vfwmacc into fp32 accumulators) and the fp16 casts (vfncvt/vfwcvt),
  runtime_c/rvv/eg_*_zvfh.c, for an mcu build with zve32f and zvfh. Without zvfh an ``f16`` node
  keeps the portable fp16 kernel (scalar Zfh where the board has zfh); other targets too.
- ``neon``: on the aarch64 targets (rpi, jetson) the same algorithms and scratch over an
  arm_neon.h GEMM core, threaded over the board's cores (runtime_c/neon/eg_neon.h).
- ``dw_neon``: on rpi/jetson, depthwise convolutions as arm_neon.h loops over one zero-padded
  plane per channel (runtime_c/neon/eg_dw_neon.h) where kernels_neon.dw_neon_applies says so
  (width stride 1 or 2, no dilation), scratch from kernels_neon.dw_neon_scratch_floats.
- ``neon`` on an ``f16`` node (`--dtype fp16`, rpi/jetson): the native fp16 conv/GEMM kernels with
  fp16 loads widened by fcvtl and fp32 accumulation (runtime_c/neon/eg_f16_neon.h), no scratch
  (chosen after the TVM assignment: TVM's kernels are fp32).
- ``tvm``: on rpi/jetson with ``--backend tvm|auto``, a NEON conv/Gemm kernel replaced by one TVM generated
  for that node's shape (compiler/tvm_backend.py), per node by measured instruction counts.
- ``implicit``: on ``host``, the forward, stride-1 input-gradient and weight-gradient convolutions
  as implicit GEMMs on zero-padded phase planes of the image (no im2col), where
  kernels_tiled.use_implicit says so.
- ``winograd``: on ``host``, 3x3 stride-1 forward and input-gradient convolutions as Winograd
  F(2x2,3x3) or F(4x4,3x3) (runtime_c/eg_winograd.c; ``attrs["wino_tile"]`` = 2 or 4) where
  kernels_winograd.winograd_tile says so (a measured table per layer shape, else a cost model).
- ``winograd`` on a ConvBwWeight: on ``host``, the weight gradient of a 3x3 stride-1 ungrouped convolution by Winograd
  F(3x3, 2x2) (runtime_c/eg_winograd_wgrad.c), where kernels_wgrad.use_winograd says it measured
  faster than the implicit GEMM (on a host whose -march=native has AVX-512: kernels_wgrad.host_has_avx512),
  unless Adam reads the gradient (``_feeds_adam``);
  scratch from kernels_wgrad.winograd_scratch_floats.
- ``gemv``: on ``host``, a 2-D Gemm/MatMul whose output is one row (M == 1: a batch-1 linear
  layer's forward and input gradient) or whose contraction is one term (K == 1: its weight
  gradient, an outer product) (runtime_c/eg_gemv.c): the register-tiled GEMM packs and blocks
  for shapes these are not.
"""

from __future__ import annotations

from pathlib import Path

from ..ir import Graph

RUNTIME = Path(__file__).resolve().parent.parent.parent / "runtime_c"
TILED_TARGETS = {"host", "rpi", "jetson"}
NEON_TARGETS = {"rpi", "jetson"}
F16_NEON_TARGETS = {"rpi", "jetson"}  # the fp16 NEON kernels use base ARMv8 fcvtl/fcvtn: every board
CONV_KINDS = {"Conv": "fw", "ConvBwInput": "bw_input", "ConvBwWeight": "bw_weight"}
GEMM_OPS = ("Gemm", "MatMul", "MatMulT")
# ISA extensions an mcu build may list (CompileConfig.extensions, `--ext`), beyond rv32imafc.
MCU_EXTENSIONS = ("zve32f", "zvl128b", "zfh", "zvfh")
RVV_SOURCES = RUNTIME / "rvv"


def tiled_available() -> bool:
    return (RUNTIME / "eg_conv_tiled.c").exists() and "eg_conv_tiled.h" in (RUNTIME / "eg_kernels.h").read_text()


def conv_sizes(g: Graph, n) -> dict:
    """The sizes every conv kernel takes, from the node (the same numbers lower.py emits)."""
    a = n.attrs
    if n.op == "Conv":
        xs, ws, ys = g.tensors[n.inputs[0]].shape, g.tensors[n.inputs[1]].shape, g.tensors[n.outputs[0]].shape
    elif n.op == "ConvBwInput":
        xs, ws, ys = tuple(a["x_shape"]), g.tensors[n.inputs[1]].shape, g.tensors[n.inputs[0]].shape
    else:
        ws, ys = tuple(a["w_shape"]), g.tensors[n.inputs[0]].shape
        xs = list(g.tensors[n.inputs[1]].shape)
        xs[1] = ws[1] * a["group"]
    x4 = (xs[0], xs[1], 1, xs[2]) if len(xs) == 3 else tuple(xs)
    w4 = (ws[0], ws[1], 1, ws[2]) if len(ws) == 3 else tuple(ws)
    y4 = (ys[0], ys[1], 1, ys[2]) if len(ys) == 3 else tuple(ys)
    d = {"N": x4[0], "C": x4[1], "H": x4[2], "W": x4[3], "M": w4[0], "OH": y4[2], "OW": y4[3], "KH": w4[2], "KW": w4[3],
             "sh": a["strides"][0], "sw": a["strides"][1], "pt": a["pads"][0], "pl": a["pads"][1],
             "dh": a["dilations"][0], "dw": a["dilations"][1], "G": a["group"]}
    if n.op == "ConvBwWeight":
        d.update(M_upd=a["m_upd"], Cg_upd=a["cg_upd"], Cx=g.tensors[n.inputs[1]].shape[1])
    return d


def gemv_shaped(g: Graph, n) -> bool:
    """A 2-D product with one output row or one contracted term (the ``gemv`` variant's shapes)."""
    ys = g.tensors[n.outputs[0]].shape
    if len(ys) != 2 or any(len(g.tensors[i].shape) != 2 for i in n.inputs[:2]):
        return False
    ta = n.attrs.get("transA", 0) if n.op in ("Gemm", "MatMulT") else 0
    sa = g.tensors[n.inputs[0]].shape
    return ys[0] == 1 or (sa[0] if ta else sa[1]) == 1


def _feeds_adam(n, consumers) -> bool:
    """A gradient that an Adam update reads. Adam's step g / (sqrt(v) + eps) is scale-free per element, so a
    gradient needs each element right relative to itself; the Winograd weight gradient's rounding is relative to
    its 3x3 block's sum of |terms| (a tap that cancels to ~0 comes out as a difference of large sums), which
    Adam turns into steps of about lr where the reference steps ~0 (cnn_fashion, a dead channel)."""
    return any(c.op == "AdamUpdate" for c in consumers.get(n.outputs[0], []))


def select_kernels(g: Graph, target: str, extensions: tuple[str, ...] | list[str] = (), backend: str = "ours",
                   board: str | None = None, log=lambda *a: None) -> Graph:
    if target == "mcu" and "zve32f" in extensions:
        for n in g.nodes:
            if n.attrs.get("f16"):
                if "zvfh" in extensions and (n.op in CONV_KINDS or n.op in GEMM_OPS):
                    n.attrs["kernel"] = "zvfh"
            elif n.op in CONV_KINDS or n.op in GEMM_OPS:
                n.attrs["kernel"] = "rvv"
            elif n.op in ("CastF16", "CastF32") and "zvfh" in extensions:
                n.attrs["kernel"] = "zvfh"
        return g
    if target not in TILED_TARGETS or not tiled_available():
        return g
    from ..kernels_neon import dw_neon_applies, dw_neon_scratch_floats
    from ..kernels_tiled import conv_scratch_floats, implicit_kind_scratch, use_implicit
    from ..kernels_winograd import winograd_scratch_floats, winograd_tile
    wino = target not in NEON_TARGETS and (RUNTIME / "eg_winograd.c").exists()
    from ..kernels_wgrad import host_has_avx512, use_winograd
    from ..kernels_wgrad import winograd_scratch_floats as wgrad_scratch_floats
    dw_neon = target in NEON_TARGETS and (RUNTIME / "neon" / "eg_dw_neon.c").exists()
    f16_neon = target in F16_NEON_TARGETS and (RUNTIME / "neon" / "eg_f16_neon.c").exists()
    consumers = g.consumers()
    for n in g.nodes:
        if n.attrs.get("f16"):  # native fp16 conv/GEMM: the reference, or _neon below
            continue
        if n.op in ("Gemm", "MatMul", "MatMulT"):
            n.attrs["kernel"] = "gemv" if target not in NEON_TARGETS and gemv_shaped(g, n) else "tiled"
        kind = CONV_KINDS.get(n.op)
        if kind is None:
            continue
        sizes = conv_sizes(g, n)
        tile = winograd_tile(**sizes, kind=kind) if wino and kind != "bw_weight" else None
        if dw_neon and dw_neon_applies(**sizes):
            n.attrs["kernel"] = "dw_neon"
            floats = dw_neon_scratch_floats(kind, **sizes)
        elif target == "host" and kind == "bw_weight" and use_winograd(**sizes) and host_has_avx512() and all(
                g.tensors[t].dtype == "f32" for t in (*n.inputs, n.outputs[0])) and not _feeds_adam(n, consumers):
            n.attrs["kernel"] = "winograd"
            floats = wgrad_scratch_floats(**sizes)
        elif tile is not None:
            n.attrs["kernel"] = "winograd"
            n.attrs["wino_tile"] = tile
            floats = winograd_scratch_floats(kind, sizes["C"], sizes["M"], sizes["H"], sizes["W"], sizes["OH"],
                                             sizes["OW"], tile)
        elif target not in NEON_TARGETS and use_implicit(**sizes, kind=kind):
            n.attrs["kernel"] = "implicit"
            floats = implicit_kind_scratch(kind, **sizes)
        else:
            n.attrs["kernel"] = "tiled"
            floats = conv_scratch_floats(kind, **sizes)
        if floats > 0:
            name = g.unique(f"{n.name}/scratch")
            g.add(name, (floats,), "f32", role="scratch")
            n.outputs.append(name)
    if target in NEON_TARGETS and (RUNTIME / "neon" / "eg_neon.h").exists():
        for n in g.nodes:  # the _neon kernels take the _tiled kernels' arguments and scratch
            if n.attrs.get("kernel") == "tiled":
                n.attrs["kernel"] = "neon"
        if backend != "ours":  # --backend tvm|auto: some NEON kernels may become TVM's (compiler/tvm_backend.py)
            from ..tvm_backend import assign
            assign(g, target, board, backend, log)
    for n in g.nodes:  # native fp16 conv/GEMM on rpi/jetson: eg_f16_neon.h (no scratch)
        if f16_neon and n.attrs.get("f16") and (n.op in CONV_KINDS or n.op in GEMM_OPS):
            n.attrs["kernel"] = "neon"
    return g
