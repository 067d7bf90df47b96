"""The committed model_repository/: a Triton model repository that follows covidet._contract."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as M

from covidet import _contract as C

SOURCE = Path(__file__).resolve().parents[1] / "model_repository"
SPECS = {spec.name: spec for spec in C.all_models()}


def _config(name: str) -> M.ModelConfig:
    return text_format.Parse((SOURCE / name / "config.pbtxt").read_text(), M.ModelConfig())


def _dtype(wire: str) -> int:
    """The config enum of a wire dtype (the wire's BYTES is TYPE_STRING in config.pbtxt)."""
    return M.DataType.Value("TYPE_STRING" if wire == "BYTES" else f"TYPE_{wire}")


def test_one_folder_per_contract_model() -> None:
    folders = {p.name for p in SOURCE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(SPECS)


@pytest.mark.parametrize("name", list(SPECS))
def test_config_follows_the_contract(name: str) -> None:
    spec, cfg = SPECS[name], _config(name)
    assert cfg.name == spec.name
    assert cfg.max_batch_size == spec.max_batch_size
    for got, want in ((cfg.input, spec.inputs), (cfg.output, spec.outputs)):
        assert [t.name for t in got] == [t.name for t in want]
        for tensor, contract in zip(got, want, strict=True):
            assert tensor.data_type == _dtype(contract.dtype), tensor.name
            assert len(tensor.dims) == len(contract.dims), tensor.name
            for d, c in zip(tensor.dims, contract.dims, strict=True):  # -1: a size of its own
                assert d == c or (c == -1 and (d > 0 or d == -1)), (tensor.name, list(tensor.dims))
    assert [t.optional for t in cfg.input] == [t.optional for t in spec.inputs]


@pytest.mark.parametrize("name", list(SPECS))
def test_python_models_have_their_model_py(name: str) -> None:
    cfg = _config(name)
    assert (SOURCE / name / "1").is_dir()  # Triton needs the version folder, an ensemble's too
    if cfg.platform == "ensemble":
        assert (SOURCE / name / "1" / ".gitkeep").is_file()
    else:
        assert cfg.backend == "python"
        assert (SOURCE / name / "1" / "model.py").is_file()


def test_slice_models_batch_slices_and_share_one_adapter() -> None:
    sources = {}
    for spec in C.SLICE_MODELS:
        cfg = _config(spec.name)
        assert cfg.dynamic_batching.max_queue_delay_microseconds > 0
        assert max(cfg.dynamic_batching.preferred_batch_size) == C.SLICE_BATCH
        text = (SOURCE / spec.name / "1" / "model.py").read_text()
        assert "(SliceModel)" in text
        sources[spec.name] = {ln.strip() for ln in text.splitlines() if ln.strip()}
    for a, b in itertools.combinations(sources, 2):  # a short adapter each, not a template's copies
        assert len(sources[a] & sources[b]) < 6, (a, b)


def test_ensemble_steps_connect_the_contract() -> None:
    cfg = _config(C.ENSEMBLE.name)
    assert cfg.platform == "ensemble"
    steps = cfg.ensemble_scheduling.step
    assert [s.model_name for s in steps] == [C.PIPELINE.name, C.CLINICAL_SVM.name]
    available = {t.name: t for t in C.ENSEMBLE.inputs}  # ensemble tensors known so far
    produced: set[str] = set()
    for step in steps:
        spec = SPECS[step.model_name]
        assert set(step.input_map) == {t.name for t in spec.inputs}
        for t in spec.inputs:
            source = available[step.input_map[t.name]]
            assert (source.dtype, source.dims) == (t.dtype, t.dims), t.name
            if source.optional:  # an optional request tensor feeds only an optional model input
                assert t.optional, t.name
        assert set(step.output_map) == {t.name for t in spec.outputs}
        for t in spec.outputs:
            name = step.output_map[t.name]
            assert name not in available, f"{name} produced twice"
            available[name] = t
            produced.add(name)
    assert {t.name for t in C.ENSEMBLE.outputs} <= produced
    for t in C.ENSEMBLE.outputs:
        assert (available[t.name].dtype, available[t.name].dims) == (t.dtype, t.dims), t.name


def test_pipeline_config_file_is_the_one_the_render_writes() -> None:
    from covidet.ensemble import PIPELINE_CONFIG_FILE

    params = _config(C.PIPELINE.name).parameters
    assert params["pipeline_config"].string_value == PIPELINE_CONFIG_FILE


def test_a_model_is_found_by_name_and_an_unknown_one_lists_the_valid_names() -> None:
    assert C.model_spec("slice_classifier") is C.SLICE_CLASSIFIER
    with pytest.raises(KeyError, match="valid names: lung_seg"):
        C.model_spec("slice_clasifier")
