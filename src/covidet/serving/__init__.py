"""Server-side runtime: the scan pipeline and the slice-model runtimes used by the Triton models.

Importable and unit-testable without Triton; the `model.py` files in `model_repository/` only
adapt tensors to these classes.
"""

from __future__ import annotations

from covidet.serving._bls import FALLBACK_WARNING, BlsInfer
from covidet.serving._memory import limit_torch_threads, release_free_memory, usable_cores
from covidet.serving._metrics import PipelineMetrics
from covidet.serving._orchestrator import (
    DEFAULT_INFLIGHT_CHUNKS,
    PIPELINE_CONFIG_FILE,
    InferFn,
    PipelineConfig,
    ScanOutputs,
    ScanPipeline,
)
from covidet.serving._runtime import (
    COMPILE_BUCKETS,
    InProcessModels,
    OnnxRunner,
    Runner,
    TorchRunner,
    make_runner,
    run_sequence,
)

__all__ = [
    "COMPILE_BUCKETS",
    "DEFAULT_INFLIGHT_CHUNKS",
    "FALLBACK_WARNING",
    "PIPELINE_CONFIG_FILE",
    "BlsInfer",
    "InProcessModels",
    "InferFn",
    "OnnxRunner",
    "PipelineConfig",
    "PipelineMetrics",
    "Runner",
    "ScanOutputs",
    "ScanPipeline",
    "StepUnavailableError",
    "TorchRunner",
    "bls_error",
    "classify_error",
    "limit_torch_threads",
    "make_runner",
    "release_free_memory",
    "run_sequence",
    "usable_cores",
]


#: Triton's words for a step that is down for now (a crashed stub being reloaded, a model
#: unloading or not yet loaded, the server shutting down): the scan was not processed and a retry
#: (here or on another replica) will succeed.
_TRANSIENT = (
    "is not healthy",
    "not ready",
    "unavailable",
    "unknown model",
    "is not found",
    "no available versions",
)


class StepUnavailableError(RuntimeError):
    """A model the pipeline calls is down for now (restarting or reloading): retry the scan."""


def bls_error(model: str, message: str) -> RuntimeError:
    """The exception for a failed BLS call to ``model``: transient (retryable) or internal."""
    if any(word in message.lower() for word in _TRANSIENT):
        return StepUnavailableError(f"{model} is restarting or reloading ({message})")
    return RuntimeError(f"{model}: {message}")


def classify_error(exc: BaseException) -> tuple[str, str]:
    """Map a pipeline exception to a Triton error code name and a message for the caller.

    Input problems (``ValueError``: validation, no lung found) are the caller's to fix and map to
    INVALID_ARG; a step that is restarting maps to UNAVAILABLE (retryable); anything else is the
    server's fault (INTERNAL) and says so.
    """
    if isinstance(exc, ValueError):
        return "INVALID_ARG", str(exc)
    if isinstance(exc, StepUnavailableError):
        return "UNAVAILABLE", f"{exc}; the scan was not processed — retry in a few seconds"
    return "INTERNAL", (
        f"internal error in the covidet pipeline ({type(exc).__name__}: {exc}); "
        "the request was not processed — retry, and report it if it persists"
    )
