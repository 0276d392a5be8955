"""ResNet-8 from MLPerf Tiny (image classification, CIFAR-10 sized input 32x32x3).

conv3x3 16 + BN + ReLU, then three residual stacks of 16, 32, 64 filters (stride 1, 2, 2),
each conv3x3-BN-ReLU-conv3x3-BN plus a shortcut (identity in the first stack, 1x1 conv with
stride 2 after), ReLU; 8x8 average pool, linear to 10 classes.

``pretrain`` trains it on Fashion-MNIST classes 0-7 (PRETRAIN_CLASSES), resized to 32x32 and
repeated on the 3 input channels (``models.datasets.to_rgb``), keeping the 10-way head (classes 8
and 9 are left for class-incremental fine-tuning); exported with BN fused (``build_fused``).
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

from models.common import export_onnx, fit, fuse_batchnorm, randomize_batchnorm, seeded

INPUT_SHAPE = (1, 3, 32, 32)
NUM_CLASSES = 10
PRETRAIN_CLASSES = tuple(range(8))
BN_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"))
STACKS = (16, 32, 64)


class ResidualStack(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ResNet8(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, STACKS[0], 3, 1, 1), nn.BatchNorm2d(STACKS[0]), nn.ReLU())
        stacks, cin = [], STACKS[0]
        for i, cout in enumerate(STACKS):
            stacks.append(ResidualStack(cin, cout, 1 if i == 0 else 2))
            cin = cout
        self.stacks = nn.Sequential(*stacks)
        self.pool = nn.AvgPool2d(8)
        self.fc = nn.Linear(STACKS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stacks(self.stem(x))), 1))


def build(seed: int = 0, num_classes: int = NUM_CLASSES) -> nn.Module:
    """Default torch init plus randomized BN statistics (see randomize_batchnorm)."""
    generator = seeded(seed)
    model = ResNet8(num_classes)
    randomize_batchnorm(model, generator)
    return model.eval()


def build_fused(seed: int = 0, num_classes: int = NUM_CLASSES) -> nn.Module:
    """The architecture of the pretrained (BN-fused) export: convs with bias, no BatchNorm."""
    return fuse_batchnorm(build(seed, num_classes), BN_PAIRS)


def pretrain(seed: int = 0, per_class: int = 1500, epochs: int = 3, lr: float = 2e-3, batch: int = 64,
             n_test: int = 2000) -> tuple[nn.Module, dict]:
    """Adam on the first ``per_class`` Fashion-MNIST train images of each of classes 0-7 at 32x32x3,
    BatchNorm in training mode; returns the BN-fused module and its accuracy on the first ``n_test``
    test images: on classes 0-7 and on all 10 (8, 9 are never predicted before fine-tuning)."""
    from models.datasets import fashion_mnist, to_rgb

    size = INPUT_SHAPE[-1]
    x, y = fashion_mnist("train")
    idx = np.sort(np.concatenate([np.flatnonzero(y == c)[:per_class] for c in PRETRAIN_CLASSES]))
    seeded(seed)
    model = ResNet8(NUM_CLASSES)
    fit(model, torch.from_numpy(x[idx]), torch.from_numpy(y[idx]), epochs=epochs, batch=batch, lr=lr, seed=seed,
        transform=lambda xb: torch.from_numpy(to_rgb(xb.numpy(), size)))
    fuse_batchnorm(model, BN_PAIRS)
    xs, ys = fashion_mnist("test")
    xs, ys = xs[:n_test], ys[:n_test]
    with torch.no_grad():
        pred = model(torch.from_numpy(to_rgb(xs, size))).argmax(1).numpy()
    seen = np.isin(ys, PRETRAIN_CLASSES)
    return model, {"test_acc_classes_0_7": float((pred[seen] == ys[seen]).mean()),
                   "test_acc_all_10": float((pred == ys).mean()), "train_images": len(idx)}


def export(path: str | Path, module: nn.Module | None = None, seed: int = 0,
           keep_batchnorm: bool = False) -> Path:
    module = module if module is not None else build(seed)
    return export_onnx(module, path, INPUT_SHAPE, keep_batchnorm=keep_batchnorm,
                       fold_constants=not keep_batchnorm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="e.g. models/onnx/resnet8.onnx")
    parser.add_argument("--keep-batchnorm", action="store_true", help="export BatchNormalization nodes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    export(args.out, seed=args.seed, keep_batchnorm=args.keep_batchnorm)


if __name__ == "__main__":
    main()
