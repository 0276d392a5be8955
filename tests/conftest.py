import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # models/
sys.path.insert(0, str(Path(__file__).resolve().parent))  # egtest, torch_ref


def pytest_configure(config):
    config.addinivalue_line("markers", "qemu: needs qemu-system-riscv32 (installed by tools/setup.sh)")


def pytest_collection_modifyitems(config, items):
    if shutil.which("qemu-system-riscv32"):
        return
    skip = pytest.mark.skip(reason="qemu-system-riscv32 missing: run tools/setup.sh")
    for item in items:
        if "qemu" in item.keywords:
            item.add_marker(skip)
