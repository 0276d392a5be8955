"""ONNX Runtime on-device training peer (runs in build/venv-ort, see tools/setup_bench.sh).

    python tools/peers/ort_train.py prepare SPEC.json     # generate the training artifacts, exit
    python tools/peers/ort_train.py SPEC.json             # serve the worker protocol (worker.py)

The artifacts are made in their own process so that the serving process's peak memory is what a
device running onnxruntime.training.api would pay (no onnx/onnxblock graph building in it).

Same model, same trained tensors (requires_grad = the scheme's tensors, everything else frozen),
CrossEntropyLoss (mean over the batch of 1, on the model's logits), SGD with the same lr, one
intra-op and one inter-op thread, sequential execution. A sub-tensor update (a fraction of a
tensor's rows) has no ONNX Runtime equivalent: ORT trains the whole tensor (more work than the
scheme asks for) and the gradient check compares only the rows the scheme trains.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worker import serve


def make_artifacts(spec: dict) -> None:
    import onnx
    from onnxruntime.training import artifacts

    model = onnx.load(spec["model"])
    params = [i.name for i in model.graph.initializer]
    trained = list(spec["trained"])
    frozen = [p for p in params if p not in spec["trained"]]
    artifacts.generate_artifacts(model, requires_grad=trained, frozen_params=frozen,
                                 loss=artifacts.LossType.CrossEntropyLoss, optimizer=artifacts.OptimType.SGD,
                                 artifact_directory=spec["work"])


class OrtPeer:
    def setup(self, spec: dict) -> dict:
        import onnxruntime
        from onnxruntime.training.api import CheckpointState, Module, Optimizer

        work = Path(spec["work"])
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self.state = CheckpointState.load_checkpoint(str(work / "checkpoint"))
        self.module = Module(str(work / "training_model.onnx"), self.state, str(work / "eval_model.onnx"),
                             device="cpu", session_options=opts)
        self.optimizer = Optimizer(str(work / "optimizer_model.onnx"), self.module)
        self.optimizer.set_learning_rate(spec["lr"])
        self.module.train()
        self.names = list(spec["trained"])
        self.initial = {n: self.state.parameters[n].data.copy() for n in self.names}
        self.x = np.load(spec["input"]).astype(np.float32)
        self.y = np.full((self.x.shape[0],), spec["label"], np.int64)
        notes = [f"{n}: ORT trains all {s['total']} rows, the scheme {s['rows']}"
                 for n, s in spec["trained"].items() if s["rows"] < s["total"]]
        return {"version": f"onnxruntime-training {onnxruntime.__version__}", "notes": notes,
                "inputs": self.module.input_names()}

    def reset(self) -> None:
        for n, v in self.initial.items():
            self.state.parameters[n] = v
        self.module.lazy_reset_grad()

    def step(self) -> float:
        loss = self.module(self.x, self.y)
        self.optimizer.step()
        self.module.lazy_reset_grad()
        return float(loss)

    def trained(self) -> dict:
        return {n: self.state.parameters[n].data.copy() for n in self.names}


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if sys.argv[1] == "prepare":
        import json

        make_artifacts(json.loads(Path(sys.argv[2]).read_text()))
        sys.exit(0)
    sys.exit(serve(OrtPeer()))
