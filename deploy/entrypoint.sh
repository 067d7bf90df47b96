#!/usr/bin/env bash
# covidet container entrypoint.
#
# 1. Render the Triton model repository for $COVIDET_PROFILE from $COVIDET_CHECKPOINTS into the
#    cache volume: `covidet export --profile gpu` exports ONNX and builds the TensorRT engines
#    for THIS node's GPU. The result is reused when its fingerprint (profile, covidet version,
#    checkpoint hashes, GPU model + compute capability, TensorRT version) matches.
# 2. exec `covidet serve` on it: Triton with covidet's server flags (covidet.server.TritonServer)
#    plus this script's arguments (passed after `--`), e.g. the restricted-API and TLS flags that
#    the Helm chart passes. SIGTERM is forwarded: Triton drains in-flight requests.
#
# Environment (defaults in brackets): COVIDET_PROFILE [gpu] (cpu | cpu-int8 | gpu | gpu-torch),
# COVIDET_CHECKPOINTS [/opt/covidet/checkpoints], COVIDET_CACHE_DIR [/var/cache/covidet],
# COVIDET_HOST [0.0.0.0], COVIDET_HTTP_PORT [8000], COVIDET_GRPC_PORT [8001],
# COVIDET_METRICS_PORT [8002], COVIDET_EXIT_TIMEOUT_S [30], COVIDET_PYTHON [python3],
# COVIDET_NVINFER_LIB [found with ldconfig], COVIDET_ALLOW_TRT_MISMATCH [0],
# COVIDET_ADMIN_TOKEN / COVIDET_ADMIN_HEADER [unset / covidet-admin-key], COVIDET_UNLOCKED [0],
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
cpu | cpu-int8 | gpu | gpu-torch) ;;
*) die "COVIDET_PROFILE='$PROFILE' is not a profile: expected cpu, cpu-int8, gpu or gpu-torch" ;;
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

# covidet serve runs Triton (explicit model control, every model loaded), forwards SIGTERM so that
# Triton drains in-flight requests, and reloads any model whose Python-backend stub crashes.
SERVE=(
    "$PYTHON" -m covidet.cli serve
    --model-repository "$REPO"
    --host "${COVIDET_HOST:-0.0.0.0}"
    --http-port "${COVIDET_HTTP_PORT:-8000}"
    --grpc-port "${COVIDET_GRPC_PORT:-8001}"
    --metrics-port "${COVIDET_METRICS_PORT:-8002}"
    --exit-timeout "${COVIDET_EXIT_TIMEOUT_S:-30}"
)
# Admin APIs: locked with $COVIDET_ADMIN_TOKEN (the chart's Secret), else with a token generated
# into the cache volume; COVIDET_UNLOCKED=1 leaves them open.
if [ "${COVIDET_UNLOCKED:-0}" = 1 ]; then
    SERVE+=(--unlocked)
elif [ -z "${COVIDET_ADMIN_TOKEN:-}" ]; then
    SERVE+=(--admin-token-file "$CACHE/admin-token")
fi
[ "${COVIDET_DRY_RUN:-0}" != 1 ] || SERVE+=(--dry-run)
exec "${SERVE[@]}" -- "$@"
