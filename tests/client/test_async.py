"""The asyncio client's own logic with stand-in servers: retries, fail-over, timeouts, ordering."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tritonclient.utils import InferenceServerException

from covidet.client import AsyncClient, Client, InvalidInputError, RequestTimeoutError, ServerUnavailableError


def _down() -> InferenceServerException:
    return InferenceServerException("down", status="StatusCode.UNAVAILABLE")


def _client(monkeypatch: pytest.MonkeyPatch, urls: list[str], **kw: Any) -> AsyncClient:
    c = AsyncClient(urls, protocol="grpc", backoff_s=0.0, **kw)
    monkeypatch.setattr(c, "_client", lambda url: url)
    return c


class _Fake:
    def __init__(self, errors: list[BaseException], delay_s: float = 0.0) -> None:
        self.errors, self.delay_s, self.calls = errors, delay_s, 0
        self.refused: list[int] = []

    async def __call__(self, client: object, refused: int) -> str:
        self.calls += 1
        self.refused.append(refused)
        await asyncio.sleep(self.delay_s)
        if self.errors:
            raise self.errors.pop(0)
        return f"ok from {client}"


def test_fail_over_and_retries_as_the_sync_client(monkeypatch: pytest.MonkeyPatch) -> None:
    assert asyncio.run(_client(monkeypatch, ["a:1", "b:2"])._call(_Fake([_down()]))) == "ok from b:2"
    fake = _Fake([_down() for _ in range(9)])
    with pytest.raises(ServerUnavailableError):
        asyncio.run(_client(monkeypatch, ["a:1", "b:2"], retries=2)._call(fake))
    assert fake.calls == 6  # 3 rounds x 2 URLs
    bad = _Fake([InferenceServerException("bad", status="StatusCode.INVALID_ARGUMENT")])
    with pytest.raises(InvalidInputError):
        asyncio.run(_client(monkeypatch, ["a:1", "b:2"])._call(bad))
    assert bad.calls == 1


def test_admission_refusals_are_counted_as_by_the_sync_client(monkeypatch: pytest.MonkeyPatch) -> None:
    busy = InferenceServerException("Exceeds maximum queue size", status="StatusCode.UNAVAILABLE")
    fake = _Fake([busy, _down()])
    assert asyncio.run(_client(monkeypatch, ["a:1", "b:2"])._call(fake)) == "ok from a:1"
    assert fake.refused == [0, 1, 1]


def test_each_attempt_is_bounded_by_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    slow = _Fake([], delay_s=5.0)
    with pytest.raises(RequestTimeoutError, match="timed out"):
        asyncio.run(_client(monkeypatch, ["a:1"], retries=1, timeout_s=0.05)._call(slow))
    assert slow.calls == 2  # a timeout is retryable


def test_same_backoff_policy_as_the_sync_client() -> None:
    a = AsyncClient("a:1", backoff_s=0.5, max_backoff_s=4.0, retries=3)
    s = Client("a:1", backoff_s=0.5, max_backoff_s=4.0, retries=3)
    assert a.policy == s.policy and a.protocol == s.protocol == "grpc"
    assert AsyncClient("http://h:8000").protocol == "http"


def test_diagnose_many_keeps_order_and_bounds_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    in_flight, peak = 0, 0

    async def diagnose(source: int, **_: Any) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.01 * (5 - source % 5))  # later scans finish first
        finally:
            in_flight -= 1
        if source == 7:
            raise InvalidInputError("scan 7 is bad")
        return source

    async def collect(sources: list[int]) -> list[int]:
        client = AsyncClient("a:1")
        monkeypatch.setattr(client, "diagnose", diagnose)
        return [d async for d in client.diagnose_many(sources, concurrency=3)]  # type: ignore[misc]

    assert asyncio.run(collect(list(range(6)))) == list(range(6))
    assert peak == 3
    with pytest.raises(InvalidInputError, match="scan 7"):
        asyncio.run(collect(list(range(12))))
    assert in_flight == 0  # the scans in flight when 7 failed were cancelled and awaited, not leaked


def test_balance_rotates_over_the_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    c = _client(monkeypatch, ["a:1", "b:2"], balance=True)

    async def four() -> list[str]:
        return [await c._call(_Fake([])) for _ in range(4)]

    assert asyncio.run(four()) == ["ok from a:1", "ok from b:2"] * 2
