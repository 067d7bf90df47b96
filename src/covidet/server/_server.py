"""Start, watch and stop a Triton server process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from covidet import _contract as C
from covidet.errors import ServerStartError
from covidet.server._binary import find_tritonserver

__all__ = ["MIN_CUDA_POOL_BYTES", "TritonServer", "cuda_pool_bytes", "free_port", "free_ports"]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bound to port 0, then released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def free_port() -> int:
    return free_ports(1)[0]


#: Triton's CUDA memory pool when the pipeline hands slice tensors over on the GPU is sized for
#: the chunks that can be in flight (`cuda_pool_bytes`), never below this.
MIN_CUDA_POOL_BYTES = 256 * 2**20
#: Pool bytes per chunk in flight, in units of its input and output: the input handed over (a
#: copy in the pool), the dynamic batcher's gathered batch of it, and the output asked for in GPU
#: memory. An estimate from how the Python backend moves GPU tensors, with 25% on top.
_POOL_COPIES_IN, _POOL_COPIES_OUT, _POOL_HEADROOM = 2, 1, 1.25


def _pipeline_instances(repository: Path) -> int:
    """The pipeline step's instance count in its rendered config.pbtxt (1 if it says none)."""
    path = repository / C.PIPELINE.name / "config.pbtxt"
    if not path.is_file():
        return 1
    text = path.read_text()
    found = re.search(r"^\s*count:\s*(\d+)", text, re.MULTILINE)
    return int(found.group(1)) if found else 1


def _slice_bytes(spec: C.ModelSpec, hw: Sequence[int]) -> int:
    """Pool bytes one slice of ``spec`` takes in flight (FP32 images of ``hw``; vectors ignored)."""
    total = 0
    for tensor, copies in ((spec.inputs[0], _POOL_COPIES_IN), (spec.outputs[0], _POOL_COPIES_OUT)):
        if len(tensor.dims) == 3:  # [channels, rows, columns]
            total += copies * tensor.dims[0] * int(hw[0]) * int(hw[1]) * 4
    return total


