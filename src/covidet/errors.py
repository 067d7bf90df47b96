"""One exception hierarchy, chosen by what the caller will do next.

Every error covidet raises on purpose derives from `CovidetError`; its direct subclasses are the
decisions a caller makes::

    CovidetError                      catch-all (the CLI prints it and exits 2)
    ├── InvalidInputError (ValueError)    fix the request; retrying will not help
    │   ├── VolumeError                       the CT volume / spacing / series
    │   └── NoLungFoundError                  not a chest CT in HU (or no lung in it)
    ├── ModelNotFoundError                fix the model name or the deployment
    ├── ServerUnavailableError            retry later or elsewhere (``retryable``)
    │   ├── RequestTimeoutError
    │   └── ServerBusyError                   at its admission budget: retry after a backoff
    ├── PermissionDeniedError             send the admin header; retrying will not help
    ├── ServerError                       the server failed on a valid request: report it
    ├── ArtifactError                     a model file is bad: rebuild or replace it
    └── DeploymentError                   the setup is wrong: fix configuration / environment
        └── ServerStartError

Modules add their own subclasses under these (`covidet.ensemble.ScanValidationError`,
`covidet.clinical.ClinicalDataError`, `covidet.export.ExportError`, ...). Errors that cross the
wire carry a code (`covidet._contract.ErrorCode`); the client sets it as ``code`` on the error it
raises, so a caller can tell e.g. bad clinical data from a bad volume without reading messages.

Dependency-free (standard library only): the light client imports it.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "CovidetError",
    "DeploymentError",
    "InvalidInputError",
    "ModelNotFoundError",
    "NoLungFoundError",
    "PermissionDeniedError",
    "RequestTimeoutError",
    "ServerBusyError",
    "ServerError",
    "ServerStartError",
    "ServerUnavailableError",
    "VolumeError",
]


class CovidetError(Exception):
    """Root of every covidet error."""

    #: True where the same request may succeed if sent again (later, or to another server).
    retryable = False
    #: The wire error code (a `covidet._contract.ErrorCode` value) when the server sent one.
    code: str | None = None


class InvalidInputError(CovidetError, ValueError):
    """The request was wrong (volume, spacing, clinical data): fix it; retrying will not help."""


class VolumeError(InvalidInputError):
    """The CT volume cannot be used: unreadable, not one CT series, or malformed voxels or spacing
    (the message names the file or the rule it breaks)."""


class NoLungFoundError(InvalidInputError):
    """The scan contains no lung: check that it is a chest CT in Hounsfield units."""


class ModelNotFoundError(CovidetError):
    """The server does not serve the requested model or version: check the name / deployment."""


class ServerUnavailableError(CovidetError):
    """The server could not be reached or is overloaded: retry later or use another replica."""

    retryable = True


class RequestTimeoutError(ServerUnavailableError):
    """No answer within the deadline: retry, or raise the timeout for very long scans."""


class ServerBusyError(ServerUnavailableError):
    """The server holds as many scans as its memory budget allows and refused this one at once:
    retry after a backoff, or send it to another replica."""


class PermissionDeniedError(CovidetError):
    """The endpoint is locked (admin APIs need the configured header): retrying will not help."""


class ServerError(CovidetError):
    """The server failed while processing a valid request: report it with the server log."""


class ArtifactError(CovidetError):
    """A model artifact (checkpoint, clinical model file, exported graph) is missing, malformed,
    tampered with or fails its numerical check: rebuild or replace the file the message names."""


class DeploymentError(CovidetError):
    """The server side cannot be set up as asked (rendering the model repository, a missing tool
    or runtime): fix the configuration or install what the message names; retrying will not help."""


class ServerStartError(DeploymentError):
    """The Triton server could not be started (the message carries the end of its log)."""
