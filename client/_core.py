"""The request/response core shared by the sync and asyncio clients: server addresses, requests,
retry policy, and error translation (one place)."""

from __future__ import annotations

import random
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from covidet import _contract as C
from covidet.errors import (
    CovidetError,
    InvalidInputError,
    ModelNotFoundError,
    NoLungFoundError,
    PermissionDeniedError,
    RequestTimeoutError,
    ServerBusyError,
    ServerError,
    ServerUnavailableError,
    VolumeError,
)

__all__ = [
    "CLIENT_OPTIONS",
    "RetryPolicy",
    "build_inputs",
    "client_for",
    "infer_inputs",
    "protocol_for",
    "requested_outputs",
    "translate_error",
]

#: gRPC message limit: a 1000 x 512 x 512 int16 volume is 500 MiB, masks as much again.
GRPC_MAX_MESSAGE_BYTES = 2**31 - 1


#: keyword options of `Client` / `AsyncClient` (the one-shot `diagnose` passes these to the client)
CLIENT_OPTIONS = (
    "protocol",
    "timeout_s",
    "retries",
    "backoff_s",
    "max_backoff_s",
    "shared_memory",
    "compression",
    "admin_headers",
    "balance",
)


def protocol_for(url: str, protocol: str | None) -> str:
    """The protocol asked for, else the URL's: an http(s):// scheme or port 8000 is HTTP."""
    if protocol:
        return protocol
    if url.startswith(("http://", "https://")) or url.rsplit(":", 1)[-1] == "8000":
        return "http"
    return "grpc"


def _strip_scheme(url: str) -> str:
    for scheme in ("http://", "https://", "grpc://"):
        if url.startswith(scheme):
            return url[len(scheme) :]
    return url


def client_for(url: str, protocol: str, timeout_s: float, *, aio: bool = False) -> Any:
    """A tritonclient client for ``url`` (its asyncio flavour with ``aio``): gRPC with message
    limits raised for whole CT volumes, HTTP with ``timeout_s`` on the connection."""
    target = _strip_scheme(url)
    if protocol == "grpc":
        if aio:
            import tritonclient.grpc.aio as grpc_mod
        else:
            import tritonclient.grpc as grpc_mod  # type: ignore[no-redef]
        limits = [
            ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES),
        ]
        return grpc_mod.InferenceServerClient(target, channel_args=limits)
    if aio:  # the asyncio HTTP client has no read timeout: the caller bounds each call
        import tritonclient.http.aio as http_aio

        return http_aio.InferenceServerClient(target, conn_timeout=timeout_s)
    import tritonclient.http as http_mod

    return http_mod.InferenceServerClient(target, connection_timeout=timeout_s, network_timeout=timeout_s)


