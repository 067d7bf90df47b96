"""Client core: error translation, retries and fail-over, result parsing, staying light."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from covidet import _contract as C
from covidet.client import (
    Client,
    InvalidInputError,
    ModelNotFoundError,
    NoLungFoundError,
    PermissionDeniedError,
    RequestTimeoutError,
    ServerBusyError,
    ServerError,
    ServerUnavailableError,
)
from covidet.client._core import translate_error
from covidet.client._result import parse_outputs


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        ("StatusCode.INVALID_ARGUMENT", "spacing must be positive", InvalidInputError),
        ("400", "unexpected shape for input 'CT'", InvalidInputError),
        # recognised by its covidet code, not by its words (tests/client/test_error_codes.py)
        ("StatusCode.INVALID_ARGUMENT", "[covidet:NO_LUNG] no lung found in the scan", NoLungFoundError),
        ("StatusCode.INVALID_ARGUMENT", "no lung found in the scan", InvalidInputError),
        ("StatusCode.NOT_FOUND", "Request for unknown model: 'x' is not found", ModelNotFoundError),
        ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", ServerUnavailableError),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", RequestTimeoutError),
        ("StatusCode.INTERNAL", "boom", ServerError),
        ("StatusCode.UNAVAILABLE", "This protocol is restricted, expecting header", PermissionDeniedError),
        # the pipeline's own stub crashed: the ensemble says INTERNAL, but a reload is under way
        (
            "StatusCode.INTERNAL",
            "Stub process 'covidet_pipeline_0_1' is not healthy.",
            ServerUnavailableError,
        ),
        ("StatusCode.UNAVAILABLE", "lung_seg is restarting or reloading", ServerUnavailableError),
        ("StatusCode.UNAVAILABLE", "Exceeds maximum queue size", ServerBusyError),
        (
            "StatusCode.NOT_FOUND",
            "Request for unknown model: 'covidet' has no available versions",
            ServerUnavailableError,
        ),
    ],
)
def test_translate_error(status: str, message: str, expected: type) -> None:
    err = translate_error(InferenceServerException(message, status=status))
    assert type(err) is expected
    assert C.parse_error_message(message)[1].split()[0] in str(err)


def test_connection_errors_are_retryable() -> None:
    err = translate_error(ConnectionRefusedError("refused"))
    assert isinstance(err, ServerUnavailableError) and err.retryable


class _Fake:
    def __init__(self, errors: list[BaseException]) -> None:
        self.errors, self.calls = errors, 0
        self.refused: list[int] = []

    def __call__(self, client: object, refused: int) -> str:
        self.calls += 1
        self.refused.append(refused)
        if self.errors:
            raise self.errors.pop(0)
        return f"ok from {client}"


def _client(monkeypatch: pytest.MonkeyPatch, urls: list[str], retries: int = 2) -> Client:
    c = Client(urls, protocol="grpc", retries=retries, backoff_s=0.0)
    monkeypatch.setattr(c, "_client", lambda url: url)
    return c


def test_fail_over_to_the_next_url(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _Fake([InferenceServerException("down", status="StatusCode.UNAVAILABLE")])
    assert _client(monkeypatch, ["a:1", "b:2"])._call(fake) == "ok from b:2"


def test_retries_then_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    errors = [InferenceServerException("down", status="StatusCode.UNAVAILABLE") for _ in range(9)]
    fake = _Fake(errors)
    with pytest.raises(ServerUnavailableError):
        _client(monkeypatch, ["a:1", "b:2"], retries=2)._call(fake)
    assert fake.calls == 6  # 3 rounds x 2 URLs


def _busy() -> InferenceServerException:
    return InferenceServerException("Exceeds maximum queue size", status="StatusCode.UNAVAILABLE")


def test_each_attempt_is_told_the_admission_refusals_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # refused twice for the admission bound, once unreachable (not counted), then admitted
    down = InferenceServerException("down", status="StatusCode.UNAVAILABLE")
    fake = _Fake([_busy(), _busy(), down])
    assert _client(monkeypatch, ["a:1", "b:2"])._call(fake) == "ok from b:2"
    assert fake.refused == [0, 1, 2, 2]


def test_the_refusals_travel_as_a_request_parameter_only_when_there_were_some() -> None:
    seen: list[dict[str, object]] = []

    class _Triton:
        def infer(self, model: str, inputs: list[object], **kwargs: object) -> None:
            seen.append(kwargs)

    c = Client("a:1", protocol="grpc")
    c._infer(_Triton(), "covidet", [], [])
    c._infer(_Triton(), "covidet", [], [], 3)
    assert "parameters" not in seen[0]
    assert seen[1]["parameters"] == {C.REFUSED_PARAMETER: 3}


@pytest.mark.parametrize(
    ("parameters", "count"),
    [
        (None, 0),
        ("", 0),
        ("{}", 0),
        (json.dumps({C.REFUSED_PARAMETER: 4}), 4),
        ({C.REFUSED_PARAMETER: 2}, 2),
        (json.dumps({C.REFUSED_PARAMETER: -1}), 0),
        (json.dumps({C.REFUSED_PARAMETER: "7"}), 0),
        (json.dumps({C.REFUSED_PARAMETER: True}), 0),
        (json.dumps({C.REFUSED_PARAMETER: C.MAX_REFUSED_REPORT + 1}), 0),
        ("not json", 0),
    ],
)
def test_the_server_reads_a_refusal_report_or_drops_a_bad_one(parameters: object, count: int) -> None:
    assert C.refused_count(parameters) == count  # type: ignore[arg-type]


def test_input_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _Fake([InferenceServerException("bad", status="StatusCode.INVALID_ARGUMENT")])
    with pytest.raises(InvalidInputError):
        _client(monkeypatch, ["a:1", "b:2"])._call(fake)
    assert fake.calls == 1


def test_parse_outputs() -> None:
    values = {
        "P_VIRAL": np.array([0.9], np.float32),
        "P_COVID_GIVEN_VIRAL": np.array([0.8], np.float32),
        "P_COVID_STEPWISE": np.array([0.72], np.float32),
        "CLASS_PROBS": np.array([0.1, 0.1, 0.2, 0.6], np.float32),
        "TOPK_SLICES": np.array([4, 9, 2], np.int32),
        "LUNG_VOLUME_ML": np.array([4000.0], np.float32),
        "LESION_VOLUME_ML": np.array([400.0], np.float32),
        "LESION_RATIO": np.array([0.1], np.float32),
        "N_SLICES_USED": np.array([35], np.int32),
        "LUNG_MASK": np.zeros((0, 0, 0), np.uint8),
        "PROVENANCE": np.array([json.dumps({"lung_seg": {"trained": True}}).encode()], dtype=object),
        "P_SVM": np.array([np.nan], np.float32),
        "P_COVID_FUSED": np.array([0.8], np.float32),
        "QUALITY": np.array([C.quality_to_json([C.QualityFlag("THICK_SLICES", "warning", "5 mm")])], object),
        "SVM_PROVENANCE": np.array([json.dumps({"architecture": "svm-rbf", "sha256": "ab"})], object),
    }
    assert set(values) | {"LESION_MASK", *C.EXPLAIN_OUTPUTS} == {t.name for t in C.ENSEMBLE.outputs}
    d = parse_outputs(values.get, latency_s=0.5, source="x", n_slices=80)
    assert d.attention is None and d.attention_regions == () and d.slice_scores == ()
    assert d.predicted_class == "COVID-19" and d.topk_slices == (4, 9, 2)
    assert d.lung_mask is None and d.lesion_mask is None and d.n_slices_used == 35
    assert d.provenance["lung_seg"]["trained"] is True
    assert d.provenance["clinical_svm"] == {"architecture": "svm-rbf", "sha256": "ab"}  # beside them
    assert d.p_svm is None and d.p_covid_fused == pytest.approx(0.8)  # NaN = no clinical data
    assert json.dumps(d.to_dict())
    assert d.quality == (C.QualityFlag("THICK_SLICES", "warning", "5 mm"),) and d.usable
    errors = {**values, "QUALITY": np.array([C.quality_to_json([C.QualityFlag("X", "error", "m")])], object)}
    assert not parse_outputs(errors.get, latency_s=0, source="x", n_slices=1).usable
    older = {k: v for k, v in values.items() if k != "QUALITY"}  # a server without quality checks
    (flag,) = parse_outputs(older.get, latency_s=0, source="x", n_slices=1).quality
    assert flag.code == "NO_QUALITY_CHECKS" and flag.severity == "warning"
    # a server older than SVM_PROVENANCE: the pipeline's models alone
    no_svm = {k: v for k, v in values.items() if k != "SVM_PROVENANCE"}
    assert set(parse_outputs(no_svm.get, latency_s=0, source="x", n_slices=1).provenance) == {"lung_seg"}


def test_an_explained_answer_carries_attention_regions_and_slice_scores() -> None:
    region = C.AttentionRegion(9, 1, 420, 205.8, 300, 300 / 420, (40.5, 61.0), (30, 52, 50, 72))
    explained = {
        "ATTENTION": np.full((3, 8, 8), 7, np.uint8),
        "EXPLANATION": np.array([C.Explanation("guided-grad-cam", (region,)).to_json()], object),
        "SELECTED_SLICES": np.array([2, 4, 9], np.int32),
        "SLICE_SCORES": np.array([0.1, 0.8, 0.9], np.float32),
        "SLICE_LESION_MM2": np.array([0.0, 12.5, 80.0], np.float32),
        "CLASS_PROBS": np.array([0.1, 0.1, 0.2, 0.6], np.float32),
        "TOPK_SLICES": np.array([9, 4, 2], np.int32),
    }
    d = parse_outputs(explained.get, latency_s=0, source="x", n_slices=12)
    assert d.attention is not None and d.attention.shape == (3, 8, 8)
    assert d.attention_regions == (region,) and d.explanation is not None
    assert d.explanation.method == "guided-grad-cam"
    assert [s.slice for s in d.slice_scores] == [2, 4, 9]
    assert d.slice_scores[2].p_pneumonia == pytest.approx(0.9) and d.slice_scores[1].lesion_mm2 == 12.5
    summary = d.to_dict()
    assert summary["attention_regions"][0]["bbox"] == [30, 52, 50, 72]
    assert summary["attention_method"] == "guided-grad-cam"
    assert json.dumps(summary)


def test_explain_is_sent_and_its_outputs_asked_for_only_when_wanted() -> None:
    from covidet.client._core import build_inputs, requested_outputs

    hu = np.zeros((2, 4, 4), np.int16)
    for protocol in ("grpc", "http"):
        plain = [i.name() for i in build_inputs(hu, (1, 1, 1), False, protocol)]
        asked = [i.name() for i in build_inputs(hu, (1, 1, 1), False, protocol, explain=True)]
        assert "EXPLAIN" not in plain and asked == [*plain, "EXPLAIN"]
        plain_out = {o.name() for o in requested_outputs(False, protocol)}
        asked_out = {o.name() for o in requested_outputs(False, protocol, explain=True)}
        assert not plain_out & set(C.EXPLAIN_OUTPUTS)
        assert asked_out == plain_out | set(C.EXPLAIN_OUTPUTS)


def test_client_imports_no_heavy_dependencies() -> None:
    code = (
        "import sys, covidet.client, covidet.cli; "
        "bad = [m for m in ('torch', 'onnxruntime', 'scipy', 'covidet.models', 'covidet.ensemble') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    c = Client("a:1", protocol="grpc", backoff_s=0.5, max_backoff_s=4.0)
    waits = [[c.backoff(k) for _ in range(200)] for k in range(6)]
    for k, base in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        assert 0.75 * base <= min(waits[k]) and max(waits[k]) <= 1.25 * base
        assert max(waits[k]) - min(waits[k]) > 0.2 * base  # spread, so clients do not retry in step
    assert sum(Client("a:1", protocol="grpc").backoff(k) for k in range(5)) > 10  # rides out a reload


def test_a_shared_memory_registration_with_a_server_down_fails_over() -> None:
    from covidet.client._shm import SharedVolume

    unavailable = InferenceServerException("failed to connect", status="StatusCode.UNAVAILABLE")
    down = SharedVolume._refused(unavailable)
    assert isinstance(down, ServerUnavailableError) and down.retryable  # the next URL is tried
    remote = SharedVolume._refused(InferenceServerException("Unable to open shared memory region"))
    assert isinstance(remote, InvalidInputError) and "this machine" in str(remote)
    locked = SharedVolume._refused(InferenceServerException("This protocol is restricted"))
    assert isinstance(locked, PermissionDeniedError)


def test_balance_starts_each_request_at_the_next_url(monkeypatch: pytest.MonkeyPatch) -> None:
    c = Client(["a:1", "b:2", "c:3"], protocol="grpc", backoff_s=0.0, balance=True)
    monkeypatch.setattr(c, "_client", lambda url: url)
    assert [c._call(_Fake([])) for _ in range(4)] == [f"ok from {u}" for u in ("a:1", "b:2", "c:3", "a:1")]
    # a replica down: its turn fails over to the next one, the rotation goes on
    assert c._call(_Fake([_unavailable()])) == "ok from c:3"
    plain = Client(["a:1", "b:2"], protocol="grpc")
    monkeypatch.setattr(plain, "_client", lambda url: url)
    assert [plain._call(_Fake([])) for _ in range(2)] == ["ok from a:1"] * 2  # primary, then backups


def _unavailable() -> InferenceServerException:
    return InferenceServerException("down", status="StatusCode.UNAVAILABLE")


def test_compression_sends_a_frame_instead_of_the_voxels() -> None:
    from covidet.client._core import build_inputs

    hu = np.full((2, 16, 16), -1000, np.int16)
    for protocol in ("grpc", "http"):
        inputs = {i.name(): i for i in build_inputs(hu, (1, 1, 1), False, protocol, compression="zstd")}
        assert "CT" not in inputs and inputs["CT_COMPRESSED"].datatype() == "BYTES"
    with pytest.raises(InvalidInputError, match="exclude each other"):
        Client("a:1", compression="zstd", shared_memory=True)
    with pytest.raises(InvalidInputError, match="compression must be one of"):
        Client("a:1", compression="gzip")
