"""Smoke tests of the sparse-update benchmarks (tools/sparsebench.py, tools/membench.py) on tiny runs:
the commands run end to end and their tables hold the numbers the compiler predicts."""

from __future__ import annotations

import pytest
from edgegrad.tools import membench, sparsebench


def test_sparsebench_fashion_tiny(tmp_path, capsys):
    md = tmp_path / "s.md"
    try:
        rc = sparsebench.main(["--tasks", "fashion", "--schemes", "none,last:1,plan", "--train", "40", "--eval", "40",
                               "--plan-steps", "8", "--markdown", str(md)])
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST not installed (tools/setup.sh)")
    assert rc == 0
    text = md.read_text()
    assert "`last:1`" in text and "`plan@96K`" in text and "| fashion | `none` |" in text


def test_membench_recompute_and_torch_row(tmp_path, capsys):
    md = tmp_path / "m.md"
    assert membench.main(["--recompute", "--models", "cnn_fashion", "--schemes", "all", "--markdown", str(md)]) == 0
    assert "| cnn_fashion | `all` | 82.7 | 82.7 | 58.2 | 82.7 | 58.2 | 58.2 | 30% | 0 | 1 |" in md.read_text()
    assert membench.main(["--recompute", "--models", "resnet8", "--schemes", "bias:all", "--markdown", str(md)]) == 0
    assert "| resnet8 | `bias:all` | 352.1 | 352.1 | 256.1 | 198.0 | 198.0 | 196.0 | 44% | 7 | 0 |" in md.read_text()
    assert membench.main(["--models", "resnet8", "--schemes", "last:2", "--no-elf", "--markdown", str(md)]) == 0
    row = next(line for line in md.read_text().splitlines() if line.startswith("| resnet8"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] == "214.3" and cells[7] == "yes" and float(cells[8].replace(",", "")) > 0
