"""Small CNN for 28x28x1 Fashion-MNIST: 2 x (conv3x3 + ReLU + maxpool2), linear head, 10 classes.

Pretraining (``pretrain``) sees classes 0-7 only (PRETRAIN_CLASSES) but keeps the 10-way head,
so classes 8 (Bag) and 9 (Ankle boot) are left for class-incremental demos.
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

from models.common import export_onnx, export_onnx_dynamo, fit, seeded

INPUT_SHAPE = (1, 1, 28, 28)
NUM_CLASSES = 10
PRETRAIN_CLASSES = tuple(range(8))


def build(seed: int = 0, channels: tuple[int, int] = (8, 16), num_classes: int = NUM_CLASSES) -> nn.Module:
    """Default: conv 1->8, conv 8->16, linear 784->10: 9,098 parameters."""
    seeded(seed)
    c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 7 * 7, num_classes),
    )


def export(path: str | Path, module: nn.Module | None = None, seed: int = 0, dynamo: bool = False) -> Path:
    module = module if module is not None else build(seed)
    if dynamo:
        return export_onnx_dynamo(module, path, INPUT_SHAPE)
    return export_onnx(module, path, INPUT_SHAPE)


def pretrain(seed: int = 0, epochs: int = 3, lr: float = 2e-3, batch: int = 128,
             train_limit: int | None = None) -> tuple[nn.Module, dict]:
    """Adam on Fashion-MNIST train images of classes 0-7 (48000; or the first ``train_limit``).

    Returns the module and test accuracies: on classes 0-7, and on all 10 classes (8 and 9
    are never predicted correctly before class-incremental training).
    """
    from models.datasets import fashion_mnist

    x, y = fashion_mnist("train")
    keep = np.isin(y, PRETRAIN_CLASSES)
    x, y = x[keep], y[keep]
    if train_limit is not None:
        x, y = x[:train_limit], y[:train_limit]
    model = build(seed)
    fit(model, torch.from_numpy(x), torch.from_numpy(y), epochs=epochs, batch=batch, lr=lr, seed=seed)
    xs, ys = fashion_mnist("test")
    with torch.no_grad():
        pred = model(torch.from_numpy(xs)).argmax(1).numpy()
    seen = np.isin(ys, PRETRAIN_CLASSES)
    stats = {
        "test_acc_classes_0_7": float((pred[seen] == ys[seen]).mean()),
        "test_acc_all_10": float((pred == ys).mean()),
        "train_images": len(x),
    }
    return model, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="e.g. models/onnx/cnn_fashion.onnx")
    parser.add_argument("--pretrain", action="store_true")
    parser.add_argument("--dynamo", action="store_true", help="use the torch.export-based exporter")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    module = None
    if args.pretrain:
        module, stats = pretrain(args.seed)
        print(stats)
    export(args.out, module, args.seed, dynamo=args.dynamo)


if __name__ == "__main__":
    main()
