"""DS-CNN (small) from MLPerf Tiny keyword spotting: input [1, 1, 49, 10] MFCC, 12 classes.

conv 64 kernel (10, 4) stride 2 with TF 'same' padding (pads top 4, bottom 5, left 1,
right 1 -> 25x5), BN, ReLU; 4 depthwise-separable blocks (depthwise 3x3 'same' + BN + ReLU,
pointwise 1x1 64 + BN + ReLU); average pool over 25x5; linear to 12. Dropout layers of the
reference are omitted (identity at inference). torch lacks asymmetric conv padding, so the
stem uses ZeroPad2d; ``export`` merges that Pad into the Conv's pads (onnx_utils).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx
import torch
from torch import nn

if __package__ in (None, ""):  # run as `python models/X.py`: make the `models` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.common import export_onnx, randomize_batchnorm, seeded
from models.onnx_utils import fold_pad_into_conv

INPUT_SHAPE = (1, 1, 49, 10)
NUM_CLASSES = 12
FILTERS = 64
BLOCKS = 4


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'same' padding (before, after) for one axis: extra padding goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class DSCNN(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES, filters: int = FILTERS, blocks: int = BLOCKS) -> None:
        super().__init__()
        _, _, height, width = INPUT_SHAPE
        top, bottom = same_padding(height, 10, 2)
        left, right = same_padding(width, 4, 2)
        self.stem = nn.Sequential(
            nn.ZeroPad2d((left, right, top, bottom)),
            nn.Conv2d(1, filters, (10, 4), stride=2),
            nn.BatchNorm2d(filters),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for _ in range(blocks):
            layers += [
                nn.Conv2d(filters, filters, 3, padding=1, groups=filters),
                nn.BatchNorm2d(filters),
                nn.ReLU(),
                nn.Conv2d(filters, filters, 1),
                nn.BatchNorm2d(filters),
                nn.ReLU(),
            ]
        self.blocks = nn.Sequential(*layers)
        out_h, out_w = -(-height // 2), -(-width // 2)
        self.pool = nn.AvgPool2d((out_h, out_w))
        self.fc = nn.Linear(filters, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def build(seed: int = 0, num_classes: int = NUM_CLASSES) -> nn.Module:
    """Default torch init plus randomized BN statistics (see randomize_batchnorm)."""
    generator = seeded(seed)
    model = DSCNN(num_classes)
    randomize_batchnorm(model, generator)
    return model.eval()


def export(path: str | Path, module: nn.Module | None = None, seed: int = 0) -> Path:
    module = module if module is not None else build(seed)
    path = export_onnx(module, path, INPUT_SHAPE)
    onnx.save(fold_pad_into_conv(onnx.load(str(path))), str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="e.g. models/onnx/dscnn.onnx")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    export(args.out, seed=args.seed)


if __name__ == "__main__":
    main()
