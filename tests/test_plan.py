"""edgegrad plan (memory-aware sparse update search) and inspect --memory (memory timeline)."""

import json
from pathlib import Path

import numpy as np
import pytest
from edgegrad.autodiff import TrainConfig
from edgegrad.cli import main
from edgegrad.errors import BudgetError
from edgegrad.frontend import import_onnx, load_onnx
from edgegrad.inspect import saved_activations
from edgegrad.pipeline import CompileConfig, compile_model
from edgegrad.plan import MemoryModel, run_plan, training_graph
from edgegrad.scheme import Update, parse_scheme
from edgegrad.timeline import model_timeline

ROOT = Path(__file__).resolve().parent.parent
RESNET8 = ROOT / "models" / "onnx" / "resnet8.onnx"
HAR = ROOT / "models" / "onnx" / "mlp_har.onnx"
BUDGET = 256 * 1024


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "scheme.json"
    rc = main(["plan", str(RESNET8), "--budget-sram", "256K", "-o", str(out)])
    assert rc == 0
    return out


def test_plan_fits_and_compiles(planned, tmp_path, capsys):
    scheme = json.loads(planned.read_text())
    assert scheme and "fc.weight" in scheme
    g0 = import_onnx(load_onnx(RESNET8), {})
    pred = MemoryModel(g0, TrainConfig()).predict(parse_scheme(str(planned), g0))
    assert pred["sram_total"] <= BUDGET
    res = compile_model(RESNET8, tmp_path / "b", CompileConfig(target="mcu", update=str(planned), build=False,
                                                                quiet=True))
    assert res.info["predicted"]["sram_total"] == pred["sram_total"]
    with pytest.raises(BudgetError):
        compile_model(RESNET8, tmp_path / "all", CompileConfig(target="mcu", update="all", build=False, quiet=True))


def test_scheme_json_round_trips(planned):
    raw = json.loads(planned.read_text())
    g0 = import_onnx(load_onnx(RESNET8), {})
    ups = parse_scheme(str(planned), g0)
    assert set(ups) == set(raw)
    for t, v in raw.items():
        assert ups[t] == (Update(1, v["in"]) if isinstance(v, dict) else Update(0, float(v)))


def test_plan_with_data_and_infeasible(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((8, 3, 32, 32)).astype(np.float32),
             y=rng.integers(0, 10, 8))
    plan = run_plan(str(RESNET8), 240 * 1024, str(tmp_path / "s.json"), data=str(tmp_path / "calib.npz"),
                    steps=4, quiet=True)
    assert not plan.proxy and plan.predicted["sram_total"] <= 240 * 1024
    assert "proxy" not in capsys.readouterr().out
    with pytest.raises(BudgetError, match="inference alone"):
        run_plan(str(RESNET8), 128 * 1024, str(tmp_path / "no.json"), quiet=True)
    assert not (tmp_path / "no.json").exists()


def test_inspect_memory_png_and_peak(planned, tmp_path, capsys):
    png = tmp_path / "mem.png"
    assert main(["inspect", str(RESNET8), "--update", str(planned), "--memory", "--png", str(png),
                 "--budget-sram", "256K"]) == 0
    out = capsys.readouterr().out
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    assert "fits" in out
    _g, plan, tl = model_timeline(RESNET8, str(planned))
    assert tl["peak"] == plan.lower_bound
    assert f"peak live {plan.lower_bound} B" in out
    assert max(r["high_water"] for r in tl["rows"]) == plan.arena_bytes
    g0 = import_onnx(load_onnx(RESNET8), {})
    assert MemoryModel(g0, TrainConfig()).predict(parse_scheme(str(planned), g0))["arena_lower_bound"] \
        == plan.lower_bound


def test_in_share_shrinks_saved_activation():
    g0 = import_onnx(load_onnx(RESNET8), {})
    w = "stacks.2.conv1.weight"

    def saved(f):
        g = training_graph(g0, {w: Update(1, f)}, TrainConfig())
        return sum(saved_activations(g).values())

    assert saved(0.25) < saved(1.0)


