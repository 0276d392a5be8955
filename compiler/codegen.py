"""emit_c: lay the resolved model out as C through jinja2 templates (model.h, model.c)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from . import __version__
from .ir import DTYPE_BYTES, Graph
from .lower import c_ident, lower_calls

TEMPLATES = Path(__file__).parent / "templates"
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


@dataclass
class Emitted:
    files: dict[str, str]
    symbols: dict[str, str]


def _words(a: np.ndarray, per_line: int = 8) -> list[str]:
    u = np.ascontiguousarray(a, dtype=np.float32).reshape(-1).view(np.uint32)
    if u.size == 0:
        return ["0"]
    lines = []
    for i in range(0, u.size, per_line):
        lines.append(", ".join(f"0x{v:08x}" for v in u[i:i + per_line]) + ",")
    return lines


_INT_CTYPES = {"s8": ("int8_t", 16), "i32": ("int32_t", 8), "f16": ("uint16_t", 12),
               "u8": ("uint8_t", 16)}  # u8: 1-bit ReLU masks


# eg_buffer_t.kind and .dtype (compiler/templates/model.h.j2)
KIND_INPUT, KIND_OUTPUT, KIND_FROZEN, KIND_PARAM, KIND_STATE, KIND_TARGET = range(6)
DTYPE_CODES = {"f32": 0, "f16": 1, "s8": 2, "i32": 3, "u8": 4, "i64": 5}
ADAM_STATE = "adam.bias_correction"  # [beta1^t, beta2^t]: optimizer state a checkpoint must carry


def _buffer(name: str, ptr: str, nbytes: int, kind: int, dtype: str) -> dict:
    """One eg_buffers[] row: what the protocol (and a checkpoint) can reach, with its element type."""
    return {"name": name, "ptr": ptr, "bytes": nbytes, "kind": kind, "dtype": DTYPE_CODES[dtype]}


def _ints(a: np.ndarray, dtype: str) -> list[str]:
    per_line = _INT_CTYPES[dtype][1]
    if dtype == "f16":  # binary16 bits (a frozen fp16 weight, --dtype fp16)
        a = np.asarray(a, np.float16).view(np.uint16)
    v = np.asarray(a).reshape(-1).astype(np.int64)
    if v.size == 0:
        return ["0"]
    return [", ".join(str(int(x)) for x in v[i:i + per_line]) + "," for i in range(0, v.size, per_line)]


class CIdents:
    """Unique C identifiers for tensor names: prefix + the sanitised name (48 chars), numbered on a clash."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def __call__(self, prefix: str, name: str) -> str:
        base = prefix + c_ident(name)[:48]
        out, k = base, 1
        while out in self.taken:
            out, k = f"{base}_{k}", k + 1
        self.taken.add(out)
        return out


