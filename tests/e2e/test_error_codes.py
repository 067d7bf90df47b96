"""Error codes end to end: the served models write a covidet code into their errors and the client
raises the matching class with that code (never by the message's words), over gRPC and HTTP,
through the `covidet` ensemble and for a model called alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from covidet import _contract as C
from covidet.client import Client, InvalidInputError, NoLungFoundError, VolumeError
from covidet.client._core import infer_inputs, translate_error

pytestmark = pytest.mark.e2e

AIR = np.full((4, 32, 32), -1000, np.int16)
ONE_MM = (1.0, 1.0, 1.0)


def _url(server: Any, protocol: str) -> str:
    return str(server.grpc_url if protocol == "grpc" else server.http_url)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_pipeline_codes_pick_the_client_exception(covidet_server: Any, protocol: str) -> None:
    with Client(_url(covidet_server, protocol), protocol=protocol, retries=0) as client:
        with pytest.raises(NoLungFoundError) as no_lung:
            client.diagnose(AIR, spacing=ONE_MM)
        assert no_lung.value.code == C.ErrorCode.NO_LUNG
        assert "no lung" in str(no_lung.value) and "[covidet:" not in str(no_lung.value)

        with pytest.raises(VolumeError) as bad_volume:  # not Hounsfield units
            client.diagnose(np.full((4, 32, 32), 30000, np.int16), spacing=ONE_MM)
        assert bad_volume.value.code == C.ErrorCode.INVALID_VOLUME

        with pytest.raises(InvalidInputError) as series:  # ProgressionError in progression_gpr
            client.forecast([0.0, 1.0], [0.1, 0.2], query_days=[5.0])
        assert series.value.code == C.ErrorCode.INVALID_SERIES


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_clinical_svm_alone_sends_its_code(covidet_server: Any, protocol: str) -> None:
    mod: Any = grpcclient if protocol == "grpc" else httpclient
    raw = mod.InferenceServerClient(_url(covidet_server, protocol).split("://")[-1])
    inputs = infer_inputs(
        [(C.CLINICAL_SVM.input("P_COVID_GIVEN_VIRAL"), np.array([2.0], np.float32))], protocol
    )
    with pytest.raises(InferenceServerException) as info:
        raw.infer(C.CLINICAL_SVM.name, inputs)
    err = translate_error(info.value)
    assert type(err) is InvalidInputError and err.code == C.ErrorCode.INVALID_CLINICAL, info.value


def test_clinical_errors_come_through_the_ensemble(covidet_server: Any, phantoms: dict[str, Any]) -> None:
    ph = phantoms["COVID-19"]
    with Client(covidet_server.grpc_url, retries=0, timeout_s=600) as client:
        with pytest.raises(InvalidInputError) as info:
            client.diagnose(ph.hu, spacing=ph.spacing, clinical=np.full(14, 1e9, np.float32))
    assert info.value.code == C.ErrorCode.INVALID_CLINICAL, info.value
