"""System shared memory for the CT volume when the server runs on the same machine.

A 300-slice 512x512 scan is 150 MB. Sent in the request, it is serialised by the client,
copied through the loopback socket, parsed by Triton and held in Triton's memory while the
request waits in the queue. With a shared-memory region, the client writes the volume once into
/dev/shm and the request only names the region: Triton reads it from there when the scan runs.

The region is created on first use, sized for the largest scan seen, registered once per server
(the shared-memory API is an admin API: pass the admin headers when it is locked) and removed
when the client closes. One region per client: a client serialises its shared-memory requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np

from covidet import _contract as C
from covidet.client._core import translate_error
from covidet.errors import InvalidInputError, PermissionDeniedError

__all__ = ["SharedVolume"]

_log = logging.getLogger("covidet.client")

#: Triton may still hold a region for some milliseconds after it sent the response that read it,
#: and refuses to unregister it meanwhile ("currently in use"). Unregistering is retried this
#: long: a region left registered stays mapped, with its memory, until the server restarts.
UNREGISTER_PATIENCE_S = 5.0


def _in_use(exc: Exception) -> bool:
    return "currently in use" in str(exc)


def _pauses() -> Any:
    """Pauses between unregistering attempts: 5 ms doubling to 200 ms, for `UNREGISTER_PATIENCE_S`."""
    deadline, pause = time.monotonic() + UNREGISTER_PATIENCE_S, 0.005
    while time.monotonic() < deadline:
        yield pause
        pause = min(pause * 2, 0.2)


class SharedVolume:
    """One client's /dev/shm region for CT volumes, registered with each server it talks to."""

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        self.headers = dict(headers or {})
        self.name = f"{C.CLIENT_SHM_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.key = "/" + self.name
        self.size = 0
        self._handle: Any = None
        self._registered: dict[int, Any] = {}  # id(tritonclient client) -> client
        self.lock = threading.Lock()  # held by the caller from write() to the end of the request

    def fits(self, volume: np.ndarray) -> bool:
        """Whether ``volume`` (as the int16 CT that `write` is given) fits the region as it is."""
        return int(volume.size) * np.dtype(np.int16).itemsize <= self.size

    def write(self, volume: np.ndarray) -> int:
        """Put ``volume`` into the region (grown if needed); returns its byte size."""
        import tritonclient.utils.shared_memory as shm

        data = np.ascontiguousarray(volume)
        if data.nbytes > self.size:
            self._destroy()
            self._handle = shm.create_shared_memory_region(self.name, self.key, data.nbytes)
            self.size = data.nbytes
        shm.set_shared_memory_region(self._handle, [data])
        return int(data.nbytes)

    def register(self, client: Any) -> None:
        """Register the region with ``client``'s server (once per region and server)."""
        if id(client) in self._registered:
            return
        from tritonclient.utils import InferenceServerException

        try:
            client.unregister_system_shared_memory(self.name, headers=self.headers)
            client.register_system_shared_memory(self.name, self.key, self.size, headers=self.headers)
        except InferenceServerException as exc:
            raise self._refused(exc) from exc
        self._registered[id(client)] = client

    async def register_async(self, client: Any) -> None:
        """`register` through an asyncio tritonclient client."""
        if id(client) in self._registered:
            return
        from tritonclient.utils import InferenceServerException

        try:
            await client.unregister_system_shared_memory(self.name, headers=self.headers)
            await client.register_system_shared_memory(self.name, self.key, self.size, headers=self.headers)
        except InferenceServerException as exc:
            raise self._refused(exc) from exc
        self._registered[id(client)] = client

    @staticmethod
    def _refused(exc: Exception) -> Exception:
        """What a refused registration means for the caller, and what to do."""
        msg = str(exc)
        if "restricted" in msg.lower():
            return PermissionDeniedError(
                f"{msg} — the server locks its shared-memory API: pass its admin header "
                "(Client(..., admin_headers=...)) or use shared_memory=False"
            )
        unreachable = translate_error(exc)
        if unreachable.retryable:  # a server down or restarting: retry, or fail over to the next
            return unreachable
        return InvalidInputError(
            f"{msg} — system shared memory works only with a server on this machine; "
            "use shared_memory=False for a remote server"
        )

    def _destroy(self) -> None:
        """Unregister from every server and remove the region (before growing it, or at close)."""
        if self._handle is None:
            return
        import tritonclient.utils.shared_memory as shm

        for client in self._registered.values():
            self._unregister(client)
        self._registered.clear()
        shm.destroy_shared_memory_region(self._handle)
        self._handle, self.size = None, 0

    async def unregister_async(self) -> None:
        """Unregister from every server through asyncio clients (before `close`, which then
        only removes the region)."""
        for client in self._registered.values():
            pauses = _pauses()
            while True:
                try:
                    await client.unregister_system_shared_memory(self.name, headers=self.headers)
                    break
                except Exception as exc:  # the server may be gone: nothing to undo there
                    if not _in_use(exc) or (pause := next(pauses, None)) is None:
                        self._left_registered(exc)
                        break
                    await asyncio.sleep(pause)
        self._registered.clear()

    def _unregister(self, client: Any) -> None:
        """Unregister from one server, waiting out "currently in use" (`UNREGISTER_PATIENCE_S`)."""
        pauses = _pauses()
        while True:
            try:
                client.unregister_system_shared_memory(self.name, headers=self.headers)
                return
            except Exception as exc:  # the server may be gone: nothing to undo there
                if not _in_use(exc) or (pause := next(pauses, None)) is None:
                    self._left_registered(exc)
                    return
                time.sleep(pause)

    def _left_registered(self, exc: Exception) -> None:
        """A server gone needs nothing; one that still holds the region is told in the log."""
        if _in_use(exc):
            _log.warning(
                "shared-memory region %s stayed in use on the server for %.0f s; the server keeps it "
                "mapped until it restarts (its memory with it)",
                self.name,
                UNREGISTER_PATIENCE_S,
            )

    def close(self) -> None:
        with self.lock:
            self._destroy()
