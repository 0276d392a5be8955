#!/usr/bin/env bash
# Idempotent set-up of the benchmark peers' own virtual environments (not needed by the tests):
#
#   tools/setup_bench.sh          # build/venv-ort: onnxruntime-training 1.19.2 (numpy<2, onnx 1.16.2, torch)
#   tools/setup_bench.sh tvm      # also build/venv-tvm: apache-tvm 0.27.0.post1 (about 305 MB)
#   tools/setup_bench.sh tvm-only # only build/venv-tvm (tools/test.sh: the TVM oracle and --backend tvm tests;
#                                 # about 1 min on a fresh venv with nothing cached, measured 2026-11-23)
#
# Each peer lives in its own venv because onnxruntime-training 1.19.2 needs numpy<2 and onnx 1.16,
# while edgegrad's venv has numpy 2 (so no --system-site-packages there). python -m edgegrad.tools.bench
# finds them at build/venv-ort and build/venv-tvm and prints "not installed" for one that is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
ORT=build/venv-ort
TVM=build/venv-tvm

if [ "${1:-}" != tvm-only ] && ! "$ORT/bin/python" -c "import onnxruntime.training.api, onnx, torch, numpy" >/dev/null 2>&1; then
  echo "[setup_bench] $ORT: onnxruntime-training 1.19.2"
  rm -rf "$ORT"
  "$PY" -m venv "$ORT"
  # torch only for onnxruntime.training's import-time checks; the CPU wheel is local.
  "$ORT/bin/pip" install -q "numpy<2" "onnx==1.16.2" "onnxruntime-training==1.19.2" "torch==2.13.0"
fi
if [ "${1:-}" != tvm-only ]; then
  "$ORT/bin/python" -c "import onnxruntime, onnx; print('[setup_bench] ort', onnxruntime.__version__, 'onnx', onnx.__version__)"
fi

if [ "${1:-}" = tvm ] || [ "${1:-}" = tvm-only ]; then
  if ! "$TVM/bin/python" -c "import tvm, onnx; from tvm import relax" >/dev/null 2>&1; then
    echo "[setup_bench] $TVM: apache-tvm 0.27.0.post1"
    rm -rf "$TVM"
    "$PY" -m venv "$TVM"
    "$TVM/bin/pip" install -q "apache-tvm==0.27.0.post1" onnx numpy
  fi
  "$TVM/bin/python" -c "import tvm; print('[setup_bench] tvm', tvm.__version__)"
fi
