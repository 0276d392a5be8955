#!/usr/bin/env bash
# The test command: installs what the tests need (idempotent), then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
jobs=${EG_TEST_JOBS:-$(nproc)}
exec python3 -m pytest -n "$jobs" --durations=15 tests "$@"
