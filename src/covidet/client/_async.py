"""The asyncio client: `Client`'s options, results and errors, for asyncio applications.

Many scans can be in flight from one event loop (``asyncio.gather`` or `AsyncClient.diagnose_many`)
without a thread each. Requests, retry policy, result parsing and error translation are the
sync client's (`covidet.client._core`); only the waiting differs. Reading a DICOM folder or NIfTI
file is blocking work and runs in a worker thread, so the loop keeps serving other scans.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

from covidet import _contract as C
from covidet.client._core import (
    RetryPolicy,
    client_for,
    diagnosis_request,
    infer_inputs,
    infer_kwargs,
    protocol_for,
    translate_error,
)
from covidet.client._forecast import Forecast, ForecastRequest
from covidet.client._result import Diagnosis, parse_outputs
from covidet.client._shm import SharedVolume
from covidet.client._volume import Volume, load_volume
from covidet.errors import CovidetError, InvalidInputError

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient:
    """asyncio covidet client; ``url`` may be a list (fail-over). Use ``async with``.

    The options are `Client`'s: ``timeout_s`` bounds each attempt, retryable failures are retried
    with jittered exponential backoff over all URLs, ``shared_memory`` passes the CT through
    /dev/shm to a server on this machine (one region per client: its shared-memory requests take
    turns, the others run concurrently).
    """

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
        admin_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise InvalidInputError("at least one server URL is needed")
        self.protocol = protocol_for(self.urls[0], protocol)
        self.timeout_s = timeout_s
        self.policy = RetryPolicy(retries, backoff_s, max_backoff_s)
        self._shm = SharedVolume(admin_headers) if shared_memory else None
        self._shm_turn = asyncio.Lock()
        self._clients: dict[str, Any] = {}

    def _client(self, url: str) -> Any:
        if url not in self._clients:
            self._clients[url] = client_for(url, self.protocol, self.timeout_s, aio=True)
        return self._clients[url]

    async def _call(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Await ``fn(client)`` with retries (retryable errors only) and fail-over across URLs,
        each attempt bounded by ``timeout_s``."""
        last: CovidetError | None = None
        for attempt in range(self.policy.retries + 1):
            for url in self.urls:
                try:
                    return await asyncio.wait_for(fn(self._client(url)), self.timeout_s)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    err = translate_error(exc)
                    if not err.retryable:
                        raise err from exc
                    last = err
            if attempt < self.policy.retries:
                await asyncio.sleep(self.policy.backoff(attempt))
        assert last is not None
        raise last

    async def is_ready(self, model: str = C.ENSEMBLE.name) -> bool:
        try:
            return bool(await self._call(lambda c: c.is_model_ready(model)))
        except CovidetError:
            return False

    async def diagnose(
        self,
        source: Any,
        *,
        spacing: Any = None,
        return_masks: bool = False,
        clinical: Any = None,
        model: str = C.ENSEMBLE.name,
    ) -> Diagnosis:
        """Diagnose one scan, as `Client.diagnose`: a numpy HU volume (with ``spacing``), a NIfTI
        file or a DICOM folder (read in a worker thread)."""
        if isinstance(source, np.ndarray):
            vol: Volume = load_volume(source, spacing)
        else:
            vol = await asyncio.to_thread(load_volume, source, spacing)
        t0 = time.perf_counter()
        if self._shm is None:
            inputs, outputs = diagnosis_request(
                vol.hu, vol.spacing, return_masks=return_masks, protocol=self.protocol, clinical=clinical
            )
            result = await self._call(lambda client: self._infer(client, model, inputs, outputs))
        else:
            shm = self._shm
            async with self._shm_turn:
                hu = vol.hu.astype(np.int16, copy=False)
                if hu.nbytes > shm.size:  # the region grows: the servers forget the old one first
                    await shm.unregister_async()
                region = (shm.name, shm.write(hu))
                inputs, outputs = diagnosis_request(
                    vol.hu,
                    vol.spacing,
                    return_masks=return_masks,
                    protocol=self.protocol,
                    clinical=clinical,
                    ct_region=region,
                )

                async def infer(client: Any) -> Any:
                    await shm.register_async(client)
                    return await self._infer(client, model, inputs, outputs)

                result = await self._call(infer)
        latency = time.perf_counter() - t0
        return parse_outputs(result.as_numpy, latency_s=latency, source=vol.source, n_slices=vol.n_slices)

    def _infer(self, client: Any, model: str, inputs: list[Any], outputs: list[Any]) -> Awaitable[Any]:
        kwargs = infer_kwargs(self.protocol, self.timeout_s, aio=True)
        return client.infer(model, inputs, outputs=outputs, **kwargs)  # type: ignore[no-any-return]

    async def forecast(
        self,
        days: Any,
        ratios: Any,
        query_days: Any = None,
        *,
        levels: Any = (),
        horizon_days: float = 14.0,
    ) -> Forecast:
        """Fit the patient's course on the server (GPR, DL#5) and forecast it, as `Client.forecast`."""
        req = ForecastRequest.of(days, ratios, query_days, levels=levels, horizon_days=horizon_days)
        inputs = infer_inputs(req.inputs(), self.protocol)
        result = await self._call(lambda c: c.infer(C.PROGRESSION_GPR.name, inputs))
        return req.result(result.as_numpy)

    async def diagnose_many(
        self, sources: Iterable[Any], *, concurrency: int = 4, **kwargs: Any
    ) -> AsyncIterator[Diagnosis]:
        """Diagnose ``sources`` with up to ``concurrency`` scans in flight; results in the order
        of ``sources``. A failure is raised when its turn comes, after the scans before it."""
        if concurrency < 1:
            raise InvalidInputError(f"concurrency must be >= 1, got {concurrency}")
        pending: list[asyncio.Task[Diagnosis]] = []
        try:
            for source in sources:
                pending.append(asyncio.create_task(self.diagnose(source, **kwargs)))
                if len(pending) >= concurrency:
                    yield await pending.pop(0)
            while pending:
                yield await pending.pop(0)
        finally:
            for task in pending:  # the caller stopped early, or one failed: the rest are dropped
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        if self._shm is not None:
            async with self._shm_turn:
                await self._shm.unregister_async()
                self._shm.close()
        clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            try:
                await c.close()
            except Exception:  # closing is best effort
                pass

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
