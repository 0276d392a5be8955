"""Shared helpers for the end-to-end tests: export a torch module, compile it with edgegrad,
train it through the generated C, and train the same module with torch for comparison."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from edgegrad.pipeline import CompileConfig, compile_model
from edgegrad.run import Session, load_build

FP32_RTOL, FP32_ATOL = 1e-4, 1e-5  # fp32 tolerance for trained tensors after a few steps


def export(module, x, path: Path, opset: int = 17, **kw) -> Path:
    import torch
    module.eval()
    torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
                      output_names=["logits"], do_constant_folding=True, **kw)
    return path


def compile_host(model: Path, out: Path, **cfg) -> Path:
    cfg.setdefault("quiet", True)
    compile_model(model, out, CompileConfig(target=cfg.pop("target", "host"), **cfg))
    return out


def train_build(build: Path, xs, ys, *, wrap=None) -> tuple[list[float], dict[str, np.ndarray], list[np.ndarray]]:
    """Run one step per sample; return losses, trained params and the outputs of a final infer."""
    from edgegrad.tools.runner import open_device
    info = load_build(build)
    with open_device(build / info["binary"], info["config"]["target"], wrap=wrap) as dev:
        s = Session(dev, info)
        losses = [s.train(x, y) for x, y in zip(xs, ys)]
        out = s.infer(xs[0])
        return losses, s.trained(), [out]


def torch_train(module, xs, ys, params: list[str], *, lr: float, optimizer: str = "sgd", loss: str = "ce",
                momentum: float = 0.9, slices: dict | None = None):
    """Train a deep copy of ``module`` with torch, batch 1, one step per sample. Only ``params``
    (state_dict names) are updated; ``slices`` {name: (axis, k)} masks the gradient to the
    leading k entries of axis (what a partial update means)."""
    import torch
    m = copy.deepcopy(module).eval()
    named = dict(m.named_parameters())
    for n, p in named.items():
        p.requires_grad_(n in params)
    trained = [named[n] for n in params]
    opt = {"sgd": lambda: torch.optim.SGD(trained, lr=lr),
           "momentum": lambda: torch.optim.SGD(trained, lr=lr, momentum=momentum),
           "adam": lambda: torch.optim.Adam(trained, lr=lr)}[optimizer]()
    losses = []
    for x, y in zip(xs, ys):
        opt.zero_grad()
        out = m(torch.tensor(x))
        if loss == "ce":
            lt = torch.nn.functional.cross_entropy(out.reshape(1, -1), torch.tensor([int(y)]))
        else:
            lt = torch.nn.functional.mse_loss(out, torch.tensor(y).reshape(out.shape))
        lt.backward()
        for n, (axis, k) in (slices or {}).items():
            g = named[n].grad
            mask = torch.zeros_like(g)
            idx = [slice(None)] * g.dim()
            idx[axis] = slice(0, k)
            mask[tuple(idx)] = 1
            g.mul_(mask)
        opt.step()
        losses.append(float(lt))
    return losses, {n: p.detach().numpy().copy() for n, p in m.named_parameters()}
