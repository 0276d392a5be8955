#!/usr/bin/env bash
# The main job: install what is needed (idempotent), then run the on-device learning demo:
# compile a pretrained CNN for the RISC-V MCU target, boot it in QEMU, stream new-class
# samples over the serial link and train on the device.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec edgegrad demo "$@"
