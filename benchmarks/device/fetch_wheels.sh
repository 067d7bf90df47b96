#!/usr/bin/env bash
# Run HERE (with the package registry) before the served GPU check: downloads the wheels that the
# GPU machine's image lacks for Python 3.12 into .whl/ (ignored by git, carried by the device
# tool). Two sets, one per device call, each under the 64 MiB a call may carry:
#   .whl/server  nvidia-pytriton (the Triton server, 55 MB)
#   .whl/client  numpy<2 (the Python backend needs it; the image has numpy 2), tritonclient and
#                the versions of its needs that covidet is tested with
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
mkdir -p .whl/server .whl/client
dl() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$@"
}
dl .whl/server nvidia-pytriton==0.7.0
dl .whl/client numpy==1.26.4 tritonclient==2.73.0 python-rapidjson==1.25 grpcio==1.85.3 protobuf==6.33.6
du -sh .whl/server .whl/client
