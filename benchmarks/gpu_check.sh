#!/usr/bin/env bash
# GPU check: install onnxruntime-gpu in a fresh venv, then run predict, batch and bench with
# --device cuda and compare with the CPU. Run it on a machine with an NVIDIA GPU:
#     bash benchmarks/gpu_check.sh            # exits 0 only if every check passes
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${GPU_CHECK_VENV:-/tmp/imgclass-gpu-venv}
python3 -m venv "$venv"
"$venv/bin/pip" install -q ".[test]"
# The GPU build must own the `onnxruntime` module alone (see docs/guide/speed.md, Devices).
"$venv/bin/pip" uninstall -q -y onnxruntime onnxruntime-gpu
"$venv/bin/pip" install -q onnxruntime-gpu
"$venv/bin/python" benchmarks/gpu_check.py "$@"
