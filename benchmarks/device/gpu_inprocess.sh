#!/usr/bin/env bash
# GPU check, prepared for a session that is lent a GPU machine (benchmarks/README.md, "GPU"):
# the full-size networks' in-process floor with PyTorch CUDA FP16, channels-last (the gpu-torch
# profile's models and pipeline, no server), against naive eager FP32 one slice per pass, on the
# machine image's own python3 (torch, numpy, scipy and rich are there: nothing to install), and the
# pipeline's own pre/post-processing with the models replayed (prepost: the CPU a GPU node needs).
#
#   device tool: run(command="bash benchmarks/device/gpu_inprocess.sh", timeout_s=540)
#   here (CPU, small, to check the script): VARIANT=demo DEVICE=cpu SLICES=40 SIZE=256 SCANS=1 \
#       PYTHON=.venv/bin/python OUT=/tmp/gpu-check bash benchmarks/device/gpu_inprocess.sh
#
# Writes into $OUT: gpu.txt (nvidia-smi), inprocess-<variant>.json and .log (bench.py).
set -euo pipefail
OUT="${OUT:-/tmp/covidet-gpu-check}"
VARIANT="${VARIANT:-full}"
DEVICE="${DEVICE:-cuda}"
SLICES="${SLICES:-300}"
SIZE="${SIZE:-512}"
SCANS="${SCANS:-5}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 COLUMNS="${COLUMNS:-160}"

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >"$OUT/gpu.txt"
fi
"$PY" -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"
ckpt="$(mktemp -d)/checkpoints"
"$PY" -m covidet.cli init-checkpoints --variant "$VARIANT" --out "$ckpt"
"$PY" benchmarks/bench.py --profile gpu-torch --checkpoints "$ckpt" --torch-device "$DEVICE" \
    --concurrency "" --compare torch,naive,prepost --baseline-scans "$SCANS" --slices "$SLICES" --size "$SIZE" \
    --scans 2 --flops --json "$OUT/inprocess-$VARIANT.json" 2>&1 | tee "$OUT/inprocess-$VARIANT.log"
