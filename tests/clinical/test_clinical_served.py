"""Real Triton server (nvidia-pytriton binary) serving clinical_svm and progression_gpr."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from covidet import _contract as C
from covidet.clinical import ClinicalSVM, demo_model_path, generate_clinical, identity, save_svm, train_svm
from covidet.clinical._svm_train import _calibrated
from covidet.server import TritonServer

pytestmark = pytest.mark.e2e

SOURCE = Path(__file__).resolve().parents[2] / "model_repository"
MODELS = (C.CLINICAL_SVM, C.PROGRESSION_GPR)


def _config_tensors(text: str, kind: str) -> list[tuple[str, str, tuple[int, ...], bool]]:
    block = re.search(rf"^{kind} \[(.*?)^\]", text, re.S | re.M)
    assert block is not None, kind
    out = []
    for entry in re.findall(r"\{(.*?)\n  \}", block.group(1), re.S):
        name = re.search(r'name: "(\w+)"', entry)
        dtype = re.search(r"data_type: TYPE_(\w+)", entry)
        dims = re.search(r"dims: \[([^\]]*)\]", entry)
        assert name and dtype and dims
        shape = tuple(int(v) for v in dims.group(1).split(","))
        wire = "BYTES" if dtype.group(1) == "STRING" else dtype.group(1)  # TYPE_STRING carries BYTES
        out.append((name.group(1), wire, shape, "optional: true" in entry))
    return out


@pytest.mark.parametrize("spec", MODELS, ids=lambda s: s.name)
def test_config_matches_contract_and_every_field_is_commented(spec: C.ModelSpec) -> None:
    text = (SOURCE / spec.name / "config.pbtxt").read_text()
    assert re.search(rf'^name: "{spec.name}"', text, re.M)
    assert re.search(rf"^max_batch_size: {spec.max_batch_size}\b", text, re.M)
    for kind, specs in (("input", spec.inputs), ("output", spec.outputs)):
        want = [(t.name, t.dtype, t.dims, t.optional) for t in specs]
        assert _config_tensors(text, kind) == want
    for line in text.splitlines():
        if ":" in line and not line.lstrip().startswith("#"):
            assert "#" in line, f"uncommented field: {line!r}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, ClinicalSVM]:
    """A small linear-kernel model file and the scikit-learn model it was copied from."""
    x, y, p = generate_clinical(120, seed=21, return_p_dl2=True)
    model = train_svm(x, y, seed=0, p_dl2=p, kernels=["linear"])
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    ref = _calibrated("linear", 0, cv, **model.metrics["kernels"]["linear"]["params"]).fit(x, y)
    path = save_svm(model, tmp_path_factory.mktemp("svm") / "svm.json")
    return path, ref, model


def _repository(root: Path, model_file: Path | None, only: tuple[str, ...]) -> Path:
    repo = root / "model_repository"
    for name in only:
        shutil.copytree(SOURCE / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    if model_file is not None:
        cfg = repo / C.CLINICAL_SVM.name / "config.pbtxt"
        text = cfg.read_text().replace('string_value: ""', f'string_value: "{model_file}"')
        cfg.write_text(text)
    return repo


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, reference: tuple[Path, Any, ClinicalSVM]
) -> Iterator[TritonServer]:
    names = tuple(s.name for s in MODELS)
    repo = _repository(tmp_path_factory.mktemp("served"), reference[0], names)
    srv = TritonServer.on_free_ports(repo)
    srv.start()
    try:
        for name in names:
            srv.wait_ready(model=name, timeout=300)
        yield srv
    finally:
        srv.stop()


def _infer(server: TritonServer, spec: C.ModelSpec, inputs: dict[str, np.ndarray]) -> dict:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    req = []
    for name, value in inputs.items():
        t = spec.input(name)
        arr = np.asarray(value, dtype=t.numpy_dtype)
        inp = httpclient.InferInput(name, list(arr.shape), t.dtype)
        inp.set_data_from_numpy(arr)
        req.append(inp)
    res = client.infer(spec.name, req)
    return {o.name: res.as_numpy(o.name) for o in spec.outputs}


def test_served_svm_equals_sklearn(server: TritonServer, reference: Any) -> None:
    _, ref, model = reference
    xt, _ = generate_clinical(6, seed=77)
    want = ref.predict_proba(xt)[:, 1]
    for i in range(len(xt)):
        out = _infer(server, C.CLINICAL_SVM, {"P_COVID_GIVEN_VIRAL": [0.7], "CLINICAL": xt[i]})
        x32 = xt[i].astype(np.float32)  # the wire is float32
        assert out["P_SVM"][0] == pytest.approx(want[i], abs=1e-5)
        assert out["P_SVM"][0] == pytest.approx(model.p_covid(x32)[0], abs=1e-6)
        fused = float(model.fused(np.float32(0.7), x32)[0])
        assert out["P_COVID_FUSED"][0] == pytest.approx(fused, abs=1e-6)
        assert json.loads(out["SVM_PROVENANCE"][0]) == identity(model)  # the file that answered


def test_request_without_clinical_returns_the_dl2_probability(server: TritonServer) -> None:
    out = _infer(server, C.CLINICAL_SVM, {"P_COVID_GIVEN_VIRAL": [0.625]})
    assert np.isnan(out["P_SVM"][0]) and out["P_COVID_FUSED"][0] == np.float32(0.625)
    assert json.loads(out["QUALITY"][0]) == []  # called alone: no imaging flags to pass on


def test_the_imaging_flags_pass_through_and_a_bad_pair_is_invalid_argument(server: TritonServer) -> None:
    from tritonclient.utils import InferenceServerException

    flags = [{"code": "THICK_SLICES", "severity": "warning", "message": "thick"}]
    imaging = {
        "QUALITY": np.array([json.dumps(flags).encode()], dtype=np.object_),
        "PROVENANCE": np.array([json.dumps({"lung_seg": {"variant": "full"}}).encode()], dtype=np.object_),
    }
    x, _ = generate_clinical(1, seed=5)
    out = _infer(server, C.CLINICAL_SVM, {"P_COVID_GIVEN_VIRAL": [0.5], "CLINICAL": x[0], **imaging})
    assert json.loads(out["QUALITY"][0]) == flags  # a trained SVM adds no flag
    with pytest.raises(InferenceServerException) as exc:
        _infer(server, C.CLINICAL_SVM, {"P_COVID_GIVEN_VIRAL": [0.5], "QUALITY": imaging["QUALITY"]})
    assert exc.value.status() == "400" and "[covidet:INVALID_INPUT]" in str(exc.value)
    assert "come together" in str(exc.value)
    assert _infer(server, C.CLINICAL_SVM, {"P_COVID_GIVEN_VIRAL": [0.5]})["P_COVID_FUSED"][0] == 0.5


def test_bad_clinical_requests_are_invalid_argument(server: TritonServer) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as exc:
        _infer(server, C.CLINICAL_SVM, {"P_COVID_GIVEN_VIRAL": [0.5], "CLINICAL": np.zeros(13)})
    assert exc.value.status() == "400" and "CLINICAL" in str(exc.value)
    x, _ = generate_clinical(1, seed=1)
    x[0, 1] = 45.0  # temperature
    with pytest.raises(InferenceServerException) as exc:
        _infer(server, C.CLINICAL_SVM, {"P_COVID_GIVEN_VIRAL": [0.5], "CLINICAL": x[0]})
    assert exc.value.status() == "400" and "'temperature'" in str(exc.value)
    # the server still answers afterwards
    assert _infer(server, C.CLINICAL_SVM, {"P_COVID_GIVEN_VIRAL": [0.5]})["P_COVID_FUSED"][0] == 0.5


def test_served_gpr_hand_checked_line(server: TritonServer) -> None:
    days = np.array([6.0, 0.0, 2.0, 4.0, 8.0])  # unsorted on purpose
    ratios = 0.1 + 0.02 * days
    query = np.array([1.0, 3.0, 5.0, 7.0])
    out = _infer(
        server,
        C.PROGRESSION_GPR,
        {"DAYS": days, "RATIOS": ratios, "QUERY_DAYS": query, "LEVELS": [0.27, 0.999]},
    )
    np.testing.assert_allclose(out["MEAN"], 0.1 + 0.02 * query, atol=5e-3)
    assert out["STD"].shape == (4,) and (out["STD"] < 0.02).all()
    # the mean path of a clean rise reaches 0.27 on day 8.5; its possible courses get there about
    # then (half of them no later), nearly all of them; 0.999 is out of reach
    assert abs(out["MEAN_CROSSING_DAYS"][0] - 8.5) < 0.15 and np.isnan(out["MEAN_CROSSING_DAYS"][1])
    assert 8.0 < out["CROSSING_DAYS"][0] <= out["MEAN_CROSSING_DAYS"][0] + 0.1
    assert out["CROSSING_EARLIEST"][0] <= out["CROSSING_DAYS"][0]
    assert out["REACH_PROBABILITY"][0] > 0.9
    # the 97.5 % day exists where at least 97.5 % of the courses reach the level in the horizon
    latest = out["CROSSING_LATEST"][0]
    assert latest >= out["CROSSING_DAYS"][0] if out["REACH_PROBABILITY"][0] >= 0.975 else np.isnan(latest)
    assert np.isnan(out["CROSSING_DAYS"][1]) and out["REACH_PROBABILITY"][1] < 0.5
    out = _infer(server, C.PROGRESSION_GPR, {"DAYS": days, "RATIOS": ratios, "QUERY_DAYS": query})
    per_level = (
        "CROSSING_DAYS",
        "CROSSING_EARLIEST",
        "CROSSING_LATEST",
        "REACH_PROBABILITY",
        "MEAN_CROSSING_DAYS",
    )
    assert all(out[name].shape == (0,) for name in per_level)


def test_served_gpr_too_few_points_is_invalid_argument(server: TritonServer) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as exc:
        _infer(server, C.PROGRESSION_GPR, {"DAYS": [0, 2], "RATIOS": [0.1, 0.2], "QUERY_DAYS": [3]})
    assert exc.value.status() == "400" and "at least 3" in str(exc.value)


def test_tampered_model_file_fails_the_load(tmp_path: Path) -> None:
    doc = json.loads(demo_model_path().read_text())
    doc["fusion"]["bias"] += 1.0
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(doc))
    repo = _repository(tmp_path, bad, (C.CLINICAL_SVM.name,))
    srv = TritonServer.on_free_ports(repo)
    srv.start()
    try:
        assert srv.process is not None
        code = srv.process.wait(timeout=300)  # --exit-on-error (default): the server gives up
    finally:
        srv.stop()
    assert code != 0
    log = srv.log_file.read_text(errors="replace")
    assert "sha256 mismatch" in log and "tampered.json" in log
