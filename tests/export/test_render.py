"""The rendered model repository: valid Triton configs from the contract and the checkpoints."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from covidet import _contract as C
from covidet.export import tensorrt_available
from covidet.export._admission import DEFAULT_MAX_SCAN_BYTES, budget_for, queue_size
from covidet.export._profiles import MAX_GPU_PIPELINE_INSTANCES, PIPELINE_INSTANCES, PROFILES
from covidet.export._render import (
    QUANTIZATION_FILE,
    Calibration,
    RenderError,
    render_repository,
    source_repository,
)

INT8_MODELS = PROFILES["cpu-int8"].int8_models

_TYPES = {v: k for k, v in model_config_pb2.DataType.items()}


def _config(repo: Path, name: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _no_dims(tensor: Any) -> Any:
    copy = type(tensor)()
    copy.CopyFrom(tensor)
    copy.ClearField("dims")
    return copy


def _dtype(wire: str) -> str:
    return "TYPE_STRING" if wire == "BYTES" else f"TYPE_{wire}"


def test_cpu_repository_follows_the_contract(repository: Path) -> None:
    for spec in C.all_models():
        cfg = _config(repository, spec.name)
        assert cfg.name == spec.name and cfg.max_batch_size == spec.max_batch_size
        got = [(t.name, _TYPES[t.data_type]) for t in cfg.input]
        assert got == [(t.name, _dtype(t.dtype)) for t in spec.inputs]
        assert [t.name for t in cfg.output] == [t.name for t in spec.outputs]
        header = (repository / spec.name / "config.pbtxt").read_text().splitlines()[0]
        assert f"from model_repository/{spec.name}/config.pbtxt for profile cpu" in header
        assert (repository / spec.name / "1").is_dir()  # the ensemble's too: Triton needs it
    for spec in C.SLICE_MODELS:
        cfg = _config(repository, spec.name)
        assert cfg.dynamic_batching.max_queue_delay_microseconds > 0
        assert (repository / spec.name / "1" / "model.onnx").is_file()
        meta = json.loads((repository / spec.name / "1" / "checkpoint.json").read_text())
        if len(spec.inputs[0].dims) == 3:
            assert list(cfg.input[0].dims[1:]) == meta["preprocessing"]["input_size"]
    ens = _config(repository, C.ENSEMBLE.name)
    assert ens.platform == "ensemble"
    assert [s.model_name for s in ens.ensemble_scheduling.step] == [C.PIPELINE.name, C.CLINICAL_SVM.name]
    optional = [t.name for t in ens.input if t.optional]
    assert optional == [t.name for t in C.ENSEMBLE.inputs if t.optional]


def test_cpu_pipeline_bounds_its_threads_and_chunks(repository: Path) -> None:
    from covidet.ensemble import PipelineConfig

    params = {k: v.string_value for k, v in _config(repository, C.PIPELINE.name).parameters.items()}
    assert int(params["torch_threads"]) >= 1
    assert PipelineConfig.from_repository(repository).max_inflight_chunks == 4
    assert PipelineConfig.from_repository(repository).device is None  # numpy and torch on the CPU
    for spec in C.SLICE_MODELS:
        slice_params = _config(repository, spec.name).parameters
        assert slice_params["mem_pattern"].string_value == "false"


def test_pipeline_instances_bound_the_scans_in_flight() -> None:
    def instances(profile: str, cores: int) -> int:
        return PROFILES[profile].pipeline_instances(cores)

    assert [instances("cpu", c) for c in (2, 16)] == [PIPELINE_INSTANCES] * 2
    assert instances("cpu-int8", 64) == PIPELINE_INSTANCES
    assert [instances(p, 16) for p in ("gpu", "gpu-torch")] == [8, 8]  # half the cores
    assert instances("gpu-torch", 2) == PIPELINE_INSTANCES
    assert instances("gpu", 128) == MAX_GPU_PIPELINE_INSTANCES


def test_profiles_are_one_record_each() -> None:
    assert list(PROFILES) == ["cpu", "cpu-int8", "gpu", "gpu-torch"]  # the --profile names
    assert all(name == p.name for name, p in PROFILES.items())
    with pytest.raises(KeyError, match="unknown profile 'tpu'; choose one of cpu, cpu-int8, gpu, gpu-torch"):
        PROFILES["tpu"]
    cpu, gpu = PROFILES["cpu"], PROFILES["gpu"]
    assert (cpu.instance_kind, gpu.instance_kind) == ("KIND_CPU", "KIND_GPU")
    assert (cpu.pipeline_device, gpu.pipeline_device) == (None, "cuda")
    assert [cpu.instances(s.name) for s in C.SLICE_MODELS] == [2, 1, 1, 2]  # the heavy two split
    assert gpu.runtime(C.LUNG_SEG.name) == "tensorrt" and gpu.runtime(C.GRU_FUSION.name) == "torch"
    assert PROFILES["cpu-int8"].precision_of(C.LUNG_SEG.name) == "int8"
    assert PROFILES["cpu-int8"].precision_of(C.SLICE_CLASSIFIER.name) == "float32"
    with pytest.raises(ValueError, match="int8 models run in ONNX Runtime only"):
        dataclasses.replace(gpu, int8_models=frozenset({C.LUNG_SEG.name}))


@pytest.fixture
def configs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Render configs without building weights (no ONNX export, int8 calibration, TensorRT)."""
    import covidet.export._render as R

    monkeypatch.setattr(R, "_export_onnx", lambda *a, **k: None)
    monkeypatch.setattr(R, "_quantize", lambda *a, **k: None)
    monkeypatch.setattr(R, "_build_plan", lambda *a, **k: None)


