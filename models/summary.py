"""Print the zoo as a markdown table: parameters, fp32 bytes, MACs, ONNX op types.

    python -m models.summary

Parameters and bytes count the ONNX file's float weights (initializers or Constant nodes,
after BN folding where the file folds it); MACs count Conv and Linear in the torch module.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

if __package__ in (None, ""):  # run as `python models/summary.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import ZOO
from models.onnx_utils import op_types


def float_weights(model: onnx.ModelProto) -> list[np.ndarray]:
    tensors = [numpy_helper.to_array(i) for i in model.graph.initializer]
    tensors += [numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
                if n.op_type == "Constant" and n.attribute[0].name == "value"]
    return [t for t in tensors if t.dtype.kind == "f" and t.ndim >= 1 and t.size > 1]


def main() -> None:
    from models.build_all import RECIPES
    from models.common import count_macs

    print("| name | file | input | classes | params | fp32 bytes | MACs | file bytes | ops |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, entry in ZOO.items():
        model = onnx.load(str(entry.path))
        weights = float_weights(model)
        params = sum(w.size for w in weights)
        macs = count_macs(RECIPES[name].build(), entry.input_shape)
        shape = "x".join(map(str, entry.input_shape))
        print(f"| {name} | {entry.path.name} | {shape} | {entry.num_classes} | {params:,} | {4 * params:,} "
              f"| {macs:,} | {entry.path.stat().st_size:,} | {' '.join(op_types(model))} |")


if __name__ == "__main__":
    main()