def cuda_pool_bytes(repository: Path) -> tuple[int, int] | None:
    """Triton's CUDA memory pool for ``repository``, as (GPU index, bytes): None unless its
    pipeline hands slice tensors to BLS on a CUDA device (`PipelineConfig.device_tensors`).

    GPU tensors between the pipeline and the slice models travel through this pool; exhausted,
    the Python backend answers empty tensors (`covidet.ensemble.BlsInfer` then falls back to host
    memory for a while). Sized for every pipeline instance in its hungriest stage: the lung
    model's chunks in flight, or the lesion model's beside the classifier's and the encoder's
    selected slices (`tests/server/test_serve_main.py` works the numbers through).
    """
    from covidet.ensemble import PipelineConfig
    from covidet.preprocessing import PreprocessingRecord, SliceRecord

    try:
        config = PipelineConfig.from_repository(repository)
        instances = _pipeline_instances(repository)
    except (OSError, ValueError, KeyError):  # not a covidet repository: Triton's defaults
        return None
    if not (config.device_tensors and str(config.device or "").startswith("cuda")):
        return None

    def record(spec: C.ModelSpec) -> PreprocessingRecord | None:
        try:
            return config.record(spec.name)
        except KeyError:  # a model without checkpoint metadata: nothing to size it by
            return None

    def per_slice(spec: C.ModelSpec) -> int:
        size = getattr(record(spec), "input_size", None)
        return _slice_bytes(spec, size) if size else 0

    streamed = max(1, config.max_inflight_chunks) * config.slice_batch  # slices in flight
    slices = record(C.SLICE_CLASSIFIER)
    selected = slices.n_slices if isinstance(slices, SliceRecord) else 0
    lung = streamed * per_slice(C.LUNG_SEG)
    rest = streamed * per_slice(C.LESION_SEG)
    rest += selected * (per_slice(C.SLICE_CLASSIFIER) + per_slice(C.SLICE_ENCODER))
    need = int(instances * max(lung, rest) * _POOL_HEADROOM)
    step = 2**20  # whole MiB
    index = str(config.device).partition(":")[2]
    return (int(index) if index.isdigit() else 0), max(MIN_CUDA_POOL_BYTES, -(-need // step) * step)


class TritonServer:
    """A Triton server process serving ``model_repository``; a context manager."""

    def __init__(
        self,
        model_repository: Path | str,
        *,
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
        log_file: Path | str | None = None,
        log_verbose: int = 0,
        model_control_mode: str = "none",
        exit_timeout_s: int = 30,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.host = host
        self.extra_args = list(extra_args)
        self.log_verbose = log_verbose
        self.model_control_mode = model_control_mode
        self.exit_timeout_s = exit_timeout_s
        if log_file is None:
            fd, name = tempfile.mkstemp(prefix="covidet-triton-", suffix=".log")
            os.close(fd)
            log_file = name
        self.log_file = Path(log_file)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        # Python-backend stubs talk to Triton through /dev/shm regions that a killed server
        # leaves behind (64 MiB+ each); a per-server prefix lets us remove exactly ours.
        self.shm_prefix = f"covidet_{uuid.uuid4().hex[:12]}_"

    @classmethod
    def on_free_ports(cls, model_repository: Path | str, **kwargs: Any) -> TritonServer:
        """A server on three free ports of 127.0.0.1 (tests, bench, local tools); ``kwargs`` as for
        the constructor."""
        http, grpc, metrics = free_ports(3)
        return cls(model_repository, http_port=http, grpc_port=grpc, metrics_port=metrics, **kwargs)

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        binary = find_tritonserver()
        cmd = [
            str(binary.executable),
            f"--model-repository={self.model_repository}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--model-control-mode={self.model_control_mode}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--log-verbose={self.log_verbose}",
            # CT volumes are ~150 MB: room for a few in flight
            "--pinned-memory-pool-byte-size=536870912",
            "--backend-config=python,shm-default-byte-size=67108864",
            "--backend-config=python,shm-growth-byte-size=67108864",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            "--strict-readiness=true",
            # Triton keeps up to 8 gRPC request states for reuse, each holding the capacity of its
            # last request (a 300-slice CT: 150 MB): 1.2 GB kept after a burst. Free them instead.
            "--grpc-infer-allocation-pool-size=0",
        ]
        pool = cuda_pool_bytes(self.model_repository)
        if pool is not None:  # Triton's default is 64 MB
            cmd.append(f"--cuda-memory-pool-byte-size={pool[0]}:{pool[1]}")
        if self.model_control_mode == "explicit":
            cmd.append("--load-model=*")
        if binary.backend_dir:
            cmd.append(f"--backend-directory={binary.backend_dir}")
        return cmd + self.extra_args

    def start(self) -> TritonServer:
        binary = find_tritonserver()
        env = {**os.environ, **binary.env}
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        return self

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError):
            return 0

    def is_ready(self, model: str | None = C.ENSEMBLE.name) -> bool:
        if self._get("/v2/health/ready") != 200:
            return False
        return model is None or self._get(f"/v2/models/{model}/ready") == 200

    def wait_ready(self, model: str | None = C.ENSEMBLE.name, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise ServerStartError(
                    f"Triton exited (code {code}) before becoming ready; log {self.log_file}:\n"
                    + self.log_tail()
                )
            if self.is_ready(model):
                return
            time.sleep(0.25)
        raise ServerStartError(
            f"Triton not ready after {timeout:.0f} s; log {self.log_file}:\n" + self.log_tail()
        )

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM (Triton finishes in-flight requests), then SIGKILL after ``grace_s``."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._remove_shm()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the server and its backend stubs at once (fault tests: a crashed replica)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._remove_shm()

    def shm_regions(self) -> list[Path]:
        """This server's Python-backend shared-memory regions in /dev/shm."""
        shm = Path("/dev/shm")
        return sorted(shm.glob(self.shm_prefix + "*")) if shm.is_dir() else []

    def _remove_shm(self) -> None:
        """Remove the regions a stopped server leaves (after a SIGKILL, or stubs killed late)."""
        if self.process is None or self.process.poll() is None:
            return
        for region in self.shm_regions():
            region.unlink(missing_ok=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
