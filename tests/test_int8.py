"""--dtype int8: quantized zoo models compiled to int8 C.

Forward: the generated C equals the numpy references of the int8 ops (compiler/ops_int8.py, TFLite
fixed-point requantization) bit for bit, and onnxruntime's int8 kernels within 1 LSB of the output
(ORT requantizes with a float multiplier and round-half-to-even, we with TFLite's fixed-point
multiplier and round-half-away; the two differ by one step where the exact value sits within float
error of a .5 tie).

Backward: after one SGD step with the fp32 master copy, master_before - master_after = lr * gscale * g,
so the C gradient g of every updated weight and bias is recovered exactly and compared (every
element) with torch autograd on the dequantized graph: forward values are the int8 values
dequantized, each int8 layer passes the gradient where its int8 output lies strictly inside its
clamp range (straight-through rounding). Tolerance fp32: |g - g_ref| <= 1e-4 * max|g_ref| + 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
from edgegrad.errors import EdgegradError
from edgegrad.frontend import import_onnx, load_onnx
from edgegrad.ops import run_ref
from edgegrad.passes.quantize_lower import quantize_lower
from edgegrad.pipeline import CompileConfig, compile_model
from edgegrad.quantize import quantize_model
from edgegrad.run import Session, load_build
from edgegrad.tools.runner import open_device

from models import ZOO

GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-6


@pytest.fixture(scope="module")
def qmodels(tmp_path_factory):
    """Quantized zoo models (real Fashion-MNIST calibration for the Fashion CNN, seeded normal data
    for the randomly initialised MobileNetV2 and MLP)."""
    from models.datasets import fashion_mnist
    d = tmp_path_factory.mktemp("q")
    out = {}
    x, _ = fashion_mnist("train")
    np.savez(d / "fashion.npz", x=x[:64])
    out["cnn_fashion_pre"] = d / "cnn_fashion_pre_q.onnx"
    quantize_model(ZOO["cnn_fashion_pre"].path, d / "fashion.npz", out["cnn_fashion_pre"])
    rng = np.random.default_rng(0)
    for name in ("mobilenetv2_w035_96", "mlp_har"):
        np.save(d / f"{name}.npy", rng.standard_normal((16,) + tuple(ZOO[name].input_shape[1:])).astype(np.float32))
        out[name] = d / f"{name}_q.onnx"
        quantize_model(ZOO[name].path, d / f"{name}.npy", out[name])
    return out


def _inputs(name: str, n: int) -> np.ndarray:
    if name == "cnn_fashion_pre":
        from models.datasets import fashion_mnist
        return fashion_mnist("test")[0][:n]
    rng = np.random.default_rng(1)
    return rng.standard_normal((n,) + tuple(ZOO[name].input_shape[1:])).astype(np.float32)


def _numpy_forward(g, x: np.ndarray) -> dict[str, np.ndarray]:
    vals = {g.inputs[0]: x}
    for n in g.nodes:
        arrays = [vals[i] if i in vals else (g.tensors[i].data if i else None) for i in n.inputs]
        for o, v in zip(n.outputs, run_ref(n, arrays)):
            vals[o] = v
    return vals


@pytest.mark.parametrize("name", ["cnn_fashion_pre", "mobilenetv2_w035_96", "mlp_har"])
def test_int8_forward_matches_numpy_exactly_and_ort_within_1lsb(name, qmodels, tmp_path):
    import onnxruntime as ort
    q = qmodels[name]
    b = compile_model(q, tmp_path / "b",
                      CompileConfig(dtype="int8", update="last:1", quiet=True, extra_cflags=("-O1",)))
    g = quantize_lower(import_onnx(load_onnx(q)))
    deq = g.nodes[-1]
    assert deq.op == "Dequantize"
    sess = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
    xs = _inputs(name, 12 if name == "mobilenetv2_w035_96" else 40)
    info = load_build(b.out_dir)
    lsb, n_diff = [], 0
    with open_device(b.binary, "host") as dev:
        s = Session(dev, info)
        for x in xs:
            ours = s.infer(x)
            ref = _numpy_forward(g, x[None])[g.outputs[0]]
            np.testing.assert_array_equal(ours, ref)  # bit-exact with the integer reference
            theirs = sess.run(None, {sess.get_inputs()[0].name: x[None]})[0]
            d = np.rint(np.abs(ours - theirs) / deq.attrs["scale"])
            lsb.append(d.max())
            n_diff += int((d > 0).sum())
    if name == "mobilenetv2_w035_96":
        # 52 layers deep: 1-LSB rounding differences compound to a few LSB at the logits, so the
        # check is per layer, each fed onnxruntime's own int8 inputs
        _check_layers_against_ort(q, g, xs[:3])
        assert max(lsb) <= 4, f"logits differ from onnxruntime by up to {max(lsb)} LSB"
    else:
        assert max(lsb) <= 1, f"logits differ from onnxruntime by up to {max(lsb)} LSB"
        assert n_diff <= 0.1 * len(xs) * ours.size, f"{n_diff} logits differ by 1 LSB"


def _check_layers_against_ort(q, g, xs) -> None:
    """Every int8 layer, given onnxruntime's int8 inputs, gives onnxruntime's int8 output within 1 LSB."""
    import onnx
    import onnxruntime as ort
    m = onnx.load(str(q))
    names = {o for n in g.nodes for o in n.outputs if g.tensors[o].dtype == "s8"}
    have = {o.name for o in m.graph.output}
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear" and n.output[0] in names and n.output[0] not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(n.output[0], onnx.TensorProto.INT8, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    checked = 0
    for x in xs:
        theirs = dict(zip(out_names, sess.run(None, {sess.get_inputs()[0].name: x[None]})))
        for n in g.nodes:
            if n.op == "Dequantize" or not all(i in theirs or g.tensors[i].data is not None for i in n.inputs if i):
                continue
            if n.op == "Quantize" or n.outputs[0] not in theirs:
                continue
            arrays = [theirs[i] if i in theirs else (g.tensors[i].data if i else None) for i in n.inputs]
            ours = run_ref(n, arrays)[0]
            d = np.abs(ours.astype(np.int32) - theirs[n.outputs[0]].astype(np.int32))
            assert d.max() <= 1, f"{n.name} ({n.op}) differs from onnxruntime by {d.max()} LSB"
            checked += 1
    assert checked >= 50 * len(xs)


def _torch_grads(g, x: np.ndarray, label: int, want: list[str]) -> dict[str, np.ndarray]:
    """dL/d(real param) by torch autograd on the dequantized int8 graph (straight-through rounding)."""
    import torch
    import torch.nn.functional as F
    vals = _numpy_forward(g, x[None])
    real, leaves = {}, {}

    def deq_act(name, scale, zp):
        if name not in real:
            real[name] = torch.tensor(scale * (vals[name].astype(np.float64) - zp))
        return real[name]

    def param(node, idx, scale):
        name = node.inputs[idx]
        if not name:
            return None
        data = g.tensors[name].data.astype(np.float64)
        t = torch.tensor(data * scale.reshape((-1,) + (1,) * (data.ndim - 1)), requires_grad=name in want)
        leaves[name] = t
        return t

    def ste(node, pre):
        """forward: the int8 output dequantized; backward: dy where act_min < y < act_max"""
        a = node.attrs
        yq = vals[node.outputs[0]]
        mask = torch.tensor(((yq > a["act_min"]) & (yq < a["act_max"])).astype(np.float64))
        y = torch.tensor(a["y_scale"] * (yq.astype(np.float64) - a["y_zp"]))
        real[node.outputs[0]] = y + mask * (pre - pre.detach())

    for n in g.nodes:
        a = n.attrs
        if n.op == "Quantize":
            continue
        if n.op in ("QConv", "QGemm"):
            x_ = deq_act(n.inputs[0], a["x_scale"], a["x_zp"])
            sw = np.asarray(a["w_scale"])
            w = param(n, 1, sw)
            b = param(n, 2, a["x_scale"] * sw)
            if n.op == "QConv":
                pre = F.conv2d(x_, w, b, a["strides"], (a["pads"][0], a["pads"][1]), a["dilations"], a["group"])
                assert a["pads"][:2] == a["pads"][2:]
            else:
                pre = F.linear(x_, w, b)
            ste(n, pre)
        elif n.op == "QMaxPool":
            x_ = deq_act(n.inputs[0], a["x_scale"], a["x_zp"])
            real[n.outputs[0]] = F.max_pool2d(x_, a["kernel"], a["strides"], (a["pads"][0], a["pads"][1]))
        elif n.op == "QGlobalAveragePool":
            x_ = deq_act(n.inputs[0], a["x_scale"], a["x_zp"])
            ste(n, x_.mean(dim=(2, 3), keepdim=True))
        elif n.op == "QAdd":
            ste(n, deq_act(n.inputs[0], a["x_scale"], a["a_zp"]) + deq_act(n.inputs[1], a["b_scale"], a["b_zp"]))
        elif n.op == "QClamp":
            ste(n, deq_act(n.inputs[0], a["x_scale"], a["x_zp"]))
        elif n.op == "Reshape":
            if n.inputs[0] in real:  # else a view of the float input, before Quantize
                real[n.outputs[0]] = real[n.inputs[0]].reshape(a["shape"])
        elif n.op == "Dequantize":
            real[n.outputs[0]] = real[n.inputs[0]]
        else:
            raise AssertionError(n.op)
    logits = real[g.outputs[0]]
    loss = F.cross_entropy(logits.reshape(1, -1), torch.tensor([label]))
    loss.backward()
    return {p: leaves[p].grad.numpy() for p in want}


@pytest.mark.parametrize("name,scheme,qas", [("cnn_fashion_pre", "all", True), ("cnn_fashion_pre", "last:2", False),
                                             ("mobilenetv2_w035_96", "last:3", True), ("mlp_har", "all", True)])
def test_int8_gradients_match_torch_on_dequantized_graph(name, scheme, qas, qmodels, tmp_path):
    q = qmodels[name]
    lr = 1e-3
    b = compile_model(q, tmp_path / "b", CompileConfig(dtype="int8", update=scheme, optimizer="sgd", lr=lr, qas=qas,
                                                       quiet=True, extra_cflags=("-O1",)))
    # QAS: the integer-domain step is g / s_w (weights) and g / (s_x s_w) (biases); without QAS s_w g, s_x s_w g
    for p in b.updates:
        node = next(n for n in b.graph.nodes if n.op in ("QConv", "QGemm", "QConvPwDw") and p in n.inputs)
        s = np.asarray(node.attrs["w_scale"]) * (node.attrs["x_scale"] if p == node.inputs[2] else 1.0)
        want = 1.0 / s if qas else s
        np.testing.assert_allclose(b.graph.tensors[f"{p}/gscale"].data, want[: want.size], rtol=1e-6)
    g0 = quantize_lower(import_onnx(load_onnx(q)))
    gscale = {p: b.graph.tensors[f"{p}/gscale"].data.astype(np.float64) for p in b.updates}
    x = _inputs(name, 1)[0]
    label = 3
    info = load_build(b.out_dir)
    with open_device(b.binary, "host") as dev:
        s = Session(dev, info)
        before = {p: s.read(f"{p}/master", (b.graph.tensors[f"{p}/master"].size,)) for p in b.updates}
        s.train(x, label)
        after = {p: s.read(f"{p}/master", (b.graph.tensors[f"{p}/master"].size,)) for p in b.updates}
    ref = _torch_grads(g0, x, label, list(b.updates))
    assert len(ref) >= 2
    for p in b.updates:
        rows = gscale[p].size
        step = (before[p].astype(np.float64) - after[p].astype(np.float64)).reshape(rows, -1)
        g_c = step / (lr * gscale[p][:, None])
        g_ref = ref[p].reshape(rows, -1)
        tol = GRAD_RTOL * np.abs(g_ref).max() + GRAD_ATOL
        # the step is taken in float32 on values up to 127 (weights) or 2^20 (biases): resolution of the recovery
        res = np.spacing(np.abs(before[p]).astype(np.float32).max()) / (lr * gscale[p].min())
        np.testing.assert_allclose(g_c, g_ref, rtol=0, atol=max(tol, 2 * res), err_msg=p)
        assert np.abs(g_ref).max() > 0, p


def test_int8_refuses_float_models_and_adam(qmodels, tmp_path):
    with pytest.raises(EdgegradError, match="edgegrad quantize"):
        compile_model(ZOO["cnn_fashion_pre"].path, tmp_path / "a", CompileConfig(dtype="int8", build=False, quiet=True))
    with pytest.raises(EdgegradError, match="--dtype int8"):
        compile_model(qmodels["cnn_fashion_pre"], tmp_path / "b", CompileConfig(build=False, quiet=True))
    with pytest.raises(EdgegradError, match="sgd or momentum"):
        compile_model(qmodels["cnn_fashion_pre"], tmp_path / "c",
                      CompileConfig(dtype="int8", optimizer="adam", build=False, quiet=True))


@pytest.mark.qemu
def test_int8_mcu_matches_host(qmodels, tmp_path):
    """The int8 forward is integer arithmetic: the emulated RV32 MCU and the host give identical logits.
    Training (fp32 backward, gcc vs clang, fp contraction may differ) agrees to fp32 tolerance."""
    from models.datasets import fashion_mnist
    q = qmodels["cnn_fashion_pre"]
    cfg = {"dtype": "int8", "update": "last:2", "optimizer": "momentum", "lr": 0.003, "quiet": True}
    x, y = fashion_mnist("test")
    xs, ys = x[:3], [int(v) for v in y[:3]]
    runs = {}
    for target in ("host", "mcu"):
        c = compile_model(q, tmp_path / target, CompileConfig(target=target, **cfg))
        with open_device(c.binary, target) as dev:
            s = Session(dev, c.info)
            before = [s.infer(v) for v in xs]
            losses = [s.train(v, t) for v, t in zip(xs, ys)]
            runs[target] = (before, losses, s.trained(), {m: s.read(m, (c.graph.tensors[m].size,))
                                                          for m in c.graph.meta["masters"]})
    (hb, hl, hp, hm), (mb, ml, mp, mm) = runs["host"], runs["mcu"]
    for a, b in zip(hb, mb):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(ml, hl, rtol=1e-5, atol=1e-6)
    for m in hm:
        np.testing.assert_allclose(mm[m], hm[m], rtol=1e-5, atol=1e-5 * np.abs(hm[m]).max(), err_msg=m)
    for p in hp:
        assert hp[p].dtype == mp[p].dtype and np.abs(hp[p].astype(np.int64) - mp[p].astype(np.int64)).max() <= 1


def _quantize_qoperator(src, calib: np.ndarray, dst) -> None:
    import logging

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    logging.getLogger().setLevel(logging.ERROR)
    name = __import__("onnx").load(str(src)).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            v = next(self.it, None)
            return None if v is None else {name: v[None]}

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"WeightSymmetric": True})


def _infer(build, xs) -> list[np.ndarray]:
    with open_device(build.binary, "host") as dev:
        s = Session(dev, build.info)
        return [s.infer(x) for x in xs]


def test_int8_qoperator_models(qmodels, tmp_path):
    """QLinearConv / QGemm (onnxruntime's operator format) read as the equivalent QDQ graph: the same
    int8 build as the QDQ model quantized with the same calibration, and within 1 LSB of onnxruntime;
    QLinearMatMul (a hand-built float MatMul model) likewise."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from models.datasets import fashion_mnist
    x = fashion_mnist("train")[0][:64]
    qop = tmp_path / "cnn_qop.onnx"
    _quantize_qoperator(ZOO["cnn_fashion_pre"].path, x, qop)
    assert any(n.op_type == "QLinearConv" for n in onnx.load(str(qop)).graph.node)
    cfg = {"dtype": "int8", "update": "last:1", "quiet": True, "extra_cflags": ("-O1",)}
    b_op = compile_model(qop, tmp_path / "op", CompileConfig(**cfg))
    b_qdq = compile_model(qmodels["cnn_fashion_pre"], tmp_path / "qdq", CompileConfig(**cfg))
    xs = _inputs("cnn_fashion_pre", 20)
    sess = ort.InferenceSession(str(qop), providers=["CPUExecutionProvider"])
    scale = b_op.graph.nodes[b_op.graph.meta["n_forward"] - 1].attrs["scale"]
    for a, b, xi in zip(_infer(b_op, xs), _infer(b_qdq, xs), xs):
        np.testing.assert_array_equal(a, b)
        assert np.abs(a - sess.run(None, {"input": xi[None]})[0]).max() <= 1.01 * scale

    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((16, 8)).astype(np.float32), rng.standard_normal((8, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["logits"])], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    fm = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fm))
    xs = rng.standard_normal((32, 16)).astype(np.float32)
    qm = tmp_path / "mm_q.onnx"
    _quantize_qoperator(fm, xs, qm)
    assert sum(n.op_type == "QLinearMatMul" for n in onnx.load(str(qm)).graph.node) == 2
    b = compile_model(qm, tmp_path / "mm", CompileConfig(**dict(cfg, update="all")))
    sess = ort.InferenceSession(str(qm), providers=["CPUExecutionProvider"])
    scale = b.graph.nodes[b.graph.meta["n_forward"] - 1].attrs["scale"]
    for a, xi in zip(_infer(b, xs[:10]), xs[:10]):
        assert np.abs(a - sess.run(None, {"x": xi[None]})[0]).max() <= 1.01 * scale


