"""What the sync and asyncio clients share: their options, connections and a scan's request."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from covidet import _contract as C
from covidet._codec import CODECS
from covidet.client._core import (
    RetryPolicy,
    build_inputs,
    client_for,
    infer_kwargs,
    protocol_for,
    requested_outputs,
    translate_error,
)
from covidet.client._result import Diagnosis, parse_outputs
from covidet.client._shm import SharedVolume
from covidet.client._volume import Volume
from covidet.errors import CovidetError, InvalidInputError

__all__ = ["ClientBase"]


class ClientBase:
    """Options and per-URL tritonclient connections of `Client` and `AsyncClient`."""

    #: the asyncio flavour of tritonclient (`AsyncClient`)
    _aio = False

    def __init__(
        self,
        url: str | list[str] = "127.0.0.1:8001",
        *,
        protocol: str | None = None,
        timeout_s: float = 300.0,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        shared_memory: bool = False,
        compression: str | None = None,
        admin_headers: Mapping[str, str] | None = None,
        balance: bool = False,
    ) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise InvalidInputError("at least one server URL is needed")
        self.protocol = protocol_for(self.urls[0], protocol)
        self.timeout_s = timeout_s
        self.policy = RetryPolicy(retries, backoff_s, max_backoff_s)
        # the CT through /dev/shm (servers on this machine only); admin_headers unlock the
        # server's shared-memory API when it is restricted
        self._shm = SharedVolume(admin_headers) if shared_memory else None
        # compression: the CT as a lossless zstd frame (CT_COMPRESSED), for a server across a
        # network; never with shared memory, where nothing crosses a wire
        if compression is not None and compression not in CODECS:
            raise InvalidInputError(f"compression must be one of {list(CODECS)} or None, got {compression!r}")
        if compression is not None and shared_memory:
            raise InvalidInputError(
                "compression and shared_memory exclude each other: shared memory sends nothing over the "
                "wire to compress; choose one"
            )
        self.compression = compression
        self._clients: dict[str, Any] = {}
        # balance: each request starts at the next URL (round robin over replicas), then fails
        # over through the others; otherwise the first URL is the primary, the rest its backups
        self.balance = balance
        self._turns = itertools.count()

    def _urls(self) -> list[str]:
        """The URLs one request tries, in order."""
        if not self.balance or len(self.urls) < 2:
            return self.urls
        k = next(self._turns) % len(self.urls)
        return self.urls[k:] + self.urls[:k]

    def _attempts(self) -> Iterator[tuple[str, float]]:
        """One request's attempts, for both clients: ``(url, seconds to wait before it)``. Every
        URL in `_urls` order, ``retries + 1`` rounds, `RetryPolicy.backoff` between rounds."""
        urls = self._urls()
        for attempt in range(self.policy.retries + 1):
            for i, url in enumerate(urls):
                yield url, (self.policy.backoff(attempt - 1) if attempt and i == 0 else 0.0)

    @staticmethod
    def _retryable(exc: Exception) -> CovidetError:
        """``exc`` as covidet's error if a retry may help; raised (from ``exc``) if not."""
        err = translate_error(exc)
        if not err.retryable:
            raise err from exc
        return err

    def _client(self, url: str) -> Any:
        if url not in self._clients:
            self._clients[url] = client_for(url, self.protocol, self.timeout_s, aio=self._aio)
        return self._clients[url]

    def _scan_request(
        self, vol: Volume, return_masks: bool, clinical: Any, explain: bool = False
    ) -> tuple[list[Any], list[Any]]:
        """(inputs, requested outputs) of one `covidet` request. With shared memory the CT is
        written into the client's region here: hold the region's turn until the answer is in."""
        region = None
        if self._shm is not None:
            region = (self._shm.name, self._shm.write(vol.hu.astype(np.int16, copy=False)))
        inputs = build_inputs(
            vol.hu, vol.spacing, return_masks, self.protocol, clinical, region, explain, self.compression
        )
        return inputs, requested_outputs(return_masks, self.protocol, explain)

    def _infer(self, client: Any, model: str, inputs: list[Any], outputs: list[Any], refused: int = 0) -> Any:
        """``client.infer`` (a coroutine for the asyncio flavour) with the per-request timeout.

        ``refused``: the admission refusals this scan met before this attempt, sent as a request
        parameter so that the server counts them once it admits the scan (Triton's queue refuses
        without the pipeline ever seeing the request)."""
        kwargs = dict(infer_kwargs(self.protocol, self.timeout_s, aio=self._aio))
        if refused:
            kwargs["parameters"] = {C.REFUSED_PARAMETER: int(refused)}
        return client.infer(model, inputs, outputs=outputs, **kwargs)

    @staticmethod
    def _diagnosis(result: Any, vol: Volume, started: float) -> Diagnosis:
        latency = time.perf_counter() - started
        return parse_outputs(result.as_numpy, latency_s=latency, source=vol.source, n_slices=vol.n_slices)
