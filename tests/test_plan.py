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
