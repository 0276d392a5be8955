"""Write trained parameters back into the user's ONNX model: same graph, same names; only the
trained tensors change (frozen ones stay bit-identical because they are never rewritten)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import EdgegradError


def export_trained(src: str | Path, dst: str | Path, trained: dict[str, np.ndarray]) -> None:
    model = onnx.load(str(src))
    left = dict(trained)
    for init in model.graph.initializer:
        if init.name in left:
            arr = left.pop(init.name)
            init.CopyFrom(numpy_helper.from_array(arr.astype(numpy_helper.to_array(init).dtype)
                                                  .reshape(tuple(init.dims)), init.name))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] in left:
            arr = left.pop(node.output[0])
            for a in node.attribute:
                if a.name == "value":
                    old = numpy_helper.to_array(a.t)
                    a.t.CopyFrom(numpy_helper.from_array(arr.astype(old.dtype).reshape(old.shape), a.t.name))
    if left:
        raise EdgegradError(f"trained tensors not found in {src}: {', '.join(left)}")
    # write atomically: a failed export never leaves a half-written model
    dst = Path(dst)
    fd, tmp = tempfile.mkstemp(dir=str(dst.parent or "."), suffix=".onnx.tmp")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