@pytest.mark.qemu
def test_planned_scheme_trains_in_qemu(planned, tmp_path):
    """The scheme planned for 256 KiB builds for the mcu within it, boots in QEMU and trains: every
    trained tensor matches PyTorch after 2 steps (fp32 rtol 1e-4 / atol 1e-5)."""
    from egtest import FP32_ATOL, FP32_RTOL, compile_host, train_build
    from torch_ref import TorchModel

    build = compile_host(RESNET8, tmp_path / "b", update=str(planned), lr=0.05, target="mcu", sram_budget=BUDGET)
    sections = json.loads((build / "build.json").read_text())["sections"]
    assert sections["sram_used"] <= BUDGET
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(2)]
    ys = [3, 7]
    losses, trained, _ = train_build(build, xs, ys)
    g0 = import_onnx(load_onnx(RESNET8), {})
    ups = parse_scheme(str(planned), g0)
    slices = {p: (u.axis, u.rows(g0.tensors[p].shape)) for p, u in ups.items()}
    ref_losses, ref = TorchModel(g0, list(ups)).train(xs, ys, lr=0.05, slices=slices)
    np.testing.assert_allclose(losses, ref_losses, rtol=FP32_RTOL, atol=FP32_ATOL)
    for p in ups:
        np.testing.assert_allclose(trained[p], ref[p], rtol=FP32_RTOL, atol=FP32_ATOL, err_msg=p)


def test_measured_gain_learns_new_classes(tmp_path):
    """Class-incremental Fashion-MNIST (cnn_fashion_pre never saw classes 8, 9): the first-order proxy
    prefers cheap convolution weights and the classifier's bias, which cannot separate new classes;
    the measured contribution analysis (short fine-tuning runs) picks the classifier's weight
    (tools/sparsebench.py measures the accuracy of both)."""
    import sys
    sys.path.insert(0, str(ROOT))
    from models.datasets import fashion_mnist
    try:
        x, y = fashion_mnist("test")
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST not installed (tools/setup.sh)")
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.permutation(np.flatnonzero(y >= 8))[:32], rng.permutation(np.flatnonzero(y < 8))[:32]])
    idx = rng.permutation(idx)
    np.savez(tmp_path / "calib.npz", x=x[idx], y=y[idx])
    model = ROOT / "models" / "onnx" / "cnn_fashion_pre.onnx"
    measured = run_plan(str(model), 96 * 1024, str(tmp_path / "m.json"), data=str(tmp_path / "calib.npz"),
                        steps=32, lr=0.005, quiet=True)
    assert measured.gain == "measured" and "7.weight" in measured.scheme
    assert measured.predicted["sram_total"] <= 96 * 1024 and measured.score > 0


@pytest.fixture(scope="module")
def har_q(tmp_path_factory):
    """mlp_har quantized by edgegrad quantize (seeded normal calibration, as tests/test_int8.py), and
    a calibration .npz with labels for edgegrad plan --data."""
    from edgegrad.quantize import quantize_model
    d = tmp_path_factory.mktemp("planq")
    rng = np.random.default_rng(0)
    g0 = import_onnx(load_onnx(HAR), {})
    x = rng.standard_normal((32,) + tuple(g0.tensors[g0.inputs[0]].shape[1:])).astype(np.float32)
    np.save(d / "x.npy", x[:16])
    quantize_model(HAR, d / "x.npy", d / "q.onnx")
    np.savez(d / "calib.npz", x=x, y=rng.integers(0, g0.tensors[g0.outputs[0]].shape[-1], 32))
    return d


