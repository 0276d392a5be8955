"""The real-data pretrained zoo entry (MobileNetV2-w0.35@128 on Fashion-MNIST classes 0-7) and the
planbench smoke path (tools/planbench.py: planned scheme vs full fine-tuning).

The pretrained files are checked against their torch modules in test_zoo; here: they classify the
classes they were pretrained on (through onnxruntime, with the benchmark's own preprocessing), never
predict the held-out ones, and the benchmark runs end to end on a tiny subset.
"""

from __future__ import annotations

import numpy as np
import pytest

from models import ZOO
from models import datasets as ds

needs_fashion = pytest.mark.skipif(not (ds.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                   reason="Debian package dataset-fashion-mnist not installed")


def test_to_rgb_is_torch_bilinear() -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    for size in (32, 128):
        got = ds.to_rgb(x, size)
        assert got.shape == (3, 3, size, size) and got.dtype == np.float32
        want = torch.nn.functional.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear",
                                               align_corners=False).numpy()
        for c in range(3):
            np.testing.assert_allclose(got[:, c:c + 1], want, rtol=0, atol=1e-5)
    with pytest.raises(ValueError):
        ds.to_rgb(np.zeros((1, 3, 8, 8), np.float32), 16)


@needs_fashion
def test_pretrained_on_classes_0_7() -> None:
    name, size, floor = "mobilenetv2_w035_128_pre", 128, 0.7  # 75.7% on 2000 test images of classes 0-7
    ort = pytest.importorskip("onnxruntime")
    x, y = ds.fashion_mnist("test")
    old = np.flatnonzero(y < 8)[:100]
    new = np.flatnonzero(y >= 8)[:50]
    sess = ort.InferenceSession(str(ZOO[name].path), providers=["CPUExecutionProvider"])

    def predict(idx: np.ndarray) -> np.ndarray:
        return np.array([int(np.argmax(sess.run(None, {"input": ds.to_rgb(x[i:i + 1], size)})[0])) for i in idx])

    assert np.mean(predict(old) == y[old]) >= floor
    assert not np.isin(predict(new), (8, 9)).any()  # the held-out classes were never trained


@needs_fashion
def test_planbench_smoke(tmp_path) -> None:
    """The benchmark end to end on 2 images: quantize, int8 host build (-O0), train, before/after rows, the mcu
    SRAM prediction of the scheme (classifier only: inside 256 KiB)."""
    pytest.importorskip("onnxruntime")
    from edgegrad.tools.planbench import PlanOpts, run

    rows, mcus, notes = run(["mbv2"], [0], ["none", "last:1"], 256 * 1024, {"mbv2": 0.005}, 2, 2, 4, PlanOpts(),
                            "none", 0, tmp_path, log=lambda *a: None, cflags=("-O0",))
    assert [(r.scheme, r.dtype) for r in rows] == [("none", "int8"), ("last:1", "int8")]
    before, after = rows
    assert after.tensors == 2 and after.params == "12,810/401,898"
    assert 0 < after.sram <= 256 * 1024
    assert before.acc["new"] == 0.0  # classes 8, 9 were never trained
    for r in rows:
        assert set(r.acc) == {"all", "new", "old"} and all(0 <= v <= 1 for v in r.acc.values())
    assert not mcus and "int8 = `edgegrad quantize` on 4 pretraining images" in notes[0]