def test_cpu_render_on_two_cores_is_the_committed_repository(tmp_path: Path, configs_only: None) -> None:
    """The committed configs are what Triton loads for the cpu profile (demo checkpoints, the
    two-core development machines): rendering them changes nothing but the header."""
    # the budget that lets four of the largest scans wait beside two processing: what the default
    # (60% of the memory) gives on a 24 GiB machine
    budget = budget_for(4, DEFAULT_MAX_SCAN_BYTES, 2)
    repo = render_repository("cpu", tmp_path / "repo", threads=2, max_inflight_bytes=budget)
    src = source_repository()
    for spec in C.all_models():
        assert _config(repo, spec.name) == _config(src, spec.name), spec.name


@pytest.mark.parametrize("profile", ["cpu", "cpu-int8", "gpu", "gpu-torch"])
def test_every_profile_renders_the_committed_tensors(
    profile: str, tmp_path: Path, configs_only: None
) -> None:
    budget = 40 * DEFAULT_MAX_SCAN_BYTES
    repo = render_repository(profile, tmp_path / "repo", threads=16, max_inflight_bytes=budget)
    src = source_repository()
    pipeline = _config(repo, C.PIPELINE.name)
    waiting = pipeline.dynamic_batching.default_queue_policy.max_queue_size
    assert waiting == queue_size(budget, DEFAULT_MAX_SCAN_BYTES, pipeline.instance_group[0].count)
    for spec in C.all_models():
        got, committed = _config(repo, spec.name), _config(src, spec.name)
        if spec is C.PIPELINE:  # its queue bound follows the budget and its instances
            got.dynamic_batching.default_queue_policy.max_queue_size = waiting
            committed.dynamic_batching.default_queue_policy.max_queue_size = waiting
        for kind in ("input", "output"):  # as committed but for the checkpoint's image sizes
            assert [_no_dims(t) for t in getattr(got, kind)] == [
                _no_dims(t) for t in getattr(committed, kind)
            ]
            assert [len(t.dims) for t in getattr(got, kind)] == [
                len(t.dims) for t in getattr(committed, kind)
            ]
        assert got.max_batch_size == committed.max_batch_size
        assert got.dynamic_batching == committed.dynamic_batching
        assert got.ensemble_scheduling == committed.ensemble_scheduling
        python = (repo / spec.name / "1" / "model.py").is_file()
        assert python == (got.backend == "python"), spec.name
    kinds = {PROFILES[profile].instance_kind}
    for spec in (*C.SLICE_MODELS, C.GRU_FUSION):
        cfg = _config(repo, spec.name)
        assert {model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind) for g in cfg.instance_group} == kinds


