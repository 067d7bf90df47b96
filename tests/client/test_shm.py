"""The client's shared-memory region: unregistering waits out a region the server still holds."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from covidet.client import _shm
from covidet.client._shm import SharedVolume

_IN_USE = "Cannot unregister shared memory region 'x', it is currently in use."


class _Server:
    """A tritonclient stand-in whose unregister fails with the given errors first."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors, self.unregistered = errors, 0

    def register_system_shared_memory(self, *args: Any, **kwargs: Any) -> None:
        pass

    def unregister_system_shared_memory(self, name: str, headers: Any = None) -> None:
        self.unregistered += 1
        if self.errors:
            raise self.errors.pop(0)


class _AsyncServer(_Server):
    async def register_system_shared_memory(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        pass

    async def unregister_system_shared_memory(self, name: str, headers: Any = None) -> None:  # type: ignore[override]
        super().unregister_system_shared_memory(name, headers)


def _region(server: _Server) -> SharedVolume:
    """A region registered with ``server``; its errors start after the registration (which clears
    a stale registration of the same name first)."""
    errors, server.errors = server.errors, []
    region = SharedVolume()
    region.write(np.zeros((2, 4, 4), np.int16))
    if isinstance(server, _AsyncServer):
        asyncio.run(region.register_async(server))
    else:
        region.register(server)
    server.errors, server.unregistered = errors, 0
    return region


def test_a_region_still_in_use_is_unregistered_once_free() -> None:
    server = _Server([InferenceServerException(_IN_USE, status="StatusCode.INTERNAL")] * 2)
    _region(server).close()
    assert server.unregistered == 3 and not server.errors


def test_the_async_flavour_waits_too() -> None:
    server = _AsyncServer([InferenceServerException(_IN_USE, status="StatusCode.INTERNAL")])
    region = _region(server)
    asyncio.run(region.unregister_async())
    region.close()
    assert server.unregistered == 2


def test_a_server_gone_is_not_waited_for() -> None:
    server = _Server([InferenceServerException("failed to connect", status="StatusCode.UNAVAILABLE")])
    _region(server).close()
    assert server.unregistered == 1


def test_a_region_held_for_good_is_reported(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    monkeypatch.setattr(_shm, "UNREGISTER_PATIENCE_S", 0.05)
    server = _Server([InferenceServerException(_IN_USE, status="StatusCode.INTERNAL")] * 1000)
    with caplog.at_level(logging.WARNING, logger="covidet.client"):
        _region(server).close()
    assert 1 < server.unregistered < 1000
    assert "keeps it mapped until it restarts" in caplog.text
