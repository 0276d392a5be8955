"""TVM Relax training peer (runs in build/venv-tvm: tools/setup_bench.sh tvm).

    python tools/peers/tvm_train.py prepare SPEC.json   # import, differentiate, compile -> train_step.so
    python tools/peers/tvm_train.py SPEC.json           # serve the worker protocol (worker.py)

relax.frontend.onnx.from_onnx (parameters kept as function inputs), the ReLU6 Clip nodes rewritten
with Relu first (Relax has no gradient for Clip, Max or Min), relax.training.AppendLoss with CrossEntropyLoss
(mean; log_softmax + nll on the logits), relax.transform.Gradient with require_grads = the scheme's
tensors, and one train_step function that applies SGD (p - lr * g) to them and returns the loss
and the new tensors. Compiled with relax.build for llvm on this CPU (mcpu from LLVM's host CPU) with
the default pipeline: no MetaSchedule tuning (that takes hours per model), so these are TVM's
untuned default schedules. TVM_NUM_THREADS=1. A sub-tensor update is not expressible: TVM trains the
whole tensor and the gradient check compares only the rows the scheme trains.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worker import serve


def clip_as_relu(model) -> int:
    """Clip(x, lo, hi) -> y = lo + Relu(x - lo); y - Relu(y - hi), in place.

    Relax's Gradient has no rule for Clip, nor for Max/Min (relax.min: FPrimalGradient not registered
    in 0.27); Relu, Add and Sub have one. Same values and the same (sub)gradient almost everywhere."""
    from onnx import helper

    nodes, count = [], 0
    for n in model.graph.node:
        if n.op_type == "Clip" and len(n.input) == 3 and n.input[1] and n.input[2]:
            x, lo, hi = n.input
            t = [f"{n.output[0]}__{k}" for k in ("a", "b", "c", "d", "e")]
            nodes += [helper.make_node("Sub", [x, lo], [t[0]], name=n.name + "_sub_lo"),
                      helper.make_node("Relu", [t[0]], [t[1]], name=n.name + "_relu_lo"),
                      helper.make_node("Add", [t[1], lo], [t[2]], name=n.name + "_add_lo"),
                      helper.make_node("Sub", [t[2], hi], [t[3]], name=n.name + "_sub_hi"),
                      helper.make_node("Relu", [t[3]], [t[4]], name=n.name + "_relu_hi"),
                      helper.make_node("Sub", [t[2], t[4]], list(n.output), name=n.name + "_clip")]
            count += 1
        else:
            nodes.append(n)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return count


def with_loss(model) -> tuple:
    """The ONNX model in Relax, its parameters kept as function inputs after the one model input
    (ReLU6 Clips rewritten by clip_as_relu), plus `main_loss`: mean cross-entropy on output 0 against an
    int64 label. Returns (module, initializer names, the original `main`, the label's type)."""
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx
    from tvm.relax.training import AppendLoss
    from tvm.relax.training.loss import CrossEntropyLoss

    clip_as_relu(model)
    inits = [i.name for i in model.graph.initializer]
    mod = from_onnx(model, keep_params_in_input=True)
    mod, _ = relax.frontend.detach_params(mod)
    main = mod["main"]
    n_in = len(main.params) - len(inits)
    if n_in != 1:
        raise RuntimeError(f"expected one model input, got {n_in}")
    label = relax.TensorType((int(main.params[0].ty.shape[0]),), "int64")
    mod = AppendLoss("main", CrossEntropyLoss(reduction="mean")(main.ret_ty, label), 1, "main_loss")(mod)
    return mod, inits, main, label


def prepare(spec: dict) -> None:
    import onnx
    import tvm
    from tvm import relax
    from tvm.target import codegen

    mod, inits, main, label = with_loss(onnx.load(spec["model"]))
    n_in = 1
    names = [p.name for p in main.params[n_in:]]
    loss_fn = mod["main_loss"]
    by_name = dict(zip(names, loss_fn.params[n_in:n_in + len(inits)]))
    trained = [inits.index(t) for t in spec["trained"]]  # positions: from_onnx may sanitize names
    require = [loss_fn.params[n_in + i] for i in trained]
    mod = relax.transform.Gradient("main_loss", require_grads=require)(mod)
    adjoint = mod.get_global_var("main_loss_adjoint")

    bb = relax.BlockBuilder(mod)
    x = relax.Var("x", main.params[0].ty)
    y = relax.Var("y", label)
    ps = [relax.Var(p.name, p.ty) for p in by_name.values()]
    lr = relax.const(spec["lr"], "float32")
    with bb.function("train_step", [x, y, *ps]):
        with bb.dataflow():
            out = bb.emit(relax.Call(adjoint, [x, *ps, y]))
            loss = bb.emit(relax.TupleGetItem(out, 0))
            grads = bb.emit(relax.TupleGetItem(out, 1))
            new = [bb.emit(relax.op.subtract(ps[i], relax.op.multiply(lr, relax.TupleGetItem(grads, k))))
                   for k, i in enumerate(trained)]
            result = bb.emit_output(relax.Tuple([loss, *new]))
        bb.emit_func_output(result)
    target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": codegen.llvm_get_system_cpu()})
    ex = relax.build(bb.get(), target=target)
    work = Path(spec["work"])
    ex.export_library(str(work / "train_step.so"))
    (work / "layout.json").write_text(json.dumps({"params": inits, "trained": trained, "target": str(target)}))


class TvmPeer:
    def setup(self, spec: dict) -> dict:
        import tvm
        from tvm import relax

        work = Path(spec["work"])
        layout = json.loads((work / "layout.json").read_text())
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(work / "train_step.so")), tvm.cpu())
        self.fn = self.vm["train_step"]
        weights = np.load(spec["weights"])
        self.names = layout["params"]
        self.trained_pos = layout["trained"]
        self.initial = [tvm.runtime.tensor(np.ascontiguousarray(weights[n], np.float32)) for n in self.names]
        x = np.load(spec["input"]).astype(np.float32)
        self.x = tvm.runtime.tensor(x)
        self.y = tvm.runtime.tensor(np.full((x.shape[0],), spec["label"], np.int64))
        self.params = list(self.initial)
        notes = [f"{n}: TVM trains all {s['total']} rows, the scheme {s['rows']}"
                 for n, s in spec["trained"].items() if s["rows"] < s["total"]]
        return {"version": f"apache-tvm {tvm.__version__} (untuned, {layout['target']})", "notes": notes}

    def reset(self) -> None:
        self.params = list(self.initial)  # train_step is pure: it never writes its inputs

    def step(self) -> float:
        out = self.fn(self.x, self.y, *self.params)
        for k, i in enumerate(self.trained_pos):
            self.params[i] = out[k + 1]
        return float(out[0].numpy())

    def trained(self) -> dict:
        return {self.names[i]: self.params[i].numpy() for i in self.trained_pos}


if __name__ == "__main__":
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    if sys.argv[1] == "prepare":
        prepare(json.loads(Path(sys.argv[2]).read_text()))
        sys.exit(0)
    sys.exit(serve(TvmPeer()))
