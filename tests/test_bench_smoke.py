"""Smoke test of the benchmark command (tools/bench.py): it runs end to end, with every peer that is
installed, checks gradients in the same run and prints its table; plus the gradient check itself.

Not a benchmark: one model, one scheme, a handful of steps; the timings are not checked. The ONNX
Runtime peer runs when build/venv-ort exists (tools/setup_bench.sh, not run by the tests) and is
reported as not installed otherwise; TVM likewise.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from edgegrad.tools import bench


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_bench_mlp_har_partial_update(tmp_path, capsys):
    out = tmp_path / "out"
    rc = bench.main(["--models", "mlp_har", "--schemes", "weights:last:2@0.5", "--min-time", "0.01",
                     "--rounds", "1", "--min-steps", "3", "-o", str(out), "--build-dir", str(tmp_path / "build")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert (out / "bench.md").read_text() == printed
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"
    lines = printed.splitlines()
    header = _cells(next(line for line in lines if line.startswith("| model")))
    assert header[:len(bench.FIXED_COLUMNS)] == list(bench.FIXED_COLUMNS)
    assert "PyTorch µs" in header and header[-1] == "gradients vs PyTorch"
    ort = bench.peer_python("ort")[0] is not None
    assert ("ORT µs" in header) == ort
    assert ("onnxruntime-training 1.19.2" in printed) == ort
    if not ort:
        assert "ORT: not installed" in printed
    rows = [_cells(line) for line in lines if line.startswith("| mlp_har")]
    assert len(rows) == 1
    row = dict(zip(header, rows[0]))
    assert row["scheme"] == "`weights:last:2@0.5`"
    for col in ("edgegrad µs", "PyTorch µs", "roofline µs"):
        assert float(row[col].replace(",", "")) > 0, col
    assert row["PyTorch/edgegrad"].endswith("x")
    # every engine's gradients agree with autograd (edgegrad's frozen rows unmoved), none flagged
    assert row["gradients vs PyTorch"].startswith("eg: ok")
    assert "FAIL" not in row["gradients vs PyTorch"] and not any("✗" in c for c in rows[0])
    assert "failed to start" not in printed
    assert all(float(m) > 0 for m in row[header[-2]].split(" / ")), "peak RSS of every engine"
    assert "torch 2." in printed and "gcc" in printed and "GMAC/s" in printed


def test_gradient_check_flags_a_wrong_gradient():
    """The agreement rule rejects an error of 1% in one element and accepts float32 noise."""
    rng = np.random.default_rng(0)
    w0 = {"w": rng.standard_normal((8, 4)).astype(np.float32)}
    g = rng.standard_normal((8, 4)).astype(np.float32)
    lr = 0.01
    trained = {"w": {"axis": 0, "rows": 8, "total": 8, "shape": [8, 4]}}
    w1 = {"w": (w0["w"] - np.float32(lr) * g).astype(np.float32)}
    ref = bench.applied_gradients(w0, w1, trained, lr)
    assert bench.compare(ref, ref, w0, lr) == (True, "ok 0.0e+00")
    noisy = {"w": w1["w"] + np.float32(np.finfo(np.float32).eps) * np.abs(w1["w"])}
    assert bench.compare(bench.applied_gradients(w0, noisy, trained, lr), ref, w0, lr)[0]
    wrong = {"w": w1["w"].copy()}
    wrong["w"][3, 2] -= lr * 0.01 * np.abs(g).max()
    ok, text = bench.compare(bench.applied_gradients(w0, wrong, trained, lr), ref, w0, lr)
    assert not ok and text.startswith("FAIL") and "(w)" in text
    # a sub-tensor update compares only the rows the scheme trains
    half = {"w": {"axis": 0, "rows": 4, "total": 8, "shape": [8, 4]}}
    assert bench.applied_gradients(w0, wrong, half, lr)["w"].shape == (4, 4)
