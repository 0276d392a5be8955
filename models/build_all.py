"""Regenerate every ONNX file of the zoo into models/onnx/.

    python -m models.build_all            # everything, pretraining included (~1 min on 2 CPUs)
    python -m models.build_all resnet8    # just the named entries

Deterministic: fixed seeds, deterministic torch algorithms, fixed data order. Byte-identical
output is expected on the same machine and library versions (float reductions may differ
across CPUs for the pretrained files).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

if __package__ in (None, ""):  # run as `python models/X.py`: make the `models` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import ONNX_DIR, ZOO, cnn_fashion, dscnn, mlp_har, mobilenetv2, resnet8
from models.common import export_onnx
from models.onnx_utils import initializers_to_constants

SEED = 0


@dataclass(frozen=True)
class Recipe:
    """How one zoo entry is made.

    build: the torch module whose outputs the ONNX file must reproduce (for pretrained
    entries: the untrained architecture; tests load the file's weights into it).
    write: makes the file from scratch (pretraining included), returns a short report.
    pretrained: the weights come from training, not from build().
    """

    build: Callable[[], nn.Module]
    write: Callable[[Path], str]
    pretrained: bool = False


def _write_pretrained(module_and_stats: Callable[[], tuple[nn.Module, dict]],
                      export: Callable[[Path, nn.Module], Path]) -> Callable[[Path], str]:
    def write(path: Path) -> str:
        module, stats = module_and_stats()
        export(path, module)
        return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items())
    return write


def _write_dscnn_pad(path: Path) -> str:
    export_onnx(dscnn.build(SEED), path, dscnn.INPUT_SHAPE)  # no Pad->Conv merge
    return ""


def _write_constants(path: Path) -> str:
    model = onnx.load(str(resnet8.export(path, seed=SEED)))
    onnx.save(initializers_to_constants(model), str(path))
    return ""


RECIPES: dict[str, Recipe] = {
    "mlp_har": Recipe(lambda: mlp_har.build(SEED), lambda p: (mlp_har.export(p, seed=SEED), "")[1]),
    "mlp_har_pre": Recipe(
        lambda: mlp_har.build(SEED),
        _write_pretrained(lambda: mlp_har.pretrain(SEED), lambda p, m: mlp_har.export(p, m)),
        pretrained=True),
    "cnn_fashion": Recipe(lambda: cnn_fashion.build(SEED),
                          lambda p: (cnn_fashion.export(p, seed=SEED), "")[1]),
    "cnn_fashion_pre": Recipe(
        lambda: cnn_fashion.build(SEED),
        _write_pretrained(lambda: cnn_fashion.pretrain(SEED), lambda p, m: cnn_fashion.export(p, m)),
        pretrained=True),
    "cnn_fashion_dynamo": Recipe(lambda: cnn_fashion.build(SEED),
                                 lambda p: (cnn_fashion.export(p, seed=SEED, dynamo=True), "")[1]),
    "mobilenetv2_w035_96": Recipe(lambda: mobilenetv2.build(SEED),
                                  lambda p: (mobilenetv2.export(p, 96, seed=SEED), "")[1]),
    "mobilenetv2_w035_128": Recipe(lambda: mobilenetv2.build(SEED),
                                   lambda p: (mobilenetv2.export(p, 128, seed=SEED), "")[1]),
    "mobilenetv2_w035_128_pre": Recipe(
        lambda: mobilenetv2.build_fused(SEED),
        _write_pretrained(lambda: mobilenetv2.pretrain(SEED), lambda p, m: mobilenetv2.export(p, 128, m)),
        pretrained=True),
    "resnet8": Recipe(lambda: resnet8.build(SEED), lambda p: (resnet8.export(p, seed=SEED), "")[1]),
    "resnet8_bn": Recipe(lambda: resnet8.build(SEED),
                         lambda p: (resnet8.export(p, seed=SEED, keep_batchnorm=True), "")[1]),
    "resnet8_constants": Recipe(lambda: resnet8.build(SEED), _write_constants),
    "dscnn": Recipe(lambda: dscnn.build(SEED), lambda p: (dscnn.export(p, seed=SEED), "")[1]),
    "dscnn_pad": Recipe(lambda: dscnn.build(SEED), _write_dscnn_pad),
}
assert RECIPES.keys() == ZOO.keys(), "models/__init__.py ZOO and RECIPES disagree"


def build(names: list[str] | None = None) -> None:
    torch.use_deterministic_algorithms(True)
    ONNX_DIR.mkdir(parents=True, exist_ok=True)
    for name in names or list(RECIPES):
        path = ZOO[name].path
        with warnings.catch_warnings():
            # The legacy exporter's deprecation notice and PRESERVE-mode advice are expected here.
            warnings.simplefilter("ignore")
            report = RECIPES[name].write(path)
        print(f"{name:22s} {path.stat().st_size:>9,d} B  {path.name}" + (f"  [{report}]" if report else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"zoo entries (default: all): {', '.join(RECIPES)}")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown zoo entries: {', '.join(unknown)}")
    build(args.names or None)


if __name__ == "__main__":
    main()