def test_gpu_torch_profile_references_checkpoints(tmp_path: Path) -> None:
    repo = render_repository("gpu-torch", tmp_path / "repo", threads=16)
    pipeline = _config(repo, C.PIPELINE.name)
    assert pipeline.instance_group[0].count == 8  # scans in flight on a 16-core GPU node
    assert pipeline.parameters["torch_threads"].string_value == "2"
    from covidet.ensemble import PipelineConfig

    config = PipelineConfig.from_repository(repo)
    assert config.max_inflight_chunks == 16  # GPUs batch more
    assert config.device == "cuda"  # pre/post-processing on the GPU too
    assert config.device_tensors  # and the slice tensors stay there through BLS
    assert {m["precision"] for m in config.provenance().values()} == {"float16"}
    cfg = _config(repo, C.LUNG_SEG.name)
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    assert params["runtime"] == "torch" and params["device"] == "cuda"
    assert params["FORCE_CPU_ONLY_INPUT_TENSORS"] == "no"  # GPU inputs arrive on the GPU
    assert Path(params["checkpoint"]).with_suffix(".pt").is_file()
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert params["compile"] == "reduce-overhead"  # CUDA graphs per padded batch size
    from covidet.ensemble import COMPILE_BUCKETS

    assert [w.batch_size for w in cfg.model_warmup] == list(COMPILE_BUCKETS)  # compiled at load
    assert list(cfg.model_warmup[0].inputs[C.LUNG_SEG.inputs[0].name].dims) == [1, 128, 128]
    assert "compile" not in _config(repo, C.GRU_FUSION.name).parameters  # varying sequence: eager
    with pytest.raises(RenderError, match="torch_compile 'fast': choose one of reduce-overhead"):
        render_repository("gpu-torch", tmp_path / "other", torch_compile="fast")


def test_gpu_slice_configs_are_tensorrt_plans_with_cuda_graphs(tmp_path: Path, configs_only: None) -> None:
    # The gpu profile renders only where TensorRT builds plans: here its plans are not built.
    from covidet.ensemble import COMPILE_BUCKETS

    repo = render_repository("gpu", tmp_path / "repo", threads=16)
    for spec in C.SLICE_MODELS:
        meta = json.loads((repo / spec.name / "1" / "checkpoint.json").read_text())
        cfg = _config(repo, spec.name)
        assert cfg.platform == "tensorrt_plan" and not cfg.backend and not cfg.parameters
        assert not (repo / spec.name / "1" / "model.py").exists()  # Triton's TensorRT backend serves
        assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        assert cfg.optimization.cuda.graphs
        sizes = [g.batch_size for g in cfg.optimization.cuda.graph_spec]
        assert sizes == [b for b in COMPILE_BUCKETS if b <= spec.max_batch_size]
        assert not any(g.HasField("graph_lower_bound") for g in cfg.optimization.cuda.graph_spec)
        assert list(cfg.input[0].dims) == [spec.inputs[0].dims[0], *meta["preprocessing"]["input_size"]]
    gru = {k: v.string_value for k, v in _config(repo, C.GRU_FUSION.name).parameters.items()}
    assert gru["runtime"] == "torch" and gru["fp16"] == "true" and "compile" not in gru


@pytest.mark.skipif(tensorrt_available() is None, reason="TensorRT and a GPU are present")
def test_gpu_profile_needs_tensorrt(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="TensorRT is not available here"):
        render_repository("gpu", tmp_path / "repo")


def test_unknown_profile_and_missing_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="choose one of cpu, cpu-int8, gpu, gpu-torch"):
        render_repository("tpu", tmp_path)
    with pytest.raises(RenderError, match="train-demo"):
        render_repository("cpu", tmp_path / "r", tmp_path / "empty")