@pytest.mark.parametrize("dtype", ["int8", "fp16"])
def test_plan_dtype_predicts_what_compile_checks(dtype, har_q, tmp_path, capsys):
    """plan --dtype D: every candidate's SRAM is compile --target mcu --dtype D's own prediction (the
    written scheme compiles to the same figure), int8 schemes take output-channel shares only, and
    the --data fine-tuning runs train in D (the report says so)."""
    model = har_q / "q.onnx" if dtype == "int8" else HAR
    out = tmp_path / "s.json"
    assert main(["plan", str(model), "--dtype", dtype, "--budget-sram", "48K", "--data", str(har_q / "calib.npz"),
                 "--steps", "4", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{dtype} update plan" in text
    scheme = json.loads(out.read_text())
    assert scheme
    if dtype == "int8":
        assert all(isinstance(v, (int, float)) for v in scheme.values())
    res = compile_model(model, tmp_path / "b", CompileConfig(target="mcu", dtype=dtype, update=str(out),
                                                             sram_budget=48 * 1024, build=False, quiet=True))
    pred = res.info["predicted"]["sram_total"]
    assert f"predicted peak SRAM {pred / 1024:.1f} KiB ({pred} B)" in text
    g0 = import_onnx(load_onnx(HAR), {})
    fp32 = MemoryModel(g0, TrainConfig()).predict(parse_scheme(str(out), g0))["sram_total"] if dtype == "fp16" else 0
    assert pred != fp32  # fp16: f16 arena tensors and fp32 staging buffers, not the fp32 figure


def test_plan_dtype_errors(har_q, tmp_path):
    from edgegrad.errors import EdgegradError
    from edgegrad.plan import search
    with pytest.raises(EdgegradError, match="edgegrad quantize"):
        search(HAR, 64 * 1024, dtype="int8")
    with pytest.raises(EdgegradError, match="--dtype int8"):
        search(har_q / "q.onnx", 64 * 1024)
    with pytest.raises(EdgegradError, match="sgd or momentum"):
        search(har_q / "q.onnx", 64 * 1024, dtype="int8", optimizer="adam")


@pytest.mark.parametrize("dtype", ["int8", "fp16"])
def test_fine_tuning_interpreter_matches_the_build(dtype, har_q, tmp_path):
    """The measured gains of plan --dtype D fine-tune with plan.StepInterpreter: after 3 momentum
    steps its trained tensors equal the compiled host build's in D. int8 (QUpdate with the fp32
    master): the integer weights differ by at most 1 LSB on at most 0.1% of the elements (fp32
    gradient sums in another order can move a master across a rounding tie);
    fp16 (fp16 storage, loss scale 2^10): rtol 1e-3 / atol 1e-5 (one fp16 ulp is 2^-11 relative)."""
    from edgegrad.plan import StepInterpreter, forward_graph
    from egtest import compile_host, train_build
    model = har_q / "q.onnx" if dtype == "int8" else HAR
    build = compile_host(model, tmp_path / "b", dtype=dtype, update="all", optimizer="momentum", lr=0.05)
    d = np.load(har_q / "calib.npz")
    xs, ys = [d["x"][i][None] for i in range(3)], [int(d["y"][i]) for i in range(3)]
    _, trained, _ = train_build(build, xs, ys)
    g0 = forward_graph(model, dtype)
    g = training_graph(g0, parse_scheme("all", g0), TrainConfig(optimizer="momentum", lr=0.05), "host", dtype,
                       interpret=True)
    it = StepInterpreter(g)
    for x, y in zip(xs, ys):
        it.train_step([x], np.array([y]))
    assert trained
    for p, got in trained.items():
        want = it.param(p).reshape(got.shape)
        if dtype == "int8":
            diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
            assert diff.max() <= 1 and np.mean(diff > 0) <= 1e-3, p
        else:
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5, err_msg=p)
    if dtype == "int8":  # the steps did move the integer weights (the comparison is not of untouched tensors)
        assert g.meta["masters"] and any(np.any(trained[p] != g0.tensors[p].data.reshape(trained[p].shape))
                                         for p in trained)


def test_measured_plan_when_nothing_helps(har_q, tmp_path):
    """At an lr that makes every fine-tuning run diverge no candidate gains anything: the planner
    still writes a scheme that fits (the least harmful single candidate) and says so."""
    plan = run_plan(str(HAR), 64 * 1024, str(tmp_path / "s.json"), data=str(har_q / "calib.npz"), steps=4,
                    lr=1e6, quiet=True)
    assert plan.notes and "no candidate improved" in plan.notes[0]
    assert len({t for t, _, _ in next(c for _, c in plan.choices if c.updates).updates}) >= 1
    assert sum(1 for _, c in plan.choices if c.updates) == 1
    assert json.loads((tmp_path / "s.json").read_text()) == plan.scheme
