#!/usr/bin/env bash
# Served GPU check (gpu-torch through Triton), in two device calls on one warm machine (the
# machine goes back 30 s after a call: make the second call at once). Prepared, not yet run on a
# GPU. First, here: bash benchmarks/device/fetch_wheels.sh
#
#   1. run(command="bash benchmarks/device/gpu_served.sh install", carry=[".whl/server"], timeout_s=300)
#   2. run(command="bash benchmarks/device/gpu_served.sh run", carry=[".whl/client"], timeout_s=540)
#
# Env: LEVELS [1,4,16] (closed-loop concurrency), DURATION [20] s per level, COMPILE [none]
# (torch.compile mode of the slice models: reduce-overhead compiles each batch-size bucket of
# each model at load, minutes for the full-size networks), VARIANT [full].
set -euo pipefail
STAGE="${1:?usage: gpu_served.sh install|run}"
OUT="${OUT:-/tmp/covidet-gpu-served}"
SITE=/tmp/covidet-site
mkdir -p "$OUT" "$SITE"
case "$STAGE" in
install)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/server/*.whl
    ls "$SITE/pytriton/tritonserver/bin" | tee "$OUT/install.txt"
    ;;
run)
    [ -d "$SITE/pytriton" ] || { echo "no Triton in $SITE: the install call did not run on this machine" >&2; exit 3; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/client/*.whl
    # numpy 1.26 and the client first, for bench and for the Triton stubs it starts
    export PYTHONPATH="$SITE:$PWD/src" PYTHONUNBUFFERED=1 COLUMNS=160
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" || true
    python3 -c "import numpy, torch, tritonclient.grpc; print('numpy', numpy.__version__, 'torch', torch.__version__, torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
    ckpt="$(mktemp -d)/checkpoints"
    python3 -m covidet.cli init-checkpoints --variant "${VARIANT:-full}" --out "$ckpt"
    python3 benchmarks/bench.py --profile gpu-torch --checkpoints "$ckpt" --torch-compile "${COMPILE:-none}" \
        --concurrency "${LEVELS:-1,4,16}" --duration "${DURATION:-20}" --slices 300 --size 512 --scans 2 \
        --shared-memory --compare torch --baseline-scans 3 --flops \
        --json "$OUT/served-${VARIANT:-full}.json" --server-log "$OUT/triton.log" 2>&1 \
        | tee "$OUT/served-${VARIANT:-full}.log"
    # the slice tensors stayed on the GPU through BLS unless a pipeline instance said otherwise
    grep -c "slice tensors through BLS on the device failed" "$OUT/triton.log" || echo "device tensors: no fallback"
    ;;
*) echo "unknown stage $STAGE: install or run" >&2; exit 2 ;;
esac
