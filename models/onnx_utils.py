"""Small ONNX graph rewrites used to make zoo variants. onnx + numpy only (no torch)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def initializers_to_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Move every floating-point initializer into a Constant node with the same output name.

    The result computes the same function; its weights live in ``Constant`` nodes at the
    top of the graph instead of ``graph.initializer`` (a form some exporters emit and the
    frontend must accept). Integer initializers (shapes, axes) stay where they are.
    The input model is not modified.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    floating = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                onnx.TensorProto.BFLOAT16}
    keep, constants = [], []
    for init in graph.initializer:
        if init.data_type in floating:
            constants.append(helper.make_node("Constant", inputs=[], outputs=[init.name],
                                              name=f"Constant_{init.name}", value=init))
        else:
            keep.append(init)
    # Initializers may also be listed as graph inputs (IR < 4 style); a Constant output may not.
    moved = {c.output[0] for c in constants}
    inputs = [i for i in graph.input if i.name not in moved]
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(constants + nodes)
    return out


def _constant_value(graph: onnx.GraphProto, name: str,
                    opsets: list[onnx.OperatorSetIdProto]) -> np.ndarray | None:
    """Value of ``name`` if it is an initializer or computed from constants alone, else None.

    Constant-only subgraphs (e.g. the Pad amounts torch's exporter builds from
    ConstantOfShape/Concat/Slice/Transpose) are evaluated with onnx's reference evaluator.
    """
    initializers = {init.name: init for init in graph.initializer}
    if name in initializers:
        return numpy_helper.to_array(initializers[name])
    producer = {out: node for node in graph.node for out in node.output}
    needed: list[onnx.NodeProto] = []
    needed_inits: dict[str, onnx.TensorProto] = {}
    stack, seen = [name], set()
    while stack:
        tensor = stack.pop()
        if tensor in seen or not tensor:
            continue
        seen.add(tensor)
        if tensor in initializers:
            needed_inits[tensor] = initializers[tensor]
            continue
        node = producer.get(tensor)
        if node is None:  # a graph input: not a constant
            return None
        needed.append(node)
        stack.extend(node.input)
    order = [node for node in graph.node if node in needed]  # keep topological order
    sub = helper.make_graph(order, "constant_subgraph", [],
                            [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None)],
                            list(needed_inits.values()))
    from onnx.reference import ReferenceEvaluator

    value = ReferenceEvaluator(helper.make_model(sub, opset_imports=opsets)).run(None, {})[0]
    return np.asarray(value)


def remove_dead_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop nodes and initializers that no graph output depends on (in place; returns model)."""
    graph = model.graph
    live = {o.name for o in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(list(graph.node)):
        if any(out in live for out in node.output):
            kept.append(node)
            live.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inits = [init for init in graph.initializer if init.name in live]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return model


def fold_pad_into_conv(model: onnx.ModelProto) -> onnx.ModelProto:
    """Merge ``Pad(mode=constant, value 0) -> Conv`` into the Conv's (possibly asymmetric) pads.

    torch has no asymmetric conv padding, so TF-style 'same' padding with stride 2 (DS-CNN)
    exports as an explicit zero Pad; ONNX Conv expresses it directly. Only Pads of the two
    spatial axes whose output feeds nothing but that Conv are merged. Returns a new model.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    opsets = list(out.opset_import)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    removed: list[onnx.NodeProto] = []
    for pad in list(graph.node):
        if pad.op_type != "Pad" or pad.output[0] in graph_outputs:
            continue
        users = consumers.get(pad.output[0], [])
        if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[0] != pad.output[0]:
            continue
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        if mode != b"constant" or len(pad.input) < 2:
            continue
        pads = _constant_value(graph, pad.input[1], opsets)
        if pads is None:
            continue
        if len(pad.input) > 2 and pad.input[2]:
            value = _constant_value(graph, pad.input[2], opsets)
            if value is None or np.any(value != 0):
                continue
        rank = pads.size // 2
        begin, end = pads[:rank], pads[rank:]
        if np.any(pads < 0) or np.any(begin[:2] != 0) or np.any(end[:2] != 0):
            continue
        conv = users[0]
        old = next((list(a.ints) for a in conv.attribute if a.name == "pads"), [0] * (2 * (rank - 2)))
        spatial = rank - 2
        merged = [int(begin[2 + i]) + old[i] for i in range(spatial)]
        merged += [int(end[2 + i]) + old[spatial + i] for i in range(spatial)]
        attrs = [a for a in conv.attribute if a.name not in ("pads", "auto_pad")]
        del conv.attribute[:]
        conv.attribute.extend(attrs + [helper.make_attribute("pads", merged)])
        conv.input[0] = pad.input[0]
        removed.append(pad)
    for pad in removed:
        graph.node.remove(pad)
    return remove_dead_nodes(out)


def op_types(model: onnx.ModelProto) -> list[str]:
    """Sorted distinct op types of the main graph."""
    return sorted({node.op_type for node in model.graph.node})


def _module_path(node_name: str) -> str:
    """torch module path from a legacy-exporter node name's scopes.

    Scopes hold attribute names, with Sequential children qualified by their parent's scope
    (``features`` then ``features.1``): such a scope replaces its parent instead of nesting.
    """
    scopes = [s for s in node_name.split("/") if s][:-1]  # the last part names the op
    path: list[str] = []
    for scope in scopes:
        if path and scope.startswith(path[-1] + "."):
            path[-1] = scope
        else:
            path.append(scope)
    return ".".join(path)


def rename_folded_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give exporter-generated weight names (``onnx::Conv_538``) the torch module's names.

    When BatchNormalization is folded into a Conv, torch's legacy exporter names the new
    weight and bias ``onnx::Conv_<n>``. Update schemes address tensors by name, so rename
    them after the consuming node's module (``/features/features.1/conv/conv.0/conv.0.0/Conv``
    -> ``features.1.conv.0.0.weight`` / ``.bias``, as in the torch state_dict before
    folding). Names already taken are left alone.
    Returns a new model.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    initializers = {init.name: init for init in graph.initializer}
    taken = set(initializers) | {v.name for v in graph.input} | {v.name for v in graph.output}
    taken |= {name for node in graph.node for name in node.output}
    renames: dict[str, str] = {}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or not node.name.startswith("/"):
            continue
        module = _module_path(node.name)
        if not module:
            continue
        for slot, suffix in ((1, "weight"), (2, "bias")):
            if slot >= len(node.input):
                continue
            old = node.input[slot]
            new = f"{module}.{suffix}"
            if old in initializers and old.startswith("onnx::") and old not in renames and new not in taken:
                renames[old] = new
                taken.add(new)
    for init in graph.initializer:
        init.name = renames.get(init.name, init.name)
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)
    for value in graph.input:
        value.name = renames.get(value.name, value.name)
    return out
