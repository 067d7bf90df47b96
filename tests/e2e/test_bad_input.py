"""Bad input over raw gRPC and HTTP: a specific status and a message saying what to fix; the server
keeps serving good requests meanwhile."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from covidet import _contract as C
from covidet._codec import encode_volume
from covidet.client import Client

pytestmark = pytest.mark.e2e


def _inputs(mod: Any, arrays: dict[str, np.ndarray]) -> list[Any]:
    out = []
    for name, arr in arrays.items():
        inp = mod.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
        inp.set_data_from_numpy(arr)
        out.append(inp)
    return out


CT, SPACING, CLINICAL, PACKED = (
    C.ENSEMBLE.input(n).name for n in ("CT", "SPACING", "CLINICAL", "CT_COMPRESSED")
)
AIR = np.full((4, 32, 32), -1000, np.int16)
ONE = np.ones(3, np.float32)
FRAME = encode_volume(AIR)


def _frame(raw: bytes) -> np.ndarray:
    return np.array([raw], dtype=object)


CASES = {
    "wrong dtype": ({CT: AIR.astype(np.float32), SPACING: ONE}, "data-type|datatype|TYPE_INT16|INT16"),
    "wrong rank": ({CT: AIR[0], SPACING: ONE}, "shape|dims"),
    "empty volume": ({CT: AIR[:0], SPACING: ONE}, "no slices"),
    "tiny slices": ({CT: AIR[:, :4, :4], SPACING: ONE}, "between 16 and 2048"),
    "nan spacing": ({CT: AIR, SPACING: np.array([np.nan, 1, 1], np.float32)}, "spacing"),
    "zero spacing": ({CT: AIR, SPACING: np.array([1, 0, 1], np.float32)}, "spacing"),
    "spacing in metres": ({CT: AIR, SPACING: np.array([1e-3, 7e-4, 7e-4], np.float32)}, "between 0.1 and 50"),
    "wrong spacing count": ({CT: AIR, SPACING: np.ones(2, np.float32)}, "shape|SPACING"),
    "not HU": ({CT: np.full((4, 32, 32), 30000, np.int16), SPACING: ONE}, "Hounsfield"),
    "no lung": ({CT: AIR, SPACING: ONE}, "no lung found"),
    "missing input": ({CT: AIR}, "SPACING|input"),
    "no volume": ({SPACING: ONE}, "exactly one of CT"),
    "CT and a frame": ({CT: AIR, PACKED: _frame(FRAME), SPACING: ONE}, "exactly one of CT"),
    "frame not covidet's": ({PACKED: _frame(b"PK\x03\x04" + FRAME[4:]), SPACING: ONE}, "not a covidet frame"),
    "frame truncated": ({PACKED: _frame(FRAME[:-8]), SPACING: ONE}, "corrupt|truncated"),
    "frame too short": ({PACKED: _frame(FRAME[:10]), SPACING: ONE}, "header"),
    "frame states a huge volume": (
        {PACKED: _frame(FRAME[:8] + np.array([5000, 512, 512], "<u4").tobytes() + FRAME[20:]), SPACING: ONE},
        "larger than this server admits",
    ),
    "clinical feature count": ({CT: AIR, SPACING: ONE, CLINICAL: np.zeros(13, np.float32)}, "shape|dims"),
}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_invalid_argument(covidet_server: Any, protocol: str, case: str) -> None:
    arrays, message = CASES[case]
    if protocol == "grpc":
        client: Any = grpcclient.InferenceServerClient(covidet_server.grpc_url)
        mod: Any = grpcclient
    else:
        client, mod = httpclient.InferenceServerClient(covidet_server.http_url), httpclient
    with pytest.raises(InferenceServerException) as info:
        client.infer(C.ENSEMBLE.name, _inputs(mod, arrays))
    status = str(info.value.status())
    assert "INVALID_ARGUMENT" in status or status == "400", (status, info.value.message())
    import re

    assert re.search(message, info.value.message() or "", re.IGNORECASE), info.value.message()
    assert covidet_server.is_ready()


def test_good_requests_succeed_beside_bad_ones(covidet_server: Any, phantoms: dict[str, Any]) -> None:
    ph = phantoms["COVID-19"]

    def good(_: int) -> float:
        with Client(covidet_server.grpc_url, timeout_s=600) as c:
            return c.diagnose(ph.hu, spacing=ph.spacing).lung_volume_ml

    def bad(_: int) -> str:
        client = grpcclient.InferenceServerClient(covidet_server.grpc_url)
        try:
            client.infer(C.ENSEMBLE.name, _inputs(grpcclient, {CT: AIR, SPACING: ONE}))
        except InferenceServerException as exc:
            return str(exc.status())
        return "no error"

    with ThreadPoolExecutor(6) as pool:
        goods = [pool.submit(good, i) for i in range(3)]
        bads = [pool.submit(bad, i) for i in range(6)]
        assert all(f.result() > 0 for f in goods)
        assert all("INVALID_ARGUMENT" in f.result() for f in bads)
