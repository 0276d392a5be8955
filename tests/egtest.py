"""Shared helpers for the end-to-end tests: export a torch module, compile it with edgegrad,
train it through the generated C, and train the same module with torch for comparison."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from edgegrad.pipeline import CompileConfig, compile_model
from edgegrad.run import Session, load_build

FP32_RTOL, FP32_ATOL = 1e-4, 1e-5  # fp32 tolerance for trained tensors after a few steps


def cli(*args, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`edgegrad ARGS...` in a fresh interpreter, as a user runs it; never raises on a non-zero exit."""
    return subprocess.run([sys.executable, "-m", "edgegrad.cli", *map(str, args)], check=False,
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


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