def test_cpu_int8_profile_quantizes_the_heavy_models(int8_repository: Path) -> None:
    repo = int8_repository
    for spec in C.SLICE_MODELS:
        vdir = repo / spec.name / "1"
        ops = {n.op_type for n in onnx.load(str(vdir / "model.onnx")).graph.node}
        cfg = _config(repo, spec.name)
        assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
        if spec.name in INT8_MODELS:
            assert "QuantizeLinear" in ops and (vdir / "model.fp32.onnx").is_file()
            record = json.loads((vdir / QUANTIZATION_FILE).read_text())
            assert record["precision"] == "int8" and record["check"]["dice"] >= 0.98
            assert cfg.instance_group[0].count == 2
        else:
            assert "QuantizeLinear" not in ops and not (vdir / QUANTIZATION_FILE).exists()
    lung = repo / C.LUNG_SEG.name / "1" / "model.onnx"
    before = lung.stat().st_mtime_ns
    render_repository("cpu-int8", repo)  # cached: same float graph, quantizer and calibration
    assert lung.stat().st_mtime_ns == before


def test_cpu_int8_diagnoses_like_float(
    int8_repository: Path,
    repository: Path,
    phantoms: dict[str, Any],
    diagnose_in_process: Callable[..., dict[str, np.ndarray]],
) -> None:
    from covidet.metrics import dice

    def run(repo: Path, ph: Any) -> dict[str, np.ndarray]:
        return diagnose_in_process(repo, ph, return_masks=True)

    for kind in ("COVID-19", "non-pneumonia"):
        f, q = run(repository, phantoms[kind]), run(int8_repository, phantoms[kind])
        assert dice(f["LUNG_MASK"], q["LUNG_MASK"]) > 0.99
        np.testing.assert_allclose(q["LUNG_VOLUME_ML"], f["LUNG_VOLUME_ML"], rtol=0.02)
        np.testing.assert_allclose(q["LESION_RATIO"], f["LESION_RATIO"], atol=0.01)
        np.testing.assert_allclose(q["CLASS_PROBS"], f["CLASS_PROBS"], atol=0.05)
        assert int(np.argmax(q["CLASS_PROBS"])) == int(np.argmax(f["CLASS_PROBS"]))
    int8, fp32 = (json.loads(r["PROVENANCE"][0].decode()) for r in (q, f))  # answers say what ran
    assert (int8["lung_seg"]["precision"], int8["lesion_seg"]["precision"]) == ("int8", "int8")
    assert int8["slice_classifier"]["precision"] == fp32["lung_seg"]["precision"] == "float32"


def test_int8_calibration_needs_two_scans() -> None:
    with pytest.raises(RenderError, match="at least 2 scans"):
        Calibration.from_scans([np.zeros((4, 64, 64), np.int16)])
    two = Calibration.from_scans([np.zeros((4, 64, 64), np.int16), np.ones((4, 64, 64), np.int16)])
    assert len(two.calibrate) == len(two.check) == 1
    assert two.fingerprint != Calibration(two.check, two.calibrate).fingerprint


def test_int8_of_real_checkpoints_needs_real_calibration(tmp_path: Path) -> None:
    import shutil

    from covidet.export._render import default_checkpoints

    ckpt = tmp_path / "ckpt"
    shutil.copytree(default_checkpoints(), ckpt)
    meta = json.loads((ckpt / "lesion_seg.json").read_text())
    (ckpt / "lesion_seg.json").write_text(json.dumps({**meta, "variant": "full"}))
    with pytest.raises(RenderError, match=r"non-demo checkpoints \(lesion_seg\) needs calibration"):
        render_repository("cpu-int8", tmp_path / "r", ckpt)
    two = Calibration.phantoms(n_slices=2, size=64)
    with pytest.raises(RenderError, match="calibration scans are for profile cpu-int8, not cpu"):
        render_repository("cpu", tmp_path / "r", calibration=two)
