"""The recompute pass (compiler/passes/recompute.py): kept forward values recomputed in the backward
when that lowers the planned peak. Training through the generated C still matches PyTorch on every
element (fp32 rtol 1e-4 / atol 1e-5: the recomputed values are the same computation, so the numbers
do not move at all), the arena shrinks, and the peak never grows."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from edgegrad.autodiff import TrainConfig, build_training_graph
from edgegrad.frontend import import_onnx, load_onnx
from edgegrad.passes.fold_batchnorm import fold_batchnorm
from edgegrad.passes.fold_frozen import fold_frozen
from edgegrad.passes.plan_memory import plan_memory
from edgegrad.passes.recompute import recompute
from edgegrad.pipeline import CompileConfig, compile_model, frontend_graph
from edgegrad.scheme import parse_scheme
from egtest import FP32_ATOL, FP32_RTOL, train_build
from torch_ref import TorchModel

from models import ZOO


def _graphs(name: str, scheme: str):
    g0 = import_onnx(load_onnx(ZOO[name].path), {})
    ups = parse_scheme(scheme, g0)
    g = fold_batchnorm(fold_frozen(copy.deepcopy(g0), set(ups)), set(ups))
    g = build_training_graph(g, ups, TrainConfig())
    return g, recompute(copy.deepcopy(g))


@pytest.mark.parametrize("name,scheme", [("cnn_fashion", "all"), ("resnet8", "all"), ("resnet8", "bias:all"),
                                         ("dscnn", "bias:all"), ("dscnn", "all"), ("mlp_har", "all"),
                                         ("resnet8", "last:2")])
def test_peak_never_grows(name, scheme):
    g, r = _graphs(name, scheme)
    before, after = plan_memory(g), plan_memory(r)
    assert after.lower_bound <= before.lower_bound and after.arena_bytes <= before.arena_bytes
    if r.meta.get("recomputed"):
        assert after.arena_bytes < before.arena_bytes
    r.verify()


@pytest.mark.parametrize("name,scheme,saved_kib", [("resnet8", "all", 96), ("dscnn", "bias:all", 150)])
def test_recompute_lowers_zoo_peak(name, scheme, saved_kib):
    g, r = _graphs(name, scheme)
    assert r.meta["recomputed"]
    assert plan_memory(g).arena_bytes - plan_memory(r).arena_bytes >= saved_kib * 1024
    assert sum(1 for n in r.nodes if n.name.endswith("/recompute")) >= len(r.meta["recomputed"])


@pytest.mark.parametrize("name,scheme", [("resnet8", "all"), ("dscnn", "bias:all"), ("cnn_fashion", "all")])
def test_recomputed_training_matches_torch(name, scheme, tmp_path):
    e = ZOO[name]
    res = compile_model(e.path, tmp_path / "b", CompileConfig(update=scheme, lr=0.05, recompute=True, quiet=True,
                                                                 extra_cflags=("-O1",)))
    plain = compile_model(e.path, tmp_path / "p", CompileConfig(update=scheme, lr=0.05, recompute=False,
                                                                   build=False, quiet=True))
    assert res.graph.meta.get("recomputed") and res.info["arena_bytes"] < plain.info["arena_bytes"]
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(e.input_shape).astype(np.float32) for _ in range(3)]
    ys = [int(rng.integers(e.num_classes)) for _ in range(3)]
    losses, trained, _ = train_build(res.out_dir, xs, ys)
    g, updates = frontend_graph(e.path, CompileConfig(update=scheme))
    ref_losses, ref = TorchModel(g, list(updates)).train(xs, ys, lr=0.05)
    np.testing.assert_allclose(losses, ref_losses, rtol=FP32_RTOL, atol=FP32_ATOL)
    for p in updates:
        np.testing.assert_allclose(trained[p], ref[p], rtol=FP32_RTOL, atol=FP32_ATOL, err_msg=p)


def test_mcu_compiles_with_recompute_by_default(tmp_path):
    e = ZOO["resnet8"]
    on = compile_model(e.path, tmp_path / "m", CompileConfig(target="mcu", update="all", build=False, quiet=True,
                                                             sram_budget=1 << 30))
    off = compile_model(e.path, tmp_path / "o", CompileConfig(target="mcu", update="all", build=False, quiet=True,
                                                              sram_budget=1 << 30, recompute=False))
    assert on.info["arena_bytes"] < off.info["arena_bytes"]
    assert on.info["predicted"]["sram_total"] < off.info["predicted"]["sram_total"]


def test_inspect_shows_recompute_and_mask_decisions(tmp_path, capsys):
    """edgegrad inspect --update S prints what the mcu schedule recomputes (each tensor, its bytes, the
    arena before and after) and which ReLU outputs it keeps as 1-bit masks; the final arena is the one
    compile --target mcu plans."""
    from edgegrad.cli import main
    e = ZOO["dscnn"]
    mcu = compile_model(e.path, tmp_path / "m", CompileConfig(target="mcu", update="all", build=False, quiet=True,
                                                              sram_budget=1 << 30))
    log = mcu.graph.meta["recompute_log"]
    assert [d["tensor"] for d in log] == mcu.graph.meta["recomputed"]
    assert main(["inspect", str(e.path), "--update", "all"]) == 0
    out = capsys.readouterr().out
    assert f"recompute: {len(log)} kept activations recomputed" in out
    assert f"-> {mcu.info['arena_bytes']} B ({mcu.info['arena_bytes'] - log[0]['arena_before']:+d} B)" in out
    for d in log:
        assert f"{d['tensor'][:50]:<50} {d['bytes']:>8} B" in out
    assert f"mcu schedule: arena {mcu.info['arena_bytes']} B" in out
    assert main(["inspect", str(ZOO["resnet8"].path), "--update", "bias:all"]) == 0
    out = capsys.readouterr().out
    assert "1-bit ReLU masks: 7 ReLU/Clip outputs" in out and "65536 B ->   2048 B" in out