@dataclass(frozen=True)
class RetryPolicy:
    """Retryable failures are retried ``retries`` times over all URLs, waiting `backoff` between
    rounds."""

    retries: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed round ``attempt`` (0-based): doubling, capped, +-25% jitter.

        With the defaults (5 retries, 0.5 s doubling to at most 8 s) a scan rides out about 15 s
        of outage: a replica restarting elsewhere, a crashed model step being reloaded.
        """
        base = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        return base * random.uniform(0.75, 1.25)  # jitter: retries of many clients spread out


def infer_kwargs(protocol: str, timeout_s: float, *, aio: bool = False) -> Mapping[str, Any]:
    """The per-request timeout as each tritonclient flavour takes it (none for asyncio HTTP,
    whose calls the caller bounds itself)."""
    if protocol == "grpc":
        return {"client_timeout": timeout_s}
    return {} if aio else {"timeout": int(timeout_s * 1e6)}


def _module(protocol: str) -> Any:
    if protocol == "grpc":
        import tritonclient.grpc as mod
    elif protocol == "http":
        import tritonclient.http as mod
    else:
        raise ValueError(f"protocol must be 'grpc' or 'http', got {protocol!r}")
    return mod


def build_inputs(
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    return_masks: bool,
    protocol: str,
    clinical: np.ndarray | None = None,
    ct_region: tuple[str, int] | None = None,
    explain: bool = False,
    compression: str | None = None,
) -> list[Any]:
    """InferInputs for the `covidet` ensemble, names and dtypes from the contract.

    With ``ct_region`` (name, byte size of a registered shared-memory region holding ``hu``) the
    CT input names the region instead of carrying the voxels; with ``compression`` ("zstd") the
    voxels go as a CT_COMPRESSED frame (`covidet._codec`) instead of CT. EXPLAIN is sent only
    when asked for: a plain request is the same as before the explanation existed.
    """
    ct, sp, masks, clin, why, packed = (
        C.ENSEMBLE.input(n) for n in ("CT", "SPACING", "RETURN_MASKS", "CLINICAL", "EXPLAIN", "CT_COMPRESSED")
    )
    arrays: list[tuple[C.TensorSpec, np.ndarray]] = [
        (sp, np.asarray(spacing, dtype=np.float32).reshape(3)),
        (masks, np.array([bool(return_masks)])),
    ]
    if explain:
        arrays.append((why, np.array([True])))
    if clinical is not None:
        values = np.asarray(clinical, dtype=np.float32).reshape(-1)
        if values.shape != clin.dims:
            raise InvalidInputError(
                f"clinical data must have {clin.dims[0]} values in covidet.clinical.CLINICAL_SCHEMA "
                f"order (NaN for a missing lab value), got {values.shape[0]}"
            )
        arrays.append((clin, values))
    if compression is not None:
        from covidet._codec import encode_volume

        frame = np.array([encode_volume(np.ascontiguousarray(hu, dtype=np.int16))], dtype=object)
        return infer_inputs([(packed, frame), *arrays], protocol)
    if ct_region is None:
        return infer_inputs([(ct, np.ascontiguousarray(hu, dtype=np.int16)), *arrays], protocol)
    shared = _module(protocol).InferInput(ct.name, list(hu.shape), ct.dtype)
    shared.set_shared_memory(*ct_region)
    return [shared, *infer_inputs(arrays, protocol)]


def infer_inputs(pairs: list[tuple[C.TensorSpec, np.ndarray]], protocol: str) -> list[Any]:
    """tritonclient InferInputs for (contract tensor, array) pairs (HTTP: binary data)."""
    mod = _module(protocol)
    inputs = []
    for spec, arr in pairs:
        inp = mod.InferInput(spec.name, list(arr.shape), spec.dtype)
        if protocol == "http":
            inp.set_data_from_numpy(arr, binary_data=True)
        else:
            inp.set_data_from_numpy(arr)
        inputs.append(inp)
    return inputs


def requested_outputs(return_masks: bool, protocol: str, explain: bool = False) -> list[Any]:
    """The ensemble outputs a request asks for: the masks only with ``return_masks``, the
    explanation (`covidet._contract.EXPLAIN_OUTPUTS`) only with ``explain``."""
    mod = _module(protocol)
    outs = []
    for spec in C.ENSEMBLE.outputs:
        if spec.name in C.EXPLAIN_OUTPUTS:
            if not explain:
                continue
        elif spec.dtype == "UINT8" and not return_masks:
            continue
        if protocol == "http":
            outs.append(mod.InferRequestedOutput(spec.name, binary_data=True))
        else:
            outs.append(mod.InferRequestedOutput(spec.name))
    return outs


#: The exception raised for each covidet error code a server sends (`covidet._contract.ErrorCode`).
_CODE_ERRORS: dict[C.ErrorCode, type[CovidetError]] = {
    C.ErrorCode.INVALID_VOLUME: VolumeError,
    C.ErrorCode.NO_LUNG: NoLungFoundError,
    C.ErrorCode.INVALID_CLINICAL: InvalidInputError,
    C.ErrorCode.INVALID_SERIES: InvalidInputError,
    C.ErrorCode.INVALID_INPUT: InvalidInputError,
    C.ErrorCode.STEP_UNAVAILABLE: ServerUnavailableError,
    C.ErrorCode.INTERNAL: ServerError,
}


def translate_error(exc: BaseException) -> CovidetError:
    """Map a tritonclient / transport exception to covidet's hierarchy (use ``raise ... from``).

    A covidet model's error carries a code (`covidet._contract.parse_error_message`): it picks the
    class and is kept as the error's ``code``. Errors without one come from Triton itself or the
    transport, and are classified by their status. The new error's ``__cause__`` is ``exc``, also
    where a caller raises it later (after the retries) without ``from``.
    """
    if isinstance(exc, CovidetError):
        return exc
    err = _translate(exc)
    err.__cause__ = exc
    return err


def _translate(exc: BaseException) -> CovidetError:
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        status = str(exc.status() or "")
        code, msg = C.parse_error_message(str(exc.message() or exc))
        if code is not None:
            err = _CODE_ERRORS[code](msg)
            err.code = code
            return err
        low = msg.lower()
        if "protocol is restricted" in low or ("restricted" in low and "header" in low):
            # Triton answers a locked admin endpoint with UNAVAILABLE: retrying cannot help
            return PermissionDeniedError(
                f"{msg} — this endpoint is locked; send the admin header configured on the server"
            )
        if "INVALID_ARGUMENT" in status or status == "400" or "invalid argument" in low[:40]:
            return InvalidInputError(msg)
        if "exceeds maximum queue size" in low:  # the server's admission bound (--max-inflight-bytes)
            return ServerBusyError(
                f"{msg} — the server holds as many scans as its memory budget allows; retry after a "
                "backoff, or send to another replica"
            )
        if "no available versions" in low:  # the model is (un)loading: a restart or a reload
            return ServerUnavailableError(f"{msg} — the model is loading or unloading; retry shortly")
        if "NOT_FOUND" in status or status == "404" or "unknown model" in low or "is not found" in low:
            return ModelNotFoundError(f"{msg} — check the model name, or that the server finished loading")
        if "DEADLINE_EXCEEDED" in status or "timed out" in low or "timeout" in low:
            return RequestTimeoutError(f"{msg} — retry, or raise timeout_s for long scans")
        if (
            "UNAVAILABLE" in status
            or ("stub process" in low and "is not healthy" in low)  # a crashed step, being reloaded
            or status in ("502", "503")
            or "failed to connect" in low
            or "connection refused" in low
        ):
            return ServerUnavailableError(f"{msg} — is the server running? retry or try another URL")
        if "RESOURCE_EXHAUSTED" in status or status == "413":
            return InvalidInputError(f"{msg} — the request is larger than the server accepts")
        return ServerError(f"server error ({status or 'no status'}): {msg}")
    if isinstance(exc, (ConnectionError, socket.timeout, TimeoutError, OSError)) or _is_aiohttp_error(exc):
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return RequestTimeoutError(f"request timed out: {exc}")
        return ServerUnavailableError(
            f"cannot reach the server: {exc} — is it running? retry or try another URL"
        )
    return ServerError(f"unexpected client error {type(exc).__name__}: {exc}")


def _is_aiohttp_error(exc: BaseException) -> bool:
    """A transport failure of the asyncio HTTP client (aiohttp's own errors, imported only if
    that client is in use)."""
    import sys

    aiohttp = sys.modules.get("aiohttp")
    return aiohttp is not None and isinstance(exc, aiohttp.ClientError)
