#!/usr/bin/env bash
# covidet container entrypoint.
#
# 1. Render the Triton model repository for $COVIDET_PROFILE from $COVIDET_CHECKPOINTS into the
#    cache volume: `covidet export --profile gpu` exports ONNX and builds the TensorRT engines
#    for THIS node's GPU. The result is reused when its fingerprint (profile, covidet version,
#    checkpoint hashes, GPU model + compute capability, TensorRT version) matches.
# 2. exec tritonserver (PID 1 stays Triton: SIGTERM drains in-flight requests) with covidet's
#    server flags (covidet.serve.TritonServer.command) plus this script's arguments, e.g. the
#    restricted-API and TLS flags that the Helm chart passes.
#
# Environment (defaults in brackets): COVIDET_PROFILE [gpu] (cpu | gpu | gpu-torch),
# COVIDET_CHECKPOINTS [/opt/covidet/checkpoints], COVIDET_CACHE_DIR [/var/cache/covidet],
# COVIDET_HOST [0.0.0.0], COVIDET_HTTP_PORT [8000], COVIDET_GRPC_PORT [8001],
# COVIDET_METRICS_PORT [8002], COVIDET_EXIT_TIMEOUT_S [30], COVIDET_PYTHON [python3],
# COVIDET_NVINFER_LIB [found with ldconfig], COVIDET_ALLOW_TRT_MISMATCH [0],
# COVIDET_DRY_RUN [0] (1: print the Triton command as JSON instead of running it).
set -euo pipefail

PROFILE="${COVIDET_PROFILE:-gpu}"
CHECKPOINTS="${COVIDET_CHECKPOINTS:-/opt/covidet/checkpoints}"
CACHE="${COVIDET_CACHE_DIR:-/var/cache/covidet}"
PYTHON="${COVIDET_PYTHON:-python3}"

log() { echo "[covidet-entrypoint] $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

case "$PROFILE" in
cpu | gpu | gpu-torch) ;;
*) die "COVIDET_PROFILE='$PROFILE' is not a profile: expected cpu, gpu or gpu-torch" ;;
esac
[ -d "$CHECKPOINTS" ] || die "checkpoint folder '$CHECKPOINTS' does not exist: mount one there or set COVIDET_CHECKPOINTS"
mkdir -p "$CACHE" 2>/dev/null || true
[ -w "$CACHE" ] || die "cache folder '$CACHE' is not writable by uid $(id -u): mount a writable volume (emptyDir) there or set COVIDET_CACHE_DIR"

# The TensorRT version that Triton's tensorrt_plan backend links, from libnvinfer's file name.
nvinfer_version() {
    local lib="${COVIDET_NVINFER_LIB:-}"
    if [ -z "$lib" ]; then
        lib="$(ldconfig -p 2>/dev/null | awk '/libnvinfer\.so\.[0-9]+ /{print $NF; exit}')"
    fi
    [ -n "$lib" ] || return 0
    lib="$(readlink -f "$lib" 2>/dev/null || echo "$lib")"
    echo "${lib##*libnvinfer.so.}"
}

gpu_identity() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader -i 0
    else
        "$PYTHON" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"{p.name}, {p.major}.{p.minor}")'
    fi
}

fingerprint() {
    echo "profile=$PROFILE"
    echo "covidet=$("$PYTHON" -c 'import covidet; print(covidet.__version__)')"
    (cd "$CHECKPOINTS" && sha256sum -- *.pt *.json)
    if [ "$PROFILE" = gpu ]; then
        local trt_py trt_lib
        trt_py="$("$PYTHON" -c 'import tensorrt; print(tensorrt.__version__)')" ||
            die "the tensorrt Python package is missing: the gpu profile builds engines with it (or use COVIDET_PROFILE=gpu-torch)"
        trt_lib="$(nvinfer_version)"
        if [ -z "$trt_lib" ]; then
            log "warning: libnvinfer not found; cannot check that engines match Triton's TensorRT"
        elif [ "$(echo "$trt_py" | cut -d. -f1-3)" != "$(echo "$trt_lib" | cut -d. -f1-3)" ] &&
            [ "${COVIDET_ALLOW_TRT_MISMATCH:-0}" != 1 ]; then
            die "tensorrt Python package $trt_py differs from Triton's TensorRT $trt_lib: engines built with it would not load; rebuild the image with --build-arg TENSORRT_PIP_VERSION=$(echo "$trt_lib" | cut -d. -f1-3)"
        fi
        echo "tensorrt=$trt_py"
        local gpu
        gpu="$(gpu_identity)" || die "no GPU visible: the gpu profile needs one (request nvidia.com/gpu)"
        echo "gpu=$gpu"
    fi
}

FP="$(fingerprint)"
KEY="$(echo "$FP" | sha256sum | cut -c1-16)"
REPO="$CACHE/model_repository-$PROFILE-$KEY"
STAMP="$REPO/.covidet-fingerprint"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$FP" ]; then
    log "reusing $REPO (fingerprint matches: same checkpoints, covidet, GPU and TensorRT)"
else
    TMP="$REPO.tmp.$(hostname).$$"
    rm -rf "$TMP"
    trap 'rm -rf "$TMP"' EXIT # a failed build leaves nothing half-written behind
    log "rendering the $PROFILE model repository into $REPO"
    [ "$PROFILE" != gpu ] || log "building TensorRT engines for this GPU: this takes minutes"
    "$PYTHON" -m covidet.cli export --profile "$PROFILE" --checkpoints "$CHECKPOINTS" --out "$TMP" >&2
    echo "$FP" >"$TMP/.covidet-fingerprint"
    rm -rf "$REPO"
    # another replica sharing the volume may have won the race: keep theirs
    mv -T "$TMP" "$REPO" 2>/dev/null || rm -rf "$TMP"
    trap - EXIT
fi

exec "$PYTHON" - "$REPO" "$@" <<'PY'
"""Replace this process with tritonserver, flags from covidet.serve.TritonServer."""
import json
import os
import sys

from covidet.serve import TritonServer, find_tritonserver

env = os.environ
server = TritonServer(
    sys.argv[1],
    http_port=int(env.get("COVIDET_HTTP_PORT", "8000")),
    grpc_port=int(env.get("COVIDET_GRPC_PORT", "8001")),
    metrics_port=int(env.get("COVIDET_METRICS_PORT", "8002")),
    host=env.get("COVIDET_HOST", "0.0.0.0"),
    exit_timeout_s=int(env.get("COVIDET_EXIT_TIMEOUT_S", "30")),
    extra_args=sys.argv[2:],
)
cmd = server.command()
if env.get("COVIDET_DRY_RUN") == "1":
    print(json.dumps(cmd))
    sys.exit(0)
print(f"[covidet-entrypoint] exec {cmd[0]} ({len(cmd) - 1} arguments)", file=sys.stderr, flush=True)
os.execve(cmd[0], cmd, {**env, **find_tritonserver().env})
PY
