#!/usr/bin/env bash
# The test command: installs what the tests need (idempotent), then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# TVM (build/venv-tvm) for tests/test_tvm_*.py; without it (no registry) those tests skip, the rest runs.
bash tools/setup_bench.sh tvm-only || echo "[test] build/venv-tvm not installed: the TVM tests will skip"
jobs=${EG_TEST_JOBS:-$(nproc)}
exec python3 -m pytest -n "$jobs" --durations=15 tests "$@"
