"""TVM kernel generator, run by compiler/tvm_backend.py in TVM's own venv (build/venv-tvm), never imported.

    build/venv-tvm/bin/python tools/peers/tvm_kernels.py JOB.json

JOB.json: {"target": {"kind": "llvm", "mtriple": ..., "mcpu": ...}, "out": DIR,
           "kernels": [{"symbol": S, "kind": "conv_fw" | "conv_bw_input" | "conv_bw_weight" | "gemm", ...sizes}]}

For each kernel: the computation for that exact shape as a TE expression (tvm.te), turned into a TIR PrimFunc,
one light schedule (the innermost output axis split by 4, unrolled inside the reduction), compiled with TVM's LLVM
backend for the board and written as DIR/S.o. The object exports one tvm-ffi packed function
``__tvm_ffi_S(self, TVMFFIAny *args, int nargs, TVMFFIAny *ret)`` taking DLTensors (runtime_c/tvm/eg_tvm.h
calls it). Every expression reads its inputs in place (padding as a condition inside the sum), so no intermediate
buffer and no TVMBackendAllocWorkspace call is generated. The bias / C term is not part of the TVM function
(create_prim_func drops a reduction's init in 0.27): the C wrapper adds it after the call.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def conv_fw(te, tir, k):
    N, C, H, W, M, OH, OW, KH, KW = (k[s] for s in ("N", "C", "H", "W", "M", "OH", "OW", "KH", "KW"))
    sh, sw, pt, pl, dh, dw, G = (k[s] for s in ("sh", "sw", "pt", "pl", "dh", "dw", "G"))
    Cg, Mg = C // G, M // G
    x = te.placeholder((N, C, H, W), "float32", name="x")
    w = te.placeholder((M, Cg, KH, KW), "float32", name="w")
    rc, rh, rw = te.reduce_axis((0, Cg), "rc"), te.reduce_axis((0, KH), "rh"), te.reduce_axis((0, KW), "rw")

    def body(n, m, i, j):
        h, v = i * sh - pt + rh * dh, j * sw - pl + rw * dw
        c = (m // Mg) * Cg + rc
        xv = tir.if_then_else(tir.all(h >= 0, h < H, v >= 0, v < W), x[n, c, h, v], tir.const(0.0, "float32"))
        return te.sum(xv * w[m, rc, rh, rw], axis=[rc, rh, rw])

    y = te.compute((N, M, OH, OW), body, name="y")
    return [y, x, w]


def conv_bw_input(te, tir, k):
    N, C, H, W, M, OH, OW, KH, KW = (k[s] for s in ("N", "C", "H", "W", "M", "OH", "OW", "KH", "KW"))
    sh, sw, pt, pl, dh, dw, G = (k[s] for s in ("sh", "sw", "pt", "pl", "dh", "dw", "G"))
    Cg, Mg = C // G, M // G
    dy = te.placeholder((N, M, OH, OW), "float32", name="dy")
    w = te.placeholder((M, Cg, KH, KW), "float32", name="w")
    rm, rh, rw = te.reduce_axis((0, Mg), "rm"), te.reduce_axis((0, KH), "rh"), te.reduce_axis((0, KW), "rw")

    def body(n, c, h, v):
        th, tw = h + pt - rh * dh, v + pl - rw * dw  # = oh * sh, ow * sw
        oh, ow = tir.floordiv(th, sh), tir.floordiv(tw, sw)
        ok = tir.all(th >= 0, tw >= 0, oh < OH, ow < OW)
        if sh > 1:
            ok = tir.all(ok, tir.floormod(th, sh) == 0)
        if sw > 1:
            ok = tir.all(ok, tir.floormod(tw, sw) == 0)
        m = (c // Cg) * Mg + rm
        dv = tir.if_then_else(ok, dy[n, m, oh, ow], tir.const(0.0, "float32"))
        return te.sum(dv * w[m, c % Cg, rh, rw], axis=[rm, rh, rw])

    dx = te.compute((N, C, H, W), body, name="dx")
    return [dx, dy, w]


def conv_bw_weight(te, tir, k):
    N, C, H, W, M, OH, OW, KH, KW = (k[s] for s in ("N", "C", "H", "W", "M", "OH", "OW", "KH", "KW"))
    sh, sw, pt, pl, dh, dw, G = (k[s] for s in ("sh", "sw", "pt", "pl", "dh", "dw", "G"))
    Cg, Mg = C // G, M // G
    dy = te.placeholder((N, M, OH, OW), "float32", name="dy")
    x = te.placeholder((N, C, H, W), "float32", name="x")
    rn, ri, rj = te.reduce_axis((0, N), "rn"), te.reduce_axis((0, OH), "ri"), te.reduce_axis((0, OW), "rj")

    def body(m, c, kh, kw):
        h, v = ri * sh - pt + kh * dh, rj * sw - pl + kw * dw
        xv = tir.if_then_else(tir.all(h >= 0, h < H, v >= 0, v < W), x[rn, (m // Mg) * Cg + c, h, v],
                              tir.const(0.0, "float32"))
        return te.sum(dy[rn, m, ri, rj] * xv, axis=[rn, ri, rj])

    dwt = te.compute((M, Cg, KH, KW), body, name="dw")
    return [dwt, dy, x]


def gemm(te, tir, k):
    M, N, K, ta, tb = k["M"], k["N"], k["K"], k["transA"], k["transB"]
    a = te.placeholder((K, M) if ta else (M, K), "float32", name="a")
    b = te.placeholder((N, K) if tb else (K, N), "float32", name="b")
    r = te.reduce_axis((0, K), "k")

    def body(i, j):
        av = a[r, i] if ta else a[i, r]
        bv = b[j, r] if tb else b[r, j]
        return te.sum(av * bv, axis=[r])

    y = te.compute((M, N), body, name="y")
    return [y, a, b]


KINDS = {"conv_fw": conv_fw, "conv_bw_input": conv_bw_input, "conv_bw_weight": conv_bw_weight, "gemm": gemm}


def schedule(tvm, func, inner: int):
    """Split the innermost output axis by 4 and vectorize it, where it divides (the rest: TVM's defaults)."""
    from tvm import s_tir
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    blk = sch.get_child_blocks(sch.get_sblock("root"))[0]
    loops = sch.get_loops(blk)
    n_red = _n_reduce(sch, blk)
    if inner % 4 == 0 and inner >= 8:
        spatial, red = loops[:-n_red], loops[-n_red:]
        outer, vec = sch.split(spatial[-1], [None, 4])
        sch.reorder(outer, *red, vec)
        init = sch.decompose_reduction(blk, red[0])
        sch.unroll(vec)  # vectorize() refuses a reduction block; LLVM SLP-vectorizes the unrolled 4
        sch.vectorize(sch.get_loops(init)[-1])
    return sch.mod["main"]


def _n_reduce(sch, blk) -> int:
    return sum(1 for iv in sch.get(blk).iter_vars if iv.iter_type == 2)


def main(job_path: str) -> None:
    import tvm
    import tvm.tirx as tir
    from tvm import te

    job = json.loads(Path(job_path).read_text())
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    target = tvm.target.Target(job["target"])
    for k in job["kernels"]:
        tensors = KINDS[k["kind"]](te, tir, k)
        func = te.create_prim_func(tensors[1:] + tensors[:1])  # inputs then the output, as the C wrapper passes
        if job.get("schedule", True):
            func = schedule(tvm, func, int(tensors[0].shape[-1]))
        func = func.with_attr("global_symbol", k["symbol"])
        lib = tvm.compile(tvm.IRModule({k["symbol"]: func}), target=target)
        obj = out / f"{k['symbol']}.o"
        tmp = out / f".{k['symbol']}.{os.getpid()}.o"  # then renamed: a cached object is always whole
        lib.mod.write_to_file(str(tmp))
        tmp.replace(obj)
    print(json.dumps({"tvm": tvm.__version__, "built": len(job["kernels"])}))


if __name__ == "__main__":
    main(sys.argv[1])
