"""One exception hierarchy, chosen by what the caller will do next."""

from __future__ import annotations

__all__ = [
    "CovidetError",
    "InvalidInputError",
    "ModelNotFoundError",
    "NoLungFoundError",
    "PermissionDeniedError",
    "RequestTimeoutError",
    "ServerError",
    "ServerStartError",
    "ServerUnavailableError",
]


class CovidetError(Exception):
    """Root of every covidet error."""

    retryable = False


class InvalidInputError(CovidetError, ValueError):
    """The request was wrong (volume, spacing, clinical data): fix it; retrying will not help."""


class NoLungFoundError(InvalidInputError):
    """The scan contains no lung: check that it is a chest CT in Hounsfield units."""


class ModelNotFoundError(CovidetError):
    """The server does not serve the requested model or version: check the name / deployment."""


class ServerUnavailableError(CovidetError):
    """The server could not be reached or is overloaded: retry later or use another replica."""

    retryable = True


class RequestTimeoutError(ServerUnavailableError):
    """No answer within the deadline: retry, or raise the timeout for very long scans."""


class PermissionDeniedError(CovidetError):
    """The endpoint is locked (admin APIs need the configured header): retrying will not help."""


class ServerError(CovidetError):
    """The server failed while processing a valid request: report it with the server log."""


class ServerStartError(CovidetError):
    """The Triton server could not be started (the message carries the end of its log)."""
