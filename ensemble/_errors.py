"""Exceptions of the pipeline logic, and how a failed request is reported on the wire.

Input errors are `covidet.errors.InvalidInputError`s (so also ``ValueError``s): the caller's input
was wrong. A step that is down for now is a retryable `covidet.errors.ServerUnavailableError`; a step
that failed otherwise is a `covidet.errors.ServerError`.
"""

from __future__ import annotations

from covidet import _contract as C
from covidet.errors import (
    InvalidInputError,
    NoLungFoundError,
    ServerError,
    ServerUnavailableError,
    VolumeError,
)

__all__ = [
    "NoLungError",
    "PipelineError",
    "ScanValidationError",
    "StepFailedError",
    "StepUnavailableError",
    "bls_error",
    "classify_error",
    "error_code",
]


class PipelineError(InvalidInputError):
    """Root of the pipeline's input errors (INVALID_ARG on the wire, with a covidet code)."""


class ScanValidationError(PipelineError, VolumeError):
    """The CT volume or its spacing is malformed (``INVALID_VOLUME``)."""


class NoLungError(PipelineError, NoLungFoundError):
    """No lung was found in the scan (``NO_LUNG``)."""


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


class StepUnavailableError(ServerUnavailableError, RuntimeError):
    """A model the pipeline calls is down for now (restarting or reloading): retry the scan."""


class StepFailedError(ServerError, RuntimeError):
    """A model the pipeline calls failed on this scan: a server fault (``INTERNAL``)."""


def bls_error(model: str, message: str) -> RuntimeError:
    """The exception for a failed BLS call to ``model``: transient (retryable) or internal."""
    if any(word in message.lower() for word in _TRANSIENT):
        return StepUnavailableError(f"{model} is restarting or reloading ({message})")
    return StepFailedError(f"{model}: {message}")


#: Exception class -> wire code, most specific first (the first match wins).
_CODES: tuple[tuple[type[BaseException], C.ErrorCode], ...] = (
    (NoLungFoundError, C.ErrorCode.NO_LUNG),
    (VolumeError, C.ErrorCode.INVALID_VOLUME),
    (InvalidInputError, C.ErrorCode.INVALID_INPUT),
    (ServerUnavailableError, C.ErrorCode.STEP_UNAVAILABLE),
)


def error_code(exc: BaseException) -> C.ErrorCode:
    """The wire code of an exception raised while serving a request (INTERNAL if not an input
    error or a step that is down)."""
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return C.ErrorCode.INTERNAL


def classify_error(exc: BaseException) -> tuple[str, str]:
    """Map a pipeline exception to a Triton error code name and a message for the caller.

    The message carries the covidet code (`covidet._contract.error_message`), which the client
    maps back to its exception classes. Input problems (`covidet.errors.InvalidInputError`:
    validation, no lung found) are the caller's to fix and map to INVALID_ARG; a step that is
    restarting maps to UNAVAILABLE (retryable); anything else is the server's fault (INTERNAL) and
    says so.
    """
    code = error_code(exc)
    if code is C.ErrorCode.STEP_UNAVAILABLE:
        text = f"{exc}; the scan was not processed — retry in a few seconds"
    elif code is C.ErrorCode.INTERNAL:
        text = (
            f"internal error in the covidet pipeline ({type(exc).__name__}: {exc}); "
            "the request was not processed — retry, and report it if it persists"
        )
    else:
        text = str(exc)
    return code.triton_status, C.error_message(code, text)
