"""ResNet-8 from MLPerf Tiny (image classification, CIFAR-10 sized input 32x32x3).

conv3x3 16 + BN + ReLU, then three residual stacks of 16, 32, 64 filters (stride 1, 2, 2),
each conv3x3-BN-ReLU-conv3x3-BN plus a shortcut (identity in the first stack, 1x1 conv with
stride 2 after), ReLU; 8x8 average pool, linear to 10 classes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

if __package__ in (None, ""):  # run as `python models/X.py`: make the `models` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.common import export_onnx, randomize_batchnorm, seeded

INPUT_SHAPE = (1, 3, 32, 32)
NUM_CLASSES = 10
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
