"""Error codes on the wire: the server writes one covidet code into its Triton error message, the
client picks its exception class by that code (never by the message's words)."""

from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from covidet import _contract as C
from covidet.client import (
    InvalidInputError,
    NoLungFoundError,
    ServerError,
    ServerUnavailableError,
    VolumeError,
)
from covidet.client._core import _CODE_ERRORS, translate_error
from covidet.clinical import ClinicalDataError
from covidet.ensemble import NoLungError, ScanValidationError, StepUnavailableError, bls_error, classify_error
from covidet.errors import CovidetError
from covidet.progression import ProgressionError

#: Triton status of each TritonError code name, as gRPC and HTTP clients see it.
_STATUS = {
    "grpc": {
        "INVALID_ARG": "StatusCode.INVALID_ARGUMENT",
        "UNAVAILABLE": "StatusCode.UNAVAILABLE",
        "INTERNAL": "StatusCode.INTERNAL",
    },
    "http": {"INVALID_ARG": "400", "UNAVAILABLE": "503", "INTERNAL": "500"},
}


def _over_the_wire(triton_code: str, message: str, protocol: str, prefix: str = "") -> CovidetError:
    """What the client raises for a model's error (``prefix``: context Triton puts before it)."""
    exc = InferenceServerException(prefix + message, status=_STATUS[protocol][triton_code])
    return translate_error(exc)


@pytest.mark.parametrize("code", list(C.ErrorCode))
def test_error_message_round_trip(code: C.ErrorCode) -> None:
    message = C.error_message(code, "what went wrong")
    assert message == f"[covidet:{code.value}] what went wrong"
    assert C.parse_error_message(message) == (code, "what went wrong")
    # Triton names the failing step of an ensemble before the step's own message
    assert C.parse_error_message(f"in ensemble 'covidet', {message}") == (
        code,
        "in ensemble 'covidet', what went wrong",
    )


def test_parse_takes_the_first_tag_and_ignores_unknown_ones() -> None:
    inner = C.error_message(C.ErrorCode.INVALID_INPUT, "FEATURES must be [slices, features]")
    outer = C.error_message(C.ErrorCode.INTERNAL, f"gru_fusion: {inner}")
    assert C.parse_error_message(outer)[0] is C.ErrorCode.INTERNAL
    assert C.parse_error_message("[covidet:FROM_THE_FUTURE] x") == (None, "[covidet:FROM_THE_FUTURE] x")
    assert C.parse_error_message("no lung found") == (None, "no lung found")


def test_every_code_has_a_client_class_consistent_with_its_triton_status() -> None:
    assert set(_CODE_ERRORS) == set(C.ErrorCode)
    for code, cls in _CODE_ERRORS.items():
        if code.triton_status == "INVALID_ARG":
            assert issubclass(cls, InvalidInputError), code
        assert cls.retryable == (code.triton_status == "UNAVAILABLE"), code


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize(
    ("server_exc", "client_cls", "code"),
    [
        (ScanValidationError("SPACING must be positive"), VolumeError, C.ErrorCode.INVALID_VOLUME),
        (NoLungError("no lung found in the scan"), NoLungFoundError, C.ErrorCode.NO_LUNG),
        (StepUnavailableError("lung_seg is reloading"), ServerUnavailableError, C.ErrorCode.STEP_UNAVAILABLE),
        (bls_error("lung_seg", "Stub process 'lung_seg_0_0' is not healthy."), ServerUnavailableError,
         C.ErrorCode.STEP_UNAVAILABLE),
        (bls_error("gru_fusion", "bad dims"), ServerError, C.ErrorCode.INTERNAL),
        (RuntimeError("boom"), ServerError, C.ErrorCode.INTERNAL),
        # a plain ValueError inside the pipeline is a bug there, not the caller's bad input
        (ValueError("slice_probs must be [N>=1, classes]"), ServerError, C.ErrorCode.INTERNAL),
    ],
)  # fmt: skip
def test_pipeline_errors_round_trip(
    protocol: str, server_exc: BaseException, client_cls: type, code: C.ErrorCode
) -> None:
    triton_code, message = classify_error(server_exc)
    assert triton_code == code.triton_status
    err = _over_the_wire(triton_code, message, protocol)
    assert type(err) is client_cls
    assert err.code is code
    assert str(server_exc) in str(err) and "[covidet:" not in str(err)
    assert err.retryable == (code is C.ErrorCode.STEP_UNAVAILABLE)


def test_server_and_client_classes_agree() -> None:
    """The pipeline's input errors are the client's classes too: one ``except`` serves both."""
    assert issubclass(NoLungError, NoLungFoundError)
    assert issubclass(ScanValidationError, VolumeError)
    assert issubclass(StepUnavailableError, ServerUnavailableError) and StepUnavailableError.retryable
    for cls in (NoLungError, ScanValidationError):
        assert issubclass(cls, ValueError)  # callers that catch ValueError keep working


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize(
    ("server_exc", "code"),
    [
        (ClinicalDataError("14 clinical values expected, got 13"), C.ErrorCode.INVALID_CLINICAL),
        (ProgressionError("need at least 3 distinct days, got 2"), C.ErrorCode.INVALID_SERIES),
    ],
)
def test_clinical_and_progression_errors_round_trip(
    protocol: str, server_exc: Exception, code: C.ErrorCode
) -> None:
    """As clinical_svm's and progression_gpr's model.py report them, inside the ensemble."""
    message = C.error_message(code, str(server_exc))
    err = _over_the_wire(code.triton_status, message, protocol, prefix="in ensemble 'covidet', ")
    assert type(err) is InvalidInputError and err.code == code.value
    assert str(server_exc) in str(err)


def test_words_alone_do_not_pick_the_class() -> None:
    """Without a code the message's words decide nothing: the status does."""
    err = _over_the_wire("INVALID_ARG", "no lung found in the scan", "grpc")
    assert type(err) is InvalidInputError and err.code is None
    # an unknown code (a newer server) falls back to the status, message kept whole
    err = _over_the_wire("INVALID_ARG", "[covidet:FROM_THE_FUTURE] x", "http")
    assert type(err) is InvalidInputError and "FROM_THE_FUTURE" in str(err)


def test_the_server_error_stays_the_cause() -> None:
    """Also for a retryable error raised after the last retry (without ``from``)."""
    original = InferenceServerException(C.error_message(C.ErrorCode.STEP_UNAVAILABLE, "x"), status="503")
    err = translate_error(original)
    assert err.__cause__ is original
    with pytest.raises(ServerUnavailableError) as info:
        raise err
    assert info.value.__cause__ is original