def test_int8_mobilenetv2_128_fits_the_mcu_with_a_sparse_scheme(tmp_path):
    """The prediction the mcu build is checked against (compiler/memory.py; ELF and painted stack are
    measured by tools/int8bench.py --mcu): MobileNetV2-w0.35@128 int8 with the benchmark's sparse
    scheme fits 256 KiB SRAM / 1 MiB flash; `last:2` does not, and the error names the parts."""
    import json

    from edgegrad.errors import BudgetError
    from edgegrad.pipeline import frontend_graph
    from edgegrad.tools.int8bench import MCU_MODEL, MCU_SCHEMES, mcu_scheme
    rng = np.random.default_rng(0)
    shape = (4,) + tuple(ZOO[MCU_MODEL].input_shape[1:])
    np.save(tmp_path / "calib.npy", rng.standard_normal(shape).astype(np.float32))
    q = tmp_path / "q.onnx"
    quantize_model(ZOO[MCU_MODEL].path, tmp_path / "calib.npy", q)
    g, _ = frontend_graph(q, CompileConfig(dtype="int8"))
    _, n_bias, partial = MCU_SCHEMES[1]
    (tmp_path / "s.json").write_text(json.dumps(mcu_scheme(g, n_bias, partial)))
    c = compile_model(q, tmp_path / "b", CompileConfig(target="mcu", dtype="int8", update=str(tmp_path / "s.json"),
                                                       int8_master="none", build=False, quiet=True))
    pred = c.info["predicted"]
    assert pred["sram_total"] <= 256 * 1024 and pred["flash_total"] <= 1024 * 1024
    assert c.graph.meta["fused_pwdw"] == 12  # the blocks whose expanded tensor the backward pass does not read
    with pytest.raises(BudgetError, match=r"SRAM needs .* trainable params"):
        compile_model(q, tmp_path / "c", CompileConfig(target="mcu", dtype="int8", update="last:2", build=False,
                                                       quiet=True))
