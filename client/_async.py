"""The asyncio client: `Client`'s options, results and errors, for asyncio applications.

Many scans can be in flight from one event loop (``asyncio.gather`` or `AsyncClient.diagnose_many`)
without a thread each. Requests, retry policy, result parsing and error translation are the
sync client's (`covidet.client._core`); only the waiting differs. Reading a DICOM folder or NIfTI
file is blocking work and runs in a worker thread, so the loop keeps serving other scans.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import numpy as np

from covidet import _contract as C
from covidet.client._base import ClientBase
from covidet.client._core import infer_inputs
from covidet.client._forecast import Forecast, ForecastRequest
from covidet.client._result import Diagnosis
from covidet.client._volume import Volume, load_volume
from covidet.errors import CovidetError, InvalidInputError, ServerBusyError

__all__ = ["AsyncClient", "ordered_map"]

T = TypeVar("T")
U = TypeVar("U")


async def ordered_map(
    fn: Callable[[U], Awaitable[T]], items: Iterable[U], concurrency: int
) -> AsyncIterator[T]:
    """``await fn(item)`` for each item, up to ``concurrency`` at a time, yielded in the items'
    order. A failure is raised in its turn; the calls still in flight are then cancelled (and
    awaited), as they are when the caller stops iterating early."""
    if concurrency < 1:
        raise InvalidInputError(f"concurrency must be >= 1, got {concurrency}")
    pending: list[asyncio.Task[T]] = []
    try:
        for item in items:
            pending.append(asyncio.ensure_future(fn(item)))
            if len(pending) >= concurrency:
                yield await pending.pop(0)
        while pending:
            yield await pending.pop(0)
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


class AsyncClient(ClientBase):
    """asyncio covidet client; ``url`` may be a list (fail-over). Use ``async with``.

    The options are `Client`'s (``timeout_s`` here bounds each attempt, connection included).
    With ``shared_memory`` there is one region per client: its scans take turns, while scans of
    a client without it run concurrently.
    """

    _aio = True
    _turn: asyncio.Lock | None = None  # the shared-memory region's turn, made on first use

    def _shm_turn(self) -> asyncio.Lock:
        if self._turn is None:
            self._turn = asyncio.Lock()
        return self._turn

    async def _call(self, fn: Callable[[Any, int], Awaitable[T]]) -> T:
        """Await ``fn(client, refused)`` with retries (retryable errors only) and fail-over across
        URLs, each attempt bounded by ``timeout_s``; ``refused`` as for `Client`."""
        last: CovidetError | None = None
        refused = 0
        for url, wait in self._attempts():
            if wait:
                await asyncio.sleep(wait)
            try:
                return await asyncio.wait_for(fn(self._client(url), refused), self.timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                last = self._retryable(exc)
                refused += isinstance(last, ServerBusyError)
        assert last is not None
        raise last

    async def is_ready(self, model: str = C.ENSEMBLE.name) -> bool:
        try:
            return bool(await self._call(lambda c, _: c.is_model_ready(model)))
        except CovidetError:
            return False

    async def diagnose(
        self,
        source: Any,
        *,
        spacing: Any = None,
        return_masks: bool = False,
        clinical: Any = None,
        explain: bool = False,
        model: str = C.ENSEMBLE.name,
    ) -> Diagnosis:
        """Diagnose one scan, as `Client.diagnose`: a numpy HU volume (with ``spacing``), a NIfTI
        file or a DICOM folder (read in a worker thread)."""
        if isinstance(source, (np.ndarray, Volume)):
            vol: Volume = load_volume(source, spacing)
        else:
            vol = await asyncio.to_thread(load_volume, source, spacing)
        t0 = time.perf_counter()
        if self._shm is None:
            inputs, outputs = self._scan_request(vol, return_masks, clinical, explain)
            result = await self._call(
                lambda client, refused: self._infer(client, model, inputs, outputs, refused)
            )
            return self._diagnosis(result, vol, t0)
        shm = self._shm
        async with self._shm_turn():
            if not shm.fits(vol.hu):  # the region grows: the servers forget the old one first
                await shm.unregister_async()
            inputs, outputs = self._scan_request(vol, return_masks, clinical, explain)

            async def infer(client: Any, refused: int) -> Any:
                await shm.register_async(client)
                return await self._infer(client, model, inputs, outputs, refused)

            return self._diagnosis(await self._call(infer), vol, t0)

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
        result = await self._call(lambda c, _: c.infer(C.PROGRESSION_GPR.name, inputs))
        return req.result(result.as_numpy)

    async def diagnose_many(
        self, sources: Iterable[Any], *, concurrency: int = 4, **kwargs: Any
    ) -> AsyncIterator[Diagnosis]:
        """Diagnose ``sources`` with up to ``concurrency`` scans in flight; results in the order
        of ``sources``. A failure is raised when its turn comes, after the scans before it."""
        async for d in ordered_map(lambda source: self.diagnose(source, **kwargs), sources, concurrency):
            yield d

    async def close(self) -> None:
        if self._shm is not None:
            async with self._shm_turn():
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