def emit_c(g: Graph, trainable: set[str], model_name: str, source: str, scheme_summary: str) -> Emitted:
    plan = g.meta["memory_plan"]
    # a conv on transformed frozen weights (passes/wino_frozen.py) reads attrs["wino_u"], not its weight input
    used = {i for n in g.nodes for k, i in enumerate(n.inputs) if i and not (k == 1 and n.attrs.get("wino_u"))}
    used |= {o for n in g.nodes for o in n.outputs if o} | {n.attrs["wino_u"] for n in g.nodes if n.attrs.get("wino_u")}
    symbols: dict[str, str] = {}
    ident = CIdents()

    params, states, int_params = [], [], []
    for name, t in g.tensors.items():
        if name in plan.tensor_offset:
            symbols[name] = f"A({plan.tensor_offset[name] // 4})"
            if t.dtype in _INT_CTYPES:  # int8 and fp16 (binary16 bits, runtime_c/eg_f16.h) activations
                symbols[name] = f"(({_INT_CTYPES[t.dtype][0]} *)A({plan.tensor_offset[name] // 4}))"  # share
                # the float arena (16-byte aligned offsets)
        elif t.role in ("param", "const") and (name in used or t.role == "param") and t.dtype == "f32":
            i = ident("w_" if t.role == "param" else "c_", name)
            symbols[name] = f"{i}.f"
            params.append({"name": name, "ident": i, "shape": list(t.shape), "size": max(1, t.size),
                           "trainable": name in trainable, "role": t.role,
                           "words": _words(t.data if t.data is not None else np.zeros(1, np.float32))})
        elif t.role in ("param", "const") and (name in used or t.role == "param") and t.dtype in _INT_CTYPES:
            # int8 weights, int32 biases and requantization constants (--dtype int8)
            i = ident("w_" if t.role == "param" else "c_", name)
            symbols[name] = i
            int_params.append({"name": name, "ident": i, "shape": list(t.shape), "size": max(1, t.size),
                               "trainable": name in trainable, "role": t.role, "ctype": _INT_CTYPES[t.dtype][0],
                               "bytes": max(1, t.size) * DTYPE_BYTES[t.dtype], "ints": _ints(t.data, t.dtype)})
        elif t.role == "state":
            i = ident("s_", name)
            symbols[name] = i
            states.append({"name": name, "ident": i, "size": t.size})
        elif t.role == "target":
            symbols[name] = "eg_target"
        elif t.role == "loss":
            symbols[name] = "loss"
    lowered = lower_calls(g, symbols)
    target = g.tensors.get("target")
    buffers = []
    for name in g.inputs:
        buffers.append(_buffer(name, symbols[name], g.tensors[name].nbytes, KIND_INPUT, g.tensors[name].dtype))
    for name in g.outputs:
        buffers.append(_buffer(name, symbols[name], g.tensors[name].nbytes, KIND_OUTPUT, g.tensors[name].dtype))
    for p in params:
        if p["role"] == "param":
            buffers.append(_buffer(p["name"], f"(void *){p['ident']}.f", 4 * p["size"],
                                   KIND_PARAM if p["trainable"] else KIND_FROZEN, "f32"))
    for p in int_params:
        if p["role"] == "param":
            buffers.append(_buffer(p["name"], f"(void *){p['ident']}", p["bytes"],
                                   KIND_PARAM if p["trainable"] else KIND_FROZEN, g.tensors[p["name"]].dtype))
    for s in states:
        buffers.append(_buffer(s["name"], s["ident"], 4 * s["size"], KIND_STATE, "f32"))
    adam = any(n.op == "AdamStep" for n in g.nodes)  # its bias corrections are state too
    if adam:
        buffers.append(_buffer(ADAM_STATE, "eg_adam_bt", 8, KIND_STATE, "f32"))
    if target is not None:
        buffers.append(_buffer("target", "eg_target", target.nbytes, KIND_TARGET, target.dtype))
    cfg = g.meta.get("config")
    ctx = {
        "model_name": model_name, "version": __version__, "source": source, "scheme_summary": scheme_summary,
        "optimizer": getattr(cfg, "optimizer", "-"), "loss": getattr(cfg, "loss", "-"),
        "plan_lines": plan.table(g).splitlines(), "arena_bytes": max(16, plan.arena_bytes), "params": params,
        "int_params": int_params, "states": states,
        "target_ctype": "int32_t" if target is None or target.dtype == "i32" else "float",
        "target_size": target.size if target is not None else 1, "adam": adam,
        "int_arrays": lowered.int_arrays, "buffers": buffers, "infer": lowered.infer, "train": lowered.train,
        "model_hash": "{model_hash}",
        "variant_headers": [h for k, h in (("rvv", "eg_kernels_rvv.h"), ("zvfh", "eg_f16_zvfh.h"), ("neon", "eg_neon.h"),
                                                 ("dw_neon", "eg_dw_neon.h"), ("tvm", "tvm_kernels.h"))
                         if any(n.attrs.get("kernel") == k for n in g.nodes)],
    }
    c_text = _env.get_template("model.c.j2").render(**ctx)
    h = zlib.crc32(c_text.encode()) & 0xFFFFFFFF
    c_text = c_text.replace("0x{model_hash}u", f"0x{h:08x}u")
    h_text = _env.get_template("model.h.j2").render(**ctx)
    return Emitted({"model.c": c_text, "model.h": h_text}, symbols)
