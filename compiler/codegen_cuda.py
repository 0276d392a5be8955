"""emit_cuda: the training step as CUDA (model.cu, through templates/model.cu.j2) for the jetson
target's GPU: the same schedule, memory plan and kernel calls as model.c, each call a kernel
launch (runtime_c/cuda/eg_cuda.cuh), with the arena, every parameter and the optimizer state
resident in one device allocation.

The host side keeps mirrors of the buffers the protocol reads and writes (eg_buffers, as in
model.c): a step uploads the inputs, the target and the trainable parameters and state, and
downloads the trained parameters, the state, the outputs and the loss (on Jetson the GPU shares
the DRAM, so these are memory copies); frozen parameters are uploaded once, by eg_init.

The same file compiles with nvcc (-arch=sm_87 for Orin) and, without nvcc, as C++ for the host,
where each launch is a plain loop: tests/test_jetson_cuda.py trains that build against PyTorch.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import jinja2

from . import __version__
from .codegen import ADAM_STATE, KIND_FROZEN, KIND_PARAM, KIND_STATE, KIND_TARGET, TEMPLATES, CIdents, _buffer, _words
from .errors import UnsupportedModelError
from .ir import Graph
from .lower import lower_calls

CUDA_HEADER = Path(__file__).resolve().parent.parent / "runtime_c" / "cuda" / "eg_cuda.cuh"
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def cuda_kernels() -> set[str]:
    """Reference kernel names that have a `_cuda` launcher in eg_cuda.cuh."""
    text = CUDA_HEADER.read_text()
    names = set(re.findall(r"^static inline void (\w+)_cuda\(", text, re.MULTILINE))
    for b in re.findall(r"^EG_BINARY\((\w+),", text, re.MULTILINE):
        names |= {b, b + "_bcast"}
    names |= set(re.findall(r"^EG_(?:UNARY|GRAD)\((\w+),", text, re.MULTILINE))
    return names


def _align4(n: int) -> int:
    return (n + 3) & ~3


def emit_cuda(g: Graph, trainable: set[str], model_name: str, source: str, scheme_summary: str,
              arch: str = "sm_87") -> str:
    """model.cu for the planned training graph; UnsupportedModelError names the kernels that have
    no CUDA version yet."""
    plan = g.meta["memory_plan"]
    used = {i for n in g.nodes for i in n.inputs if i} | {o for n in g.nodes for o in n.outputs if o}
    symbols: dict[str, str] = {}
    ident = CIdents()

    # one device block: arena | parameters | optimizer state | target | loss (float offsets)
    offset = _align4(max(4, plan.arena_bytes // 4))
    params, states, io = [], [], []
    for name, t in g.tensors.items():
        if name in plan.tensor_offset:
            symbols[name] = f"D({plan.tensor_offset[name] // 4})"
        elif t.role in ("param", "const") and (name in used or t.role == "param") and t.dtype == "f32":
            size = max(1, t.size)
            symbols[name] = f"D({offset})"
            params.append({"name": name, "ident": ident("w_" if t.role == "param" else "c_", name),
                           "shape": list(t.shape), "size": size, "trainable": name in trainable, "role": t.role,
                           "dev": offset, "words": _words(t.data if t.data is not None else [0.0])})
            offset += _align4(size)
        elif t.role == "state":
            symbols[name] = f"D({offset})"
            states.append({"name": name, "ident": ident("s_", name), "size": t.size, "dev": offset})
            offset += _align4(t.size)
    target = g.tensors.get("target")
    target_size = target.size if target is not None else 1
    target_ctype = "int32_t" if target is None or target.dtype == "i32" else "float"
    target_dev, offset = offset, offset + _align4(target_size)
    loss_dev, offset = offset, offset + 4
    symbols["target"] = "eg_target_dev"
    symbols.update({n: "eg_loss_dev" for n, t in g.tensors.items() if t.role == "loss"})
    for name in [*g.inputs, *g.outputs]:
        if name not in plan.tensor_offset:
            raise UnsupportedModelError(f"CUDA step: graph input/output {name} is not in the arena")
        io.append({"name": name, "ident": ident("h_", name), "size": g.tensors[name].size,
                   "dev": plan.tensor_offset[name] // 4, "kind": 0 if name in g.inputs else 1})

    # (a variant choice is a string; pooling's "kernel" attribute is its window size)
    saved = {id(n): n.attrs.pop("kernel") for n in g.nodes if isinstance(n.attrs.get("kernel"), str)}
    try:  # the CUDA kernels take the reference arguments: lower as if no variant was chosen
        lowered = lower_calls(g, symbols)
    finally:
        for n in g.nodes:
            if id(n) in saved:
                n.attrs["kernel"] = saved[id(n)]
    have, missing = cuda_kernels(), set()

    def launch(text: str) -> str:
        m = re.match(r"(\w+)\(", text)
        if m is None or m.group(1).startswith("eg_"):  # host bookkeeping (Adam's bias corrections)
            return text
        if m.group(1) not in have:
            missing.add(m.group(1))
        # the label is an argument by value: read it from the host mirror, not device memory
        return m.group(1) + "_cuda" + text[len(m.group(1)):].replace("eg_target_dev[0]", "eg_label")

    train = [{"text": launch(c.text), "comment": c.comment} for c in lowered.train]
    infer = [{"text": launch(c.text), "comment": c.comment} for c in lowered.infer]
    if missing:
        raise UnsupportedModelError(f"no CUDA kernel yet for: {', '.join(sorted(missing))}")

    buffers = [_buffer(b["name"], b["ident"], 4 * b["size"], b["kind"], "f32") for b in io]
    buffers += [_buffer(p["name"], f"(void *){p['ident']}.f", 4 * p["size"], KIND_PARAM if p["trainable"] else KIND_FROZEN,
                        "f32") for p in params if p["role"] == "param"]
    buffers += [_buffer(s["name"], s["ident"], 4 * s["size"], KIND_STATE, "f32") for s in states]
    adam = any(n.op == "AdamStep" for n in g.nodes)  # its bias corrections are state too
    if adam:
        buffers.append(_buffer(ADAM_STATE, "eg_adam_bt", 8, KIND_STATE, "f32"))
    if target is not None:
        buffers.append(_buffer("target", "eg_target", target.nbytes, KIND_TARGET, target.dtype))

    def copy(dev: int, host: str, nbytes: int) -> dict:
        return {"dev": dev, "host": host, "bytes": nbytes}

    inputs = [copy(b["dev"], b["ident"], 4 * b["size"]) for b in io if b["kind"] == 0]
    outputs = [copy(b["dev"], b["ident"], 4 * b["size"]) for b in io if b["kind"] == 1]
    trained = [copy(p["dev"], f"{p['ident']}.f", 4 * p["size"]) for p in params if p["trainable"]]
    state = [copy(s["dev"], s["ident"], 4 * s["size"]) for s in states]
    cfg = g.meta.get("config")
    ctx = {
        "model_name": model_name, "version": __version__, "source": source, "scheme_summary": scheme_summary,
        "optimizer": getattr(cfg, "optimizer", "-"), "loss": getattr(cfg, "loss", "-"), "arch": arch,
        "plan_lines": plan.table(g).splitlines(), "device_floats": offset, "params": params, "states": states,
        "io": io, "target_ctype": target_ctype, "target_size": target_size, "target_dev": target_dev,
        "loss_dev": loss_dev, "int_label": target is not None and target.dtype == "i32",
        "adam": adam, "int_arrays": lowered.int_arrays, "buffers": buffers,
        "infer": infer, "train": train, "init_up": [copy(p["dev"], f"{p['ident']}.f", 4 * p["size"]) for p in params],
        "step_up": inputs + [copy(target_dev, "eg_target", 4 * target_size)] + trained + state,
        "step_down": trained + state + outputs, "infer_up": inputs + trained, "infer_down": outputs,
        "model_hash": "{model_hash}",
    }
    text = _env.get_template("model.cu.j2").render(**ctx)
    h = zlib.crc32(text.encode()) & 0xFFFFFFFF
    return text.replace("0x{model_hash}u", f"0x{h:08x}u")
