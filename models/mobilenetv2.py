"""MobileNetV2, width 0.35 (MCUNet-class): inverted residuals, ReLU6, depthwise 3x3.

Standard recipe (Sandler et al. 2018, torchvision layout): stem conv3x3/2 to
make_divisible(32*w), 17 inverted-residual blocks (t, c, n, s) below with channels scaled by
w, last 1x1 conv to 1280 (kept at 1280 for w <= 1), global average pool, linear classifier.
BatchNorm after every conv; the default export folds it into the convs.

``pretrain`` trains the 128x128 model on Fashion-MNIST classes 0-7 (PRETRAIN_CLASSES), resized
to 128x128 and repeated on the 3 input channels (``models.datasets.to_rgb``), keeping the
10-way head: classes 8 (Bag) and 9 (Ankle boot) are left for class-incremental fine-tuning.
The pretrained module is exported with its BatchNorms fused into the convs (``fuse_batchnorm``).
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

WIDTH = 0.35
RESOLUTIONS = (96, 128)
NUM_CLASSES = 10
LAST_CHANNEL = 1280
PRETRAIN_CLASSES = tuple(range(8))
# expansion t, output channels c, repeats n, first stride s
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to a multiple of divisor without going more than 10 % below value (TF reference)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_relu6(cin, hidden, 1))
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, width: float = WIDTH, num_classes: int = NUM_CLASSES, last_channel: int = LAST_CHANNEL) -> None:
        super().__init__()
        cin = make_divisible(32 * width)
        last = make_divisible(last_channel * max(1.0, width))
        layers: list[nn.Module] = [conv_bn_relu6(3, cin, 3, stride=2)]
        for expand, channels, repeats, stride in INVERTED_RESIDUAL_SETTING:
            cout = make_divisible(channels * width)
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(conv_bn_relu6(cin, last, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def build(seed: int = 0, width: float = WIDTH, num_classes: int = NUM_CLASSES) -> nn.Module:
    """Random init (torchvision recipe) plus randomized BN statistics (see randomize_batchnorm)."""
    generator = seeded(seed)
    model = MobileNetV2(width, num_classes)
    randomize_batchnorm(model, generator)
    return model.eval()


def input_shape(resolution: int) -> tuple[int, int, int, int]:
    return (1, 3, resolution, resolution)


def build_fused(seed: int = 0, num_classes: int = NUM_CLASSES) -> nn.Module:
    """The architecture of the pretrained (BN-fused) export: convs with bias, no BatchNorm."""
    return fuse_batchnorm(build(seed, num_classes=num_classes))


def pretrain(seed: int = 0, resolution: int = 128, per_class: int = 500, epochs: int = 2, lr: float = 2e-3,
             batch: int = 64, n_test: int = 2000) -> tuple[nn.Module, dict]:
    """Adam on the first ``per_class`` Fashion-MNIST train images of each of classes 0-7, resized
    to ``resolution`` (models.datasets.to_rgb), BatchNorm in training mode; returns the BN-fused
    module and its accuracy on ``n_test`` test images of classes 0-7 and of all 10 classes (8, 9
    are never predicted before class-incremental training)."""
    from models.datasets import fashion_mnist, to_rgb

    x, y = fashion_mnist("train")
    idx = np.sort(np.concatenate([np.flatnonzero(y == c)[:per_class] for c in PRETRAIN_CLASSES]))
    torch.set_num_threads(1)  # on a shared machine a second thread mostly spins; one is also reproducible
    seeded(seed)
    model = MobileNetV2(WIDTH, NUM_CLASSES)
    fit(model, torch.from_numpy(x[idx]), torch.from_numpy(y[idx]), epochs=epochs, batch=batch, lr=lr, seed=seed,
        transform=lambda xb: torch.from_numpy(to_rgb(xb.numpy(), resolution)))
    fuse_batchnorm(model)
    xs, ys = fashion_mnist("test")
    xs, ys = xs[:n_test], ys[:n_test]
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(to_rgb(xs[i:i + 250], resolution))).argmax(1)
                          for i in range(0, len(xs), 250)]).numpy()
    seen = np.isin(ys, PRETRAIN_CLASSES)
    return model, {"test_acc_classes_0_7": float((pred[seen] == ys[seen]).mean()),
                   "test_acc_all_10": float((pred == ys).mean()), "train_images": len(idx)}


def export(path: str | Path, resolution: int = 96, module: nn.Module | None = None, seed: int = 0,
           num_classes: int = NUM_CLASSES) -> Path:
    module = module if module is not None else build(seed, num_classes=num_classes)
    return export_onnx(module, path, input_shape(resolution))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="e.g. models/onnx/mobilenetv2_w035_96.onnx")
    parser.add_argument("--resolution", type=int, default=96, choices=RESOLUTIONS)
    parser.add_argument("--num-classes", type=int, default=NUM_CLASSES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    export(args.out, args.resolution, seed=args.seed, num_classes=args.num_classes)


if __name__ == "__main__":
    main()
