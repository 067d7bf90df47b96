"""The CT through system shared memory: same answer as in the request, region cleaned up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from covidet.client import Client, PermissionDeniedError
from covidet.phantom import make_phantom
from covidet.server import TritonServer, admin_headers, restricted_api_args

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_shared_memory_gives_the_same_answer(covidet_server: Any, protocol: str) -> None:
    url = covidet_server.grpc_url if protocol == "grpc" else covidet_server.http_url
    small = make_phantom("COVID-19", n_slices=24, size=128, seed=97_000)
    big = make_phantom("CAP", n_slices=40, size=128, seed=97_001)  # grows the region
    with Client(url, protocol=protocol) as plain:
        expected = [
            plain.diagnose(ph.hu, spacing=ph.spacing, return_masks=True) for ph in (small, big, small)
        ]
    client = Client(url, protocol=protocol, shared_memory=True)
    with client:
        got = [client.diagnose(ph.hu, spacing=ph.spacing, return_masks=True) for ph in (small, big, small)]
        key = client._shm.key if client._shm else ""
        assert Path("/dev/shm" + key).exists()
    assert not Path("/dev/shm" + key).exists(), "closing the client must remove its region"
    for e, g in zip(expected, got, strict=True):
        assert g.class_probs == pytest.approx(e.class_probs, abs=1e-6)
        assert g.lesion_ratio == pytest.approx(e.lesion_ratio, abs=1e-9)
        np.testing.assert_array_equal(g.lung_mask, e.lung_mask)


def test_a_locked_shared_memory_api_needs_the_admin_header(repository: Path) -> None:
    header, token = "covidet-admin-key", "shm-test-token-0123456789abcdef"
    server = TritonServer.on_free_ports(
        repository,
        extra_args=restricted_api_args(header, token, ["shared-memory"]),
    )
    ph = make_phantom("influenza", n_slices=24, size=128, seed=97_002)
    with server:
        server.wait_ready(timeout=300)
        with Client(server.grpc_url, shared_memory=True, retries=0) as client:
            with pytest.raises(PermissionDeniedError, match="admin header"):
                client.diagnose(ph.hu, spacing=ph.spacing)
        unlock = admin_headers(header, token, "grpc")
        with Client(server.grpc_url, shared_memory=True, admin_headers=unlock) as client:
            assert client.diagnose(ph.hu, spacing=ph.spacing).lung_volume_ml > 0


def test_one_shot_clients_leave_no_region_on_the_server(covidet_server: Any) -> None:
    """A client closed right after its answer unregisters its region, even when Triton still
    holds it for a moment ("currently in use"): a region left registered stays mapped in the
    server, with its memory, until the server restarts."""
    import tritonclient.grpc as grpcclient

    ph = make_phantom("influenza", n_slices=16, size=96, seed=97_002)
    for _ in range(25):
        with Client(covidet_server.grpc_url, shared_memory=True) as client:
            client.diagnose(ph.hu, spacing=ph.spacing)
    status = grpcclient.InferenceServerClient(covidet_server.grpc_url).get_system_shared_memory_status(
        as_json=True
    )
    left = [r for r in status.get("regions", {}) if r.startswith("covidet_ct_")]
    assert not left, f"{len(left)} regions left registered on the server"
