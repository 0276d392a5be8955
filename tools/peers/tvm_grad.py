"""TVM Relax gradients of ONNX models: the second gradient oracle of tests/test_tvm_oracle.py
(runs in build/venv-tvm: tools/setup_bench.sh tvm).

    python tools/peers/tvm_grad.py JOB.json

JOB.json: {"cases": [{"model": M.onnx, "input": x.npy, "label": int, "trained": [initializer names],
                      "out": grads.npz}]}

Per case: relax.frontend.onnx.from_onnx with the parameters kept as function inputs (ReLU6 Clips rewritten with
Relu as in tvm_train.py: Relax has no gradient for Clip), relax.training.AppendLoss (CrossEntropyLoss, mean, on
output 0 with an int64 label: the loss every edgegrad step the oracle checks uses), relax.transform.Gradient for the listed
initializers, built for llvm on this CPU and run once: out.npz holds `loss` and one array per trained name.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tvm_train import with_loss


def gradients(case: dict) -> None:
    import onnx
    import tvm
    from tvm import relax

    model = onnx.load(case["model"])
    mod, inits, _, _ = with_loss(model)
    values = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    n_in = 1
    loss_fn = mod["main_loss"]
    pos = [inits.index(t) for t in case["trained"]]  # by position: from_onnx may sanitize names
    mod = relax.transform.Gradient("main_loss", require_grads=[loss_fn.params[n_in + i] for i in pos])(mod)
    ex = relax.build(mod, target=tvm.target.Target({"kind": "llvm"}))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    x = np.load(case["input"]).astype(np.float32)
    args = [tvm.runtime.tensor(x)] + [tvm.runtime.tensor(np.ascontiguousarray(values[n], np.float32)) for n in inits]
    loss, grads = vm["main_loss_adjoint"](*args, tvm.runtime.tensor(np.full((x.shape[0],), case["label"], np.int64)))
    out = {"loss": loss.numpy()}
    out.update({name: grads[k].numpy() for k, name in enumerate(case["trained"])})
    np.savez(case["out"], **out)


if __name__ == "__main__":
    for c in json.loads(Path(sys.argv[1]).read_text())["cases"]:
        gradients(c)
