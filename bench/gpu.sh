#!/usr/bin/env bash
# The GPU check, as one prepared script (the whole run stays under 5 minutes): classifier and
# anatomy-segmentation throughput, fp32 and fp16, beside the CPU; results in bench/results/gpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 RADPILOT_DEVICE=cuda
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 280 "${PYTHON:-.venv/bin/python}" bench/bench_gpu.py --images "${IMAGES:-64}"
