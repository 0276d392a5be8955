"""Zoo models trained by the RVV mcu build (`--ext zve32f,zvl128b`: conv and GEMM through
runtime_c/rvv/, QEMU started with the vector unit) match PyTorch SGD on every trained tensor.
Tolerance fp32: rtol 1e-4, atol 1e-5 after 3 steps (tests/egtest.py FP32_RTOL/FP32_ATOL)."""

from __future__ import annotations

import json

import pytest
from test_zoo_train import _check

RVV = ("zve32f", "zvl128b")


@pytest.mark.qemu
@pytest.mark.parametrize("name,scheme", [("cnn_fashion", "all"), ("dscnn", "last:3")])
def test_rvv_mcu_matches_torch(name, scheme, tmp_path):
    _check(name, scheme, "sgd", "mcu", tmp_path, extensions=RVV)
    model_c = (tmp_path / "b" / "model.c").read_text()
    assert "_rvv(" in model_c and '#include "eg_kernels_rvv.h"' in model_c
    assert json.loads((tmp_path / "b" / "firmware.json").read_text())["extensions"] == list(RVV)


@pytest.mark.parametrize("target,ext,message", [("host", ("zve32f",), "mcu target only"),
                                                ("mcu", ("zve64d",), "unknown mcu extension 'zve64d'"),
                                                ("mcu", ("zvfh",), "zvfh needs zve32f")])
def test_bad_extensions_are_one_clear_error(target, ext, message, tmp_path):
    from edgegrad.errors import EdgegradError
    from edgegrad.pipeline import CompileConfig, compile_model

    from models import ZOO

    with pytest.raises(EdgegradError, match=message):
        compile_model(ZOO["mlp_har"].path, tmp_path / "b", CompileConfig(target=target, extensions=ext, build=False))
    assert not (tmp_path / "b").exists()
