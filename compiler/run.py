"""edgegrad run: train a compiled build on samples where it lives and export the trained ONNX.

One optimizer step per sample, in order (batch 1). The same code path drives every target:
the host binary over pipes, the mcu firmware in QEMU over the serial link.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .errors import EdgegradError
from .export import export_trained

KIND_INPUT, KIND_OUTPUT, KIND_FROZEN, KIND_PARAM, KIND_STATE, KIND_TARGET = range(6)


def load_build(build: str | Path) -> dict:
    build = Path(build)
    f = build / "build.json"
    if not f.exists():
        raise EdgegradError(f"{build}: not an edgegrad build folder (no build.json); run edgegrad compile first")
    info = json.loads(f.read_text())
    if not info.get("binary"):
        raise EdgegradError(f"{build}: compiled with --no-build; nothing to run")
    return info


def load_samples(info: dict, inputs: str | Path, labels: str | Path) -> tuple[np.ndarray, np.ndarray]:
    if len(info["inputs"]) != 1:
        raise EdgegradError("edgegrad run feeds models with exactly one input")
    shape = tuple(info["inputs"][0]["shape"])
    try:
        x = np.load(inputs, allow_pickle=False)
        y = np.load(labels, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise EdgegradError(f"cannot read samples: {e}")
    per = int(np.prod(shape))
    if x.size % per or x.shape[0] * per != x.size:
        raise EdgegradError(f"{inputs}: shape {list(x.shape)} does not hold samples of shape {list(shape)}")
    x = x.astype(np.float32).reshape((x.shape[0],) + shape)
    if y.shape[0] != x.shape[0]:
        raise EdgegradError(f"{labels}: {y.shape[0]} labels for {x.shape[0]} samples")
    if info["target_dtype"] == "i32":
        if not np.issubdtype(y.dtype, np.integer):
            if np.all(np.mod(y, 1) == 0):
                y = y.astype(np.int64)
            else:
                raise EdgegradError(f"{labels}: cross-entropy labels must be integer class indices, got {y.dtype}")
        n_classes = int(np.prod(info["outputs"][0]["shape"]))
        bad = y[(y < 0) | (y >= n_classes)].reshape(-1)
        if bad.size:
            raise EdgegradError(f"{labels}: label {int(bad[0])} is out of range [0, {n_classes}) for output "
                                f"{info['outputs'][0]['name']} with {n_classes} classes")
        y = y.reshape(-1).astype(np.int32)
    else:
        tshape = tuple(info["target_shape"])
        y = y.astype(np.float32).reshape((y.shape[0],) + tshape)
    return x, y


def open_build(build: str | Path):
    """A connected Device for the build's target (host process, or QEMU for mcu)."""
    from .tools.runner import open_device
    build = Path(build)
    info = load_build(build)
    return open_device(build / info["binary"], info["config"]["target"])


class Session:
    """Buffer bookkeeping over a Device: names -> indices, typed reads and writes."""

    def __init__(self, dev, info: dict):
        self.dev, self.info = dev, info
        self.bufs = {b["name"]: b for b in dev.buffers()}

    def index(self, name: str) -> int:
        return self.bufs[name]["index"]

    def write(self, name: str, arr: np.ndarray) -> None:
        self.dev.write_buffer(self.index(name), np.ascontiguousarray(arr).tobytes())

    def read(self, name: str, shape, dtype: str = "f32") -> np.ndarray:
        np_dtype = {"f32": np.float32, "s8": np.int8, "i32": np.int32}[dtype]
        return np.frombuffer(self.dev.read_buffer(self.index(name)), np_dtype).reshape(shape).copy()

    def _input(self, x: np.ndarray) -> None:
        inp = self.info["inputs"][0]
        if inp.get("dtype") == "s8":  # an int8 build: the host quantizes (QuantizeLinear: round half to even)
            from .ops_int8 import quantize_f32
            self.write(inp["name"], quantize_f32(x, inp["scale"], inp["zp"]))
        else:
            self.write(inp["name"], x.astype(np.float32))

    def train(self, x: np.ndarray, y, timeout: float | None = None) -> float:
        """One step on (x, y); `timeout` is the reply timeout of this TRAIN (see Device.train_step)."""
        self._input(x)
        self.write("target", np.asarray(y, np.int32 if self.info["target_dtype"] == "i32" else np.float32))
        return self.dev.train_step(timeout)

    def infer(self, x: np.ndarray) -> np.ndarray:
        self._input(x)
        self.dev.infer()
        o = self.info["outputs"][0]
        return self.read(o["name"], o["shape"])

    def trained(self) -> dict[str, np.ndarray]:
        return {p: self.read(p, v["shape"], v.get("dtype", "f32")) for p, v in self.info["trainable"].items()}


def run_training(build: str | Path, inputs, labels, epochs: int = 1, export: str | Path | None = None,
                 quiet: bool = False) -> tuple[list[float], dict[str, np.ndarray]]:
    info = load_build(build)
    x, y = load_samples(info, inputs, labels)
    if epochs < 1:
        raise EdgegradError("--epochs must be at least 1")
    losses: list[float] = []
    from tqdm import tqdm
    with open_build(build) as dev:
        s = Session(dev, info)
        total = epochs * len(x)
        bar = tqdm(total=total, desc="training", unit="step", disable=quiet or not sys.stderr.isatty(),
                   file=sys.stderr)
        for e in range(epochs):
            for i in range(len(x)):
                loss = s.train(x[i], y[i])
                losses.append(loss)
                if not np.isfinite(loss):
                    raise EdgegradError(f"loss became {loss} at epoch {e + 1} step {i + 1}: lower --lr")
                if not quiet:
                    tqdm.write(f"epoch {e + 1} step {i + 1} loss {loss:.6f}", file=sys.stdout)
                bar.update(1)
        bar.close()
        params = s.trained()
    print(f"trained {len(losses)} steps: first loss {losses[0]:.6f}, last loss {losses[-1]:.6f}")
    if export:
        export_trained(Path(build) / "model.onnx", export, params)
        print(f"wrote {export}")
    return losses, params
