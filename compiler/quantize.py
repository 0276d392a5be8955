"""edgegrad quantize: post-training static quantization of a float ONNX model.

Wraps ``onnxruntime.quantization.quantize_static`` with a calibration reader over real samples
(an ``.npz`` or ``.npy`` file): QDQ format, per-channel symmetric int8 weights, int8 activations
(asymmetric, MinMax calibration), int32 biases. The output is what ``--dtype int8`` imports.

onnxruntime is a development dependency: it is imported here only, lazily, with a clear error.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import EdgegradError
from .frontend import load_onnx


def load_calibration(path: str | Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """Samples from ``path``: an .npy array, or an .npz whose array ``x`` (else the first array) holds them."""
    path = Path(path)
    if not path.exists():
        raise EdgegradError(f"{path}: no such calibration file")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            key = "x" if "x" in data.files else (data.files[0] if data.files else None)
            if key is None:
                raise EdgegradError(f"{path}: the .npz holds no arrays")
            data = data[key]
    except (OSError, ValueError) as e:
        raise EdgegradError(f"{path}: cannot read calibration samples ({e})")
    per = int(np.prod(input_shape))
    if data.size == 0 or data.size % per:
        raise EdgegradError(f"{path}: shape {list(data.shape)} does not hold samples of shape {list(input_shape)}")
    return data.astype(np.float32).reshape((-1,) + tuple(input_shape))


def quantize_model(src: str | Path, calib: str | Path, dst: str | Path, max_samples: int = 256) -> dict:
    """Write the QDQ int8 version of ``src`` to ``dst``; return a short summary."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError:
        raise EdgegradError("edgegrad quantize needs onnxruntime (pip install onnxruntime); "
                            "compiling an already quantized model does not")
    import onnxruntime
    onnxruntime.set_default_logger_severity(3)  # ORT warns about every unused Constant it prunes
    model = load_onnx(src)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise EdgegradError("edgegrad quantize calibrates models with exactly one input")
    name = inputs[0].name
    dims = [d.dim_value if d.dim_value > 0 else 1 for d in inputs[0].type.tensor_type.shape.dim]
    x = load_calibration(calib, tuple(dims[1:]))[:max_samples]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(x)

        def get_next(self):
            s = next(self.it, None)
            return None if s is None else {name: s[None]}

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # batch 1 fixed: the calibrator and edgegrad both run batch 1
        fixed = Path(tmp) / "fixed.onnx"
        inputs[0].type.tensor_type.shape.dim[0].dim_value = 1
        import onnx
        onnx.save(model, str(fixed))
        out = Path(tmp) / "q.onnx"
        import logging
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # ORT logs a pre-processing hint as a root WARNING on every call
        try:
            quantize_static(str(fixed), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        finally:
            root.setLevel(level)
        os.replace(out, dst)
    return {"samples": len(x), "output": str(dst)}
