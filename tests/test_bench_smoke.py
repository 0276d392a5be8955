"""Smoke test of the benchmark command (tools/bench.py): it runs end to end and prints its table.

Not a benchmark: one model, one scheme, a handful of steps; the numbers are not checked.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from edgegrad.tools import bench


def test_bench_mlp_har_bias_all(tmp_path, capsys):
    out = tmp_path / "bench.md"
    rc = bench.main(["--models", "mlp_har", "--schemes", "bias:all", "--min-time", "0.01", "--rounds", "1",
                     "--min-steps", "3", "--markdown", str(out), "--build-dir", str(tmp_path / "build")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert out.read_text() == printed
    lines = printed.splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    assert [c.strip() for c in header.strip("|").split("|")] == list(bench.COLUMNS)
    rows = [line for line in lines if line.startswith("| mlp_har")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1] == "`bias:all`"
    assert float(cells[6].replace(",", "")) > 0 and float(cells[7].replace(",", "")) > 0
    assert cells[8].endswith("x")
    assert "torch" in printed and "gcc" in printed and "nproc" in printed
