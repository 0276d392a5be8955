"""PyTorch eager peer (runs in edgegrad's own venv: python tools/peers/torch_train.py SPEC.json).

The zoo's torch module (SPEC "torch_module": the models.* module whose build(seed) makes it) in
eval mode with every BatchNorm folded into the conv before it (torch.fx fuse, as the ONNX exporter
did), so it computes what the ONNX computes; its Conv/Linear weights are loaded, in execution
order, from SPEC "layers" ([onnx node, weight, bias] in ONNX order) and SPEC "weights" (.npz of
those tensors). requires_grad only on the scheme's tensors; 1 intra-op and 1 inter-op thread;
F.cross_entropy; torch.optim.SGD with the same lr; zero_grad(set_to_none=True). A sub-tensor
(fraction) update has no torch equivalent: the whole gradient is computed and the frozen rows are
zeroed before the optimizer step. (dscnn's torch module pads with a ZeroPad2d that the ONNX
export folded into the Conv.) The serving protocol is worker.py's.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worker import serve

ROOT = Path(__file__).resolve().parents[2]


def torch_layers(gm) -> list:
    """A traced (fx) module's Conv/Linear layers in execution order (= the ONNX Conv/Gemm order)."""
    from torch import nn

    return [gm.get_submodule(n.target) for n in gm.graph.nodes
            if n.op == "call_module" and isinstance(gm.get_submodule(n.target), (nn.Conv2d, nn.Conv1d, nn.Linear))]


class TorchPeer:
    def setup(self, spec: dict) -> dict:
        import torch
        from torch.fx.experimental.optimization import fuse

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        module = importlib.import_module(spec["torch_module"]).build(0).eval()
        gm = fuse(module)  # folds every eval-mode BatchNorm into the conv before it
        tlayers, olayers = torch_layers(gm), spec["layers"]
        if len(tlayers) != len(olayers):
            raise RuntimeError(f"{len(tlayers)} torch Conv/Linear layers but {len(olayers)} ONNX layers")
        weights = np.load(spec["weights"])
        by_tensor = {}
        with torch.no_grad():
            for (node, w, b), layer in zip(olayers, tlayers):
                for tname, p in ((w, layer.weight), (b, layer.bias)):
                    if tname is None:
                        continue
                    value = weights[tname]
                    if p is None or tuple(p.shape) != value.shape:
                        raise RuntimeError(f"ONNX {node} {tname} {value.shape} does not match torch {layer} "
                                           f"({None if p is None else tuple(p.shape)})")
                    p.copy_(torch.from_numpy(np.ascontiguousarray(value, np.float32)))
                    by_tensor[tname] = p
        for p in gm.parameters():
            p.requires_grad_(False)
        self.masks, trained = [], []
        for tname, u in spec["trained"].items():
            if tname not in by_tensor:
                raise RuntimeError(f"scheme trains {tname!r}, which is no Conv/Gemm weight or bias")
            p = by_tensor[tname]
            p.requires_grad_(True)
            trained.append(p)
            if u["rows"] < p.shape[u["axis"]]:
                self.masks.append((p, u["axis"], u["rows"]))
        self.model = gm
        self.params = {n: by_tensor[n] for n in spec["trained"]}
        self.optimizer = torch.optim.SGD(trained, lr=spec["lr"])
        self.initial = {p: p.detach().clone() for p in trained}
        x = np.load(spec["input"]).astype(np.float32)
        self.x = torch.from_numpy(x)
        self.y = torch.full((x.shape[0],), spec["label"], dtype=torch.long)
        self.F = torch.nn.functional
        self.no_grad = torch.no_grad
        return {"version": f"torch {torch.__version__}", "notes": []}

    def reset(self) -> None:
        with self.no_grad():
            for p, v in self.initial.items():
                p.copy_(v)

    def step(self) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        for p, axis, k in self.masks:
            p.grad.narrow(axis, k, p.shape[axis] - k).zero_()
        self.optimizer.step()
        return loss.item()

    def trained(self) -> dict:
        return {n: p.detach().numpy().copy() for n, p in self.params.items()}


if __name__ == "__main__":
    sys.exit(serve(TorchPeer()))
