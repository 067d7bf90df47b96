"""The asyncio client against the real server: the sync client's answers, concurrently."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from covidet.client import AsyncClient, Client, ModelNotFoundError, NoLungFoundError
from covidet.phantom import make_phantom
from covidet.server import free_ports

pytestmark = pytest.mark.e2e


def _url(server: Any, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_concurrent_scans_get_the_sync_clients_answers(covidet_server: Any, protocol: str) -> None:
    kinds = ("CAP", "COVID-19")
    scans = [make_phantom(k, n_slices=24, size=128, seed=98_000 + i) for i, k in enumerate(kinds)]
    url = _url(covidet_server, protocol)
    with Client(url, protocol=protocol) as sync:
        expected = [sync.diagnose(ph.hu, spacing=ph.spacing, return_masks=True) for ph in scans]

    async def run() -> list[Any]:
        async with AsyncClient(url, protocol=protocol, timeout_s=600) as client:
            assert await client.is_ready()
            coros = [client.diagnose(ph.hu, spacing=ph.spacing, return_masks=True) for ph in scans]
            return list(await asyncio.gather(*coros))

    for e, g in zip(expected, asyncio.run(run()), strict=True):
        assert g.predicted_class == e.predicted_class
        assert g.class_probs == pytest.approx(e.class_probs, abs=1e-6)
        assert g.lesion_ratio == pytest.approx(e.lesion_ratio, abs=1e-9)
        np.testing.assert_array_equal(g.lung_mask, e.lung_mask)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_files_shared_memory_fail_over_errors_and_forecast(
    covidet_server: Any, tmp_path: Path, protocol: str
) -> None:
    from covidet.phantom import write_phantom_nifti

    small = make_phantom("influenza", n_slices=24, size=128, seed=98_010)
    big = make_phantom("COVID-19", n_slices=40, size=128, seed=98_011)  # grows the region
    nifti = write_phantom_nifti(small, tmp_path)["ct"]
    dead = f"127.0.0.1:{free_ports(1)[0]}"  # nothing listens there: fail over to the server

    async def run() -> None:
        urls = [dead, _url(covidet_server, protocol)]
        client = AsyncClient(urls, protocol=protocol, shared_memory=True, timeout_s=600)
        async with client:
            from_file = await client.diagnose(nifti)
            results = [d async for d in client.diagnose_many([small.hu, big.hu], spacing=small.spacing)]
            assert from_file.n_slices == 24 and [d.n_slices for d in results] == [24, 40]
            assert from_file.lung_volume_ml == pytest.approx(results[0].lung_volume_ml, rel=1e-6)
            key = client._shm.key if client._shm else ""
            assert Path("/dev/shm" + key).exists()
            with pytest.raises(NoLungFoundError, match="no lung found"):
                await client.diagnose(np.full((8, 64, 64), -1000, np.int16), spacing=(1.0, 1.0, 1.0))
            with pytest.raises(ModelNotFoundError):
                await client.diagnose(small.hu[:4], spacing=small.spacing, model="no_such_model")
            fc = await client.forecast([0, 2, 4, 6], [0.10, 0.20, 0.30, 0.40], [1, 3, 5], levels=[0.5])
            np.testing.assert_allclose(fc.mean, [0.15, 0.25, 0.35], atol=0.02)
        assert not Path("/dev/shm" + key).exists(), "closing the client must remove its region"

    asyncio.run(run())
