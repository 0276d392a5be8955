"""The rpi and jetson builds (static aarch64 binaries, NEON kernels, worker threads) train zoo
models under qemu-aarch64 with the board's cpu: every trained tensor matches PyTorch after 3
steps at the fp32 tolerance (rtol 1e-4, atol 1e-5), the same check as tests/test_zoo_train.py.
A representative subset: qemu-user runs the NEON code about 10x slower than native."""

from __future__ import annotations

import shutil

import pytest
from test_zoo_train import _check

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(
    not (shutil.which("qemu-aarch64") and shutil.which("aarch64-linux-gnu-gcc")),
    reason="qemu-aarch64 / aarch64-linux-gnu-gcc missing: run tools/setup.sh")]


@pytest.mark.parametrize("name,scheme,board", [
    ("mlp_har", "all", "pi4"),                     # GEMMs only
    ("cnn_fashion", "all", "pi4"),                 # im2col convolutions, pooling
    ("resnet8", "last:2", "pi4"),                  # threaded GEMMs (4 threads), residual adds
    ("mobilenetv2_w035_96", "last:2", "pi5"),      # depthwise + pointwise, Cortex-A76
    ("dscnn", "weights:last:1@0.5", "orin"),       # partial update, jetson CPU path (6 threads)
    ("dscnn", "all", "pi4"),                       # NEON depthwise forward, input and weight gradients
])
def test_aarch64_matches_torch(name, scheme, board, tmp_path):
    target = "jetson" if board == "orin" else "rpi"
    _check(name, scheme, "sgd", target, tmp_path, board=board)
