"""Exceptions of the pipeline logic. All are ValueErrors: the caller's input was wrong."""

from __future__ import annotations

__all__ = [
    "NoLungError",
    "PipelineError",
    "ScanValidationError",
    "StepUnavailableError",
    "bls_error",
    "classify_error",
]


class PipelineError(ValueError):
    """Root of the pipeline's input errors (mapped to INVALID_ARGUMENT by the server)."""


class ScanValidationError(PipelineError):
    """The CT volume or its spacing is malformed."""


class NoLungError(PipelineError):
    """No lung was found in the scan."""


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
