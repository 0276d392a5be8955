"""ONNX -> IR.

Assumes: an ONNX file as real exporters write it (PyTorch legacy/dynamo, tf2onnx, Paddle2ONNX),
default-domain opset 11-21. Guarantees: every tensor has a static shape for the fixed input
shape (batch 1 unless told otherwise); weights from initializers *and* float Constant nodes are
``param`` tensors named as in the ONNX file; shape-only subgraphs are folded into constants;
Identity/Dropout are gone; attributes are normalised (explicit 4-way pads, 2-D kernel facts
for 1-D and 2-D ops). Anything unsupported raises one error listing every offending node.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import EdgegradError, UnsupportedModelError
from .ir import NP_TO_DTYPE, Graph, Node
from .ops import OPS, conv_out, run_ref
from .shapes import infer_shapes

SUPPORTED_OPSETS = range(11, 22)
ALIAS_OPS = {"Identity", "Dropout"}


def load_onnx(path: str | Path) -> onnx.ModelProto:
    path = Path(path)
    if not path.exists():
        raise EdgegradError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 -- protobuf raises several types for truncated/garbage files
        raise EdgegradError(f"{path}: not a valid ONNX file ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
    if not model.graph.node:
        raise EdgegradError(f"{path}: the ONNX graph has no nodes (truncated or empty file?)")
    return model


def opset_of(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise EdgegradError("the model imports no default-domain ONNX opset")


def import_onnx(model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]] | None = None) -> Graph:
    """Build the IR graph; fold constants and shape subgraphs for the fixed input shapes."""
    opset = opset_of(model)
    if opset not in SUPPORTED_OPSETS:
        raise UnsupportedModelError(f"opset {opset} is not supported (edgegrad reads opsets 11-21)")
    g = Graph()
    g.meta["opset"] = opset
    consts: dict[str, np.ndarray] = {}
    init_names = set()
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        init_names.add(init.name)
        _add_constant(g, consts, init.name, arr, initializer=True)
    for vi in model.graph.input:
        if vi.name in init_names:
            continue
        g.add(vi.name, _fixed_shape(vi, input_shapes or {}), _elem_dtype(vi), role="input")
        g.inputs.append(vi.name)
    alias: dict[str, str] = {}
    unsupported: list[str] = []
    for idx, proto in enumerate(model.graph.node):
        name = proto.name or f"{proto.op_type}_{idx}"
        ins = [alias.get(i, i) for i in proto.input]
        if proto.domain not in ("", "ai.onnx"):
            unsupported.append(f"{proto.domain}.{proto.op_type} ({name})")
            continue
        if proto.op_type == "Constant":
            _add_constant(g, consts, proto.output[0], _constant_value(proto))
            continue
        if proto.op_type in ALIAS_OPS:
            if _dropout_trains(proto, ins, consts):
                unsupported.append(f"Dropout ({name}: training_mode=True with a non-zero ratio draws random masks)")
                continue
            alias[proto.output[0]] = ins[0]
            continue
        # keep scanning for more unsupported ops, but shapes downstream may be unknown
        if unsupported and proto.op_type in OPS and any(i and i not in g.tensors for i in ins):
            continue
        if proto.op_type not in OPS or proto.op_type.endswith("Grad") or OPS[proto.op_type].ref is None:
            unsupported.append(f"{proto.op_type} ({name})")
            continue
        missing = [i for i in ins if i and i not in g.tensors]
        if missing:
            if unsupported:
                continue
            raise UnsupportedModelError(f"node {name} ({proto.op_type}) reads {missing[0]!r}, which nothing defines")
        try:
            node = _normalise(proto, name, ins, g, consts, opset)
        except UnsupportedModelError as e:
            unsupported.append(f"{proto.op_type} ({name}: {e})")
            continue
        _place(g, consts, node)
    if unsupported:
        raise UnsupportedModelError(f"unsupported ONNX ops: {', '.join(unsupported)}")
    g.outputs = [alias.get(o.name, o.name) for o in model.graph.output]
    for o in g.outputs:
        if o not in g.tensors:
            raise UnsupportedModelError(f"graph output {o!r} is not produced by any node")
        if g.tensors[o].role in ("const", "param"):
            raise UnsupportedModelError(f"graph output {o!r} is a constant: nothing to train")
    _drop_dead(g)
    return g


# ----------------------------------------------------------------------------- pieces


def _elem_dtype(vi) -> str:
    et = vi.type.tensor_type.elem_type
    if not et:
        return "f32"
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(et))
    if dtype not in NP_TO_DTYPE:  # e.g. int16 or uint64: never read as float32 by mistake
        raise UnsupportedModelError(f"input {vi.name!r} has element type {dtype}, which edgegrad does not read")
    return NP_TO_DTYPE[dtype]


def _fixed_shape(vi, overrides: dict) -> tuple[int, ...]:
    if vi.name in overrides:
        return tuple(overrides[vi.name])
    dims = []
    for i, d in enumerate(vi.type.tensor_type.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(d.dim_value)
        elif i == 0:
            dims.append(1)  # the batch dimension: on-device training runs batch 1
        else:
            label = d.dim_param or "?"
            raise UnsupportedModelError(
                f"input {vi.name!r} has a dynamic dimension {label!r} at axis {i} that cannot be fixed; "
                f"pass --input-shape {vi.name}=1,... to fix it")
    return tuple(dims)


def _constant_value(proto) -> np.ndarray:
    for a in proto.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), np.float32)
        if a.name == "value_int":
            return np.array(a.i, np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), np.int64)
    raise UnsupportedModelError(f"Constant node {proto.name!r} has no supported value attribute")


def _add_constant(g: Graph, consts: dict, name: str, arr: np.ndarray, initializer: bool = False) -> None:
    # Float initializers are weights; float Constant nodes are weights unless they are scalars
    # (0.5, 3, 6 in decomposed activations are not something anyone trains).
    if arr.dtype in (np.float32, np.float64, np.float16) and (initializer or arr.size > 1):
        arr = arr.astype(np.float32)
        g.add(name, arr.shape, "f32", role="param", data=arr)  # a weight: trainable if the scheme says so
    else:
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        g.add(name, arr.shape, NP_TO_DTYPE.get(arr.dtype, "f32"), role="const", data=arr)
    consts[name] = arr


def _dropout_trains(proto, ins: list[str], consts: dict) -> bool:
    """True for a Dropout (opset 12+) whose constant training_mode is set and whose ratio is not 0."""
    if proto.op_type != "Dropout" or len(ins) < 3 or not ins[2] or not np.any(consts.get(ins[2], False)):
        return False
    ratio = consts.get(ins[1], 1.0) if ins[1] else 0.5
    return bool(np.any(np.asarray(ratio) != 0))


def _attrs(proto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in proto.attribute}


def _const_input(consts: dict, ins: list[str], i: int, what: str):
    if i >= len(ins) or not ins[i]:
        return None
    if ins[i] not in consts:
        raise UnsupportedModelError(f"{what} must be a constant for a fixed input shape")
    return consts[ins[i]]


def _spatial(a: dict, key: str, n: int, default: int) -> list[int]:
    v = list(a.get(key, [default] * n))
    return ([1] + v) if n == 1 else v  # 1-D ops become 2-D with H = 1


def _pads(a: dict, in_hw: list[int], kernel: list[int], strides: list[int], dil: list[int]) -> list[int]:
    """Explicit [top, left, bottom, right] pads, auto_pad resolved."""
    nd = len(in_hw)
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads_b, pads_e = [], []
        for size, k, s, d in zip(in_hw, kernel, strides, dil):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            pads_b.append(small if auto == "SAME_UPPER" else big)
            pads_e.append(big if auto == "SAME_UPPER" else small)
    elif auto == "VALID":
        pads_b, pads_e = [0] * nd, [0] * nd
    else:
        p = list(a.get("pads", [0] * (2 * nd)))
        pads_b, pads_e = p[:nd], p[nd:]
    if nd == 1:
        return [0, pads_b[0], 0, pads_e[0]]
    return [pads_b[0], pads_b[1], pads_e[0], pads_e[1]]


def _normalise(proto, name: str, ins: list[str], g: Graph, consts: dict, opset: int) -> Node:
    a = _attrs(proto)
    t = proto.op_type
    shape = lambda i: g.tensors[ins[i]].shape
    node = Node(t, list(ins), list(proto.output), {}, name)
    if t in ("Conv", "MaxPool", "AveragePool"):
        xs = shape(0)
        if len(xs) not in (3, 4):
            raise UnsupportedModelError(f"{len(xs) - 2}-D {t} (only 1-D and 2-D)")
        nd = len(xs) - 2
        kernel = list(g.tensors[ins[1]].shape[2:]) if t == "Conv" else list(a["kernel_shape"])
        strides, dil = list(a.get("strides", [1] * nd)), list(a.get("dilations", [1] * nd))
        pads = _pads(a, list(xs[2:]), kernel, strides, dil)
        k2, s2, d2 = ([1] + kernel if nd == 1 else kernel), _spatial(a, "strides", nd, 1), _spatial(a, "dilations", nd, 1)
        node.attrs = {"pads": pads, "strides": s2, "dilations": d2}
        if t == "Conv":
            node.attrs["group"] = int(a.get("group", 1))
            if len(ins) > 2 and ins[2] == "":
                node.inputs = ins[:2]
        else:
            if a.get("storage_order", 0):
                raise UnsupportedModelError("MaxPool storage_order=1")
            if len(proto.output) > 1 and proto.output[1]:
                raise UnsupportedModelError("MaxPool with an Indices output")
            node.outputs = [proto.output[0]]
            H, W = (1, xs[2]) if nd == 1 else xs[2:]
            ceil = bool(a.get("ceil_mode", 0))
            pt, pl, pb, pr = pads
            oh = conv_out(H, k2[0], s2[0], d2[0], pt, pb, ceil)
            ow = conv_out(W, k2[1], s2[1], d2[1], pl, pr, ceil)
            node.attrs.update(kernel=k2, out_hw=[oh, ow], y_shape=list(xs[:2]) + ([ow] if nd == 1 else [oh, ow]))
            if t == "AveragePool":
                node.attrs["count_include_pad"] = int(a.get("count_include_pad", 0))
                if d2 != [1, 1]:
                    raise UnsupportedModelError("AveragePool with dilations")
    elif t == "Gemm":
        node.attrs = {k: a.get(k, d) for k, d in (("alpha", 1.0), ("beta", 1.0), ("transA", 0), ("transB", 0))}
        if len(ins) > 2 and not ins[2]:
            node.inputs = ins[:2]
    elif t in ("Flatten", "Reshape", "Squeeze", "Unsqueeze"):
        xs = shape(0)
        if t == "Flatten":
            ax = a.get("axis", 1) if xs else 0
            ax = ax + len(xs) if ax < 0 else ax  # axis is in [-rank, rank]
            new = (int(np.prod(xs[:ax], dtype=np.int64)), int(np.prod(xs[ax:], dtype=np.int64)))
        elif t == "Reshape":
            target = [int(v) for v in _const_input(consts, ins, 1, "Reshape's shape")]
            if not a.get("allowzero", 0):
                target = [xs[i] if v == 0 else v for i, v in enumerate(target)]
            if -1 in target:
                known = int(np.prod([v for v in target if v != -1], dtype=np.int64))
                target[target.index(-1)] = int(np.prod(xs, dtype=np.int64)) // max(known, 1)
            new = tuple(target)
        elif t == "Squeeze":
            axes = a.get("axes") if opset < 13 else _const_input(consts, ins, 1, "Squeeze's axes")
            axes = [i for i, d in enumerate(xs) if d == 1] if axes is None else [int(v) % len(xs) for v in axes]
            new = tuple(d for i, d in enumerate(xs) if i not in axes)
        else:
            axes = a.get("axes") if opset < 13 else _const_input(consts, ins, 1, "Unsqueeze's axes")
            rank = len(xs) + len(axes)
            axes = sorted(int(v) % rank for v in axes)
            new_l = list(xs)
            for ax in axes:
                new_l.insert(ax, 1)
            new = tuple(new_l)
        if int(np.prod(new, dtype=np.int64)) != int(np.prod(xs, dtype=np.int64)):
            raise UnsupportedModelError(f"cannot reshape {list(xs)} to {list(new)}")
        node.op = "Reshape"
        node.inputs = [ins[0]]
        node.attrs = {"shape": list(new)}
    elif t == "Transpose":
        node.attrs = {"perm": list(a.get("perm", list(range(len(shape(0))))[::-1]))}
    elif t == "Concat":
        node.attrs = {"axis": int(a["axis"]) % len(shape(0))}
    elif t == "Softmax":
        ax = int(a.get("axis", -1 if opset >= 13 else 1)) % len(shape(0))
        if opset < 13 and ax != len(shape(0)) - 1:
            raise UnsupportedModelError("opset<13 Softmax over a non-last axis (2-D coercion)")
        node.attrs = {"axis": ax}
    elif t in ("ReduceMean", "ReduceSum"):
        axes = a.get("axes") if (t == "ReduceMean" and opset < 18) or (t == "ReduceSum" and opset < 13) \
            else _const_input(consts, ins, 1, f"{t}'s axes")
        rank = len(shape(0))
        if axes is None or len(axes) == 0:
            if a.get("noop_with_empty_axes", 0):
                raise UnsupportedModelError(f"{t} with noop_with_empty_axes")
            axes = list(range(rank))
        node.inputs = [ins[0]]
        node.attrs = {"axes": sorted(int(v) % rank for v in axes), "keepdims": int(a.get("keepdims", 1))}
    elif t == "Clip":
        if opset < 11:
            lo, hi = a.get("min"), a.get("max")
        else:
            # float initializers are params, but a bound is read here once and never trained
            lo, hi = _const_input(consts, ins, 1, "Clip's min"), _const_input(consts, ins, 2, "Clip's max")
        node.inputs = [ins[0]]
        node.attrs = {"lo": float(-np.inf if lo is None else np.asarray(lo).reshape(-1)[0]),
                      "hi": float(np.inf if hi is None else np.asarray(hi).reshape(-1)[0])}
    elif t == "Pad":
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "constant":
            raise UnsupportedModelError(f"Pad mode {mode!r} (only constant)")
        rank = len(shape(0))
        if opset < 11:
            pads, value = list(a["pads"]), float(a.get("value", 0.0))
        else:
            pads = [int(v) for v in _const_input(consts, ins, 1, "Pad's pads")]
            v = _const_input(consts, ins, 2, "Pad's constant_value")
            value = float(np.asarray(v).reshape(-1)[0]) if v is not None and np.asarray(v).size else 0.0
            axes = _const_input(consts, ins, 3, "Pad's axes")
            if axes is not None:
                full = [0] * (2 * rank)
                axes = [int(x) % rank for x in axes]
                for j, ax in enumerate(axes):
                    full[ax], full[rank + ax] = pads[j], pads[len(axes) + j]
                pads = full
        if any(p < 0 for p in pads):
            raise UnsupportedModelError("Pad with negative pads")
        node.inputs = [ins[0]]
        node.attrs = {"pads": pads, "value": value}
    elif t == "Slice":
        xs = shape(0)
        starts = _const_input(consts, ins, 1, "Slice's starts")
        ends = _const_input(consts, ins, 2, "Slice's ends")
        axes = _const_input(consts, ins, 3, "Slice's axes")
        steps = _const_input(consts, ins, 4, "Slice's steps")
        axes = list(range(len(starts))) if axes is None else [int(v) % len(xs) for v in axes]
        steps = [1] * len(starts) if steps is None else [int(v) for v in steps]
        st, en = [], []
        for s0, e0, ax, sp in zip(starts, ends, axes, steps):
            r = range(xs[ax])[slice(int(max(min(s0, 2**62), -2**62)), int(max(min(e0, 2**62), -2**62)), sp)]
            st.append(r.start)
            en.append(r.stop if r.stop >= 0 else None)
        node.inputs = [ins[0]]
        node.attrs = {"starts": st, "ends": en, "axes": axes, "steps": steps}
    elif t == "BatchNormalization":
        if a.get("training_mode", 0):
            raise UnsupportedModelError("BatchNormalization in training mode")
        node.attrs = {"epsilon": float(a.get("epsilon", 1e-5))}
        node.outputs = [proto.output[0]]
    elif t in ("LeakyRelu", "HardSigmoid"):
        node.attrs = {k: float(v) for k, v in a.items()}
    elif t == "Cast":
        node.attrs = {"np_dtype": onnx.helper.tensor_dtype_to_np_dtype(a["to"])}
    elif t == "Gather":
        node.attrs = {"axis": int(a.get("axis", 0))}
    elif t == "Shape":
        node.attrs = {k: int(v) for k, v in a.items()}
    elif t == "ConstantOfShape":
        node.attrs = {"value": numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)}
    elif a and t not in ("Relu", "Sigmoid", "Tanh", "HardSwish", "PRelu", "Add", "Sub", "Mul", "Div",
                         "MatMul", "GlobalAveragePool", "Equal", "Where", "Expand", "Range", "Size"):
        node.attrs = dict(a)
    return node


def _place(g: Graph, consts: dict, node: Node) -> None:
    """Fold the node if its value is known at compile time, else add it with inferred shapes."""
    ins = [i for i in node.inputs if i]
    foldable = node.op == "Shape" or (ins and all(i in consts and g.tensors[i].role == "const" for i in ins))
    if OPS[node.op].fold_only or foldable:
        if node.op == "Shape":
            arrays = [np.zeros(g.tensors[ins[0]].shape, np.float32)]
        else:
            missing = [i for i in ins if i not in consts]
            if missing:
                raise UnsupportedModelError(f"{node.op} on a run-time value ({missing[0]}): shape arithmetic must "
                                            f"be computable at compile time")
            arrays = [consts[i] if i else None for i in node.inputs]
        for name, val in zip(node.outputs, run_ref(node, arrays)):
            val = np.asarray(val)
            if val.dtype == np.float64:
                val = val.astype(np.float32)
            g.add(name, val.shape, NP_TO_DTYPE.get(val.dtype, "f32"), role="const", data=val)
            consts[name] = val
        return
    for i in ins:
        if g.tensors[i].dtype not in ("f32",) and not OPS[node.op].no_grad:
            raise UnsupportedModelError(f"{node.op} ({node.name}) on a {g.tensors[i].dtype} tensor at run time")
    g.nodes.append(node)
    for name, (shape, dtype) in zip(node.outputs, infer_shapes(node, g)):
        g.add(name, shape, dtype)


def _drop_dead(g: Graph) -> None:
    live = set(g.outputs)
    kept = []
    for n in reversed(g.nodes):
        if any(o in live for o in n.outputs):
            kept.append(n)
            live.update(i for i in n.inputs if i)
    g.nodes = kept[::-1]
    for name in [n for n, t in g.tensors.items() if n not in live and t.role in ("const", "activation")]:
        del g.tensors[name]
