"""MLP for 6-channel HAR sensor windows: [1, 6, T] -> Flatten -> 48 -> 32 -> 6 (ReLU between).

Pretraining (``pretrain``) uses the HAPT subjects in PRETRAIN_SUBJECTS and holds out
HOLDOUT_SUBJECTS for on-device personalisation demos.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

if __package__ in (None, ""):  # run as `python models/X.py`: make the `models` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.common import export_onnx, fit, seeded

WINDOW = 128
CHANNELS = 6
NUM_CLASSES = 6
INPUT_SHAPE = (1, CHANNELS, WINDOW)
PRETRAIN_SUBJECTS = tuple(range(1, 25))
HOLDOUT_SUBJECTS = tuple(range(25, 31))


def build(seed: int = 0, window: int = WINDOW, hidden: tuple[int, int] = (48, 32),
          num_classes: int = NUM_CLASSES) -> nn.Module:
    """Default: 768*48 + 48*32 + 32*6 weights + biases = 38,694 parameters."""
    seeded(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(CHANNELS * window, hidden[0]),
        nn.ReLU(),
        nn.Linear(hidden[0], hidden[1]),
        nn.ReLU(),
        nn.Linear(hidden[1], num_classes),
    )


def export(path: str | Path, module: nn.Module | None = None, seed: int = 0) -> Path:
    return export_onnx(module if module is not None else build(seed), path, INPUT_SHAPE)


def pretrain(seed: int = 0, epochs: int = 30, lr: float = 1e-3, batch: int = 64) -> tuple[nn.Module, dict]:
    """Adam on PRETRAIN_SUBJECTS; returns the module and accuracies (pretrain / held-out subjects)."""
    from models.datasets import har

    x, y, subject = har(window=WINDOW)
    train = np.isin(subject, PRETRAIN_SUBJECTS)
    model = build(seed)
    fit(model, torch.from_numpy(x[train]), torch.from_numpy(y[train]), epochs=epochs, batch=batch, lr=lr, seed=seed)
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    stats = {
        "train_subjects_acc": float((pred[train] == y[train]).mean()),
        "holdout_subjects_acc": float((pred[~train] == y[~train]).mean()),
        "train_windows": int(train.sum()),
        "holdout_windows": int((~train).sum()),
    }
    return model, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="e.g. models/onnx/mlp_har.onnx")
    parser.add_argument("--pretrain", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    module = None
    if args.pretrain:
        module, stats = pretrain(args.seed)
        print(stats)
    export(args.out, module, args.seed)


if __name__ == "__main__":
    main()
