"""Render the Triton model repository for a deployment profile.

One source of truth: tensor names, dtypes and ranks come from `covidet._contract`; spatial sizes,
feature widths and provenance from the checkpoints' metadata. `model.py` files are copied from the
source `model_repository/`; ONNX files (cpu), checkpoint references (gpu-torch) and TensorRT plans
(gpu) are generated; the `config.pbtxt` texts come from `covidet.export._configs`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from covidet import __version__
from covidet import _contract as C
from covidet.errors import DeploymentError
from covidet.export._configs import (
    CPU_HEAVY_MODELS,
    CPU_PROFILES,
    cpu_instances,
    ensemble_config,
    scan_config,
    slice_config,
)

__all__ = [
    "CPU_PROFILES",
    "PROFILES",
    "QUANTIZATION_FILE",
    "TORCH_COMPILE_MODES",
    "Calibration",
    "RenderError",
    "checkpoint_metadata",
    "default_checkpoints",
    "render_repository",
    "source_repository",
]

PROFILES = ("cpu", "cpu-int8", "gpu", "gpu-torch")
#: `torch.compile` modes of the gpu-torch slice models ("none": eager).
TORCH_COMPILE_MODES = ("reduce-overhead", "default", "max-autotune", "none")
#: File beside an int8 model.onnx recording how it was checked against the float graph.
QUANTIZATION_FILE = "quantization.json"
#: The Python file that serves all four slice models.
_SLICE_TEMPLATE = "slice_model"
#: Instances of the per-scan orchestrator: two scans overlap (one pre/post-processes while the
#: other's slices run) and their slices share batches. Each instance holds a whole scan in memory;
#: 4 instances cost 2.4 GB more peak memory at concurrency 8 for no throughput on 2 cores.
PIPELINE_INSTANCES = 2
#: At most this many orchestrator instances on the GPU profiles (`pipeline_instances`): each holds
#: a scan in host memory and up to ~0.4 GB of /dev/shm (the chart's 4 GiB `shm.sizeLimit`).
MAX_GPU_PIPELINE_INSTANCES = 8


def pipeline_instances(profile: str, cores: int) -> int:
    """Orchestrator instances of ``profile`` on a node with ``cores`` CPU cores.

    An instance runs one scan at a time, so the instances bound the scans in flight: throughput
    <= instances / latency (Little's law), and each scan's host work (~0.25-0.3 core-s with
    pre/post on the GPU, run in its instance's one Python thread) caps an instance at ~3-4 scans/s.
    The GPU profiles' 25 scans/s therefore need about 8: half the cores, at most
    `MAX_GPU_PIPELINE_INSTANCES`, at least `PIPELINE_INSTANCES`. The CPU profiles keep two (more
    cost memory and bring nothing on cores the slice models already fill).
    """
    if profile in CPU_PROFILES:
        return PIPELINE_INSTANCES
    return max(PIPELINE_INSTANCES, min(MAX_GPU_PIPELINE_INSTANCES, cores // 2))


#: Chunks of one scan in flight per slice model (`PipelineConfig.max_inflight_chunks`) on the GPU
#: profiles: a GPU batches more slices of each scan at once. The CPU profile keeps the default
#: (`covidet.ensemble.DEFAULT_INFLIGHT_CHUNKS`, 4: both slice-model instances busy, a scan's
#: memory bounded).
GPU_INFLIGHT_CHUNKS = 16


class RenderError(DeploymentError, RuntimeError):
    """The repository cannot be rendered (missing checkpoint, unknown profile, no TensorRT...)."""


def _package_dir() -> Path:
    """The `covidet` package's own folder (an editable install's links resolved to the checkout)."""
    import covidet

    return Path(covidet.__file__).resolve().parent


def source_repository() -> Path:
    """The `model_repository/` with the committed configs and `model.py` sources (a wheel: its
    packaged copy; a checkout: the folder at its root)."""
    pkg = _package_dir()
    for candidate in (pkg / "_model_repository", pkg.parent.parent / "model_repository"):
        if (candidate / _SLICE_TEMPLATE / "1" / "model.py").is_file():
            return candidate
    raise RenderError(f"model_repository sources not found next to {pkg}; reinstall covidet")


def default_checkpoints() -> Path:
    """The demo checkpoints shipped with the package (trained on phantoms by `train-demo`)."""
    return _package_dir() / "checkpoints" / "demo"


def checkpoint_metadata(checkpoints: Path) -> dict[str, dict[str, Any]]:
    """Metadata JSON of each model's checkpoint, keyed by contract model name."""
    metas: dict[str, dict[str, Any]] = {}
    for spec in (*C.SLICE_MODELS, C.GRU_FUSION):
        path = checkpoints / f"{spec.name}.json"
        if not path.is_file():
            raise RenderError(
                f"checkpoint metadata {path} is missing: expected {spec.name}.pt and "
                f"{spec.name}.json in {checkpoints} (run `covidet train-demo` to create them)"
            )
        meta = json.loads(path.read_text())
        if meta.get("architecture") != spec.architecture:
            raise RenderError(
                f"{path}: architecture {meta.get('architecture')!r} does not match the "
                f"{spec.name} model, which serves {spec.architecture!r}"
            )
        metas[spec.name] = meta
    return metas


# --- artefacts -------------------------------------------------------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _export_onnx(stem: Path, spec: C.ModelSpec, out: Path) -> None:
    """Checkpoint -> ONNX (verified against PyTorch), cached by checkpoint, exporter and version."""
    exporter = importlib.util.find_spec("covidet.export._onnx")  # its source, without importing torch
    assert exporter is not None and exporter.origin is not None
    key = f"{_sha(stem.with_suffix('.pt'))}:{_sha(Path(exporter.origin))}:{__version__}:{spec.name}"
    stamp = out.with_suffix(".key")
    if out.is_file() and stamp.is_file() and stamp.read_text() == key:
        return
    from covidet.export import export_onnx
    from covidet.models import load_checkpoint

    model, meta = load_checkpoint(stem)
    tmp = out.with_suffix(".tmp.onnx")
    export_onnx(model, meta, tmp)
    _rename_io(tmp, spec)
    os.replace(tmp, out)
    stamp.write_text(key)


def _rename_io(path: Path, spec: C.ModelSpec) -> None:
    """Give the ONNX graph the contract's tensor names (TensorRT plans keep them)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    renames = {graph.input[0].name: spec.inputs[0].name, graph.output[0].name: spec.outputs[0].name}
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    graph.input[0].name = spec.inputs[0].name
    graph.output[0].name = spec.outputs[0].name
    onnx.save(model, str(path))


#: cpu-int8 profile: the two heavy models run int8 (static QDQ, checked against float on masks).
#: The classifier and encoder see 35 slices per scan (3% of the FLOPs) and stay float.
INT8_MODELS = CPU_HEAVY_MODELS
#: How each int8 model's input is built from HU slices (the pipeline's own preprocessing).
_MODEL_INPUTS = {C.LUNG_SEG.name: "lung_input", C.LESION_SEG.name: "lesion_input"}


@dataclass(frozen=True)
class Calibration:
    """HU volumes ([S,H,W]) that calibrate int8 ranges, and other volumes that check the result."""

    calibrate: tuple[np.ndarray, ...]
    check: tuple[np.ndarray, ...]

    @classmethod
    def phantoms(cls, n_slices: int = 16, size: int = 256) -> Calibration:
        """One phantom per class to calibrate, one more per class (other seeds) to check."""
        from covidet.phantom import make_phantom

        def scans(seed: int) -> tuple[np.ndarray, ...]:
            return tuple(
                make_phantom(kind, n_slices=n_slices, size=size, seed=seed + i).hu
                for i, kind in enumerate(C.CLASS_NAMES)
            )

        return cls(scans(100), scans(200))

    @classmethod
    def from_scans(cls, volumes: Iterable[np.ndarray]) -> Calibration:
        """Real scans: the first half calibrates, the second half checks (at least two scans)."""
        vols = tuple(np.asarray(v) for v in volumes)
        if len(vols) < 2:
            raise RenderError(
                f"int8 calibration needs at least 2 scans (half calibrate, half check); got {len(vols)}"
            )
        half = (len(vols) + 1) // 2
        return cls(vols[:half], vols[half:])

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of every volume, computed once however many models it calibrates."""
        h = hashlib.sha256()
        for group in (self.calibrate, self.check):
            h.update(f"{len(group)};".encode())
            for v in group:
                a = np.ascontiguousarray(v)
                h.update(f"{a.dtype}{a.shape};".encode() + a.tobytes())
        return h.hexdigest()

    def inputs(self, model: str, record: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """The model's (calibration, check) inputs, built by the pipeline's preprocessing."""
        from covidet import ensemble as P

        make = getattr(P, _MODEL_INPUTS[model])
        return (
            np.concatenate([make(v, record) for v in self.calibrate]),
            np.concatenate([make(v, record) for v in self.check]),
        )


def _quantize(spec: C.ModelSpec, meta: Mapping[str, Any], vdir: Path, calibration: Calibration) -> None:
    """model.fp32.onnx -> int8 model.onnx, checked on masks; cached by float graph, quantizer, data."""
    quantizer = importlib.util.find_spec("covidet.export._quantize")
    assert quantizer is not None and quantizer.origin is not None
    src, out = vdir / "model.fp32.onnx", vdir / "model.onnx"
    key = ":".join(
        ("int8", src.with_suffix(".key").read_text(), _sha(Path(quantizer.origin)), calibration.fingerprint)
    )
    stamp, record = out.with_suffix(".key"), vdir / QUANTIZATION_FILE
    if out.is_file() and record.is_file() and stamp.is_file() and stamp.read_text() == key:
        return
    from covidet.export import ExportError, quantize_onnx

    tmp = vdir / "model.int8.tmp.onnx"
    try:
        report = quantize_onnx(src, tmp, *calibration.inputs(spec.name, meta["preprocessing"]))
    except ExportError as exc:
        tmp.unlink(missing_ok=True)
        raise RenderError(f"{spec.name}: int8 quantization rejected: {exc}") from exc
    os.replace(tmp, out)
    record.write_text(json.dumps({"precision": "int8", "check": report.to_json()}, indent=2))
    stamp.write_text(key)


def _precision(profile: str, model: str) -> str:
    """The numerics a model runs with in ``profile`` (reported in every answer's provenance)."""
    if profile in CPU_PROFILES:
        return "int8" if profile == "cpu-int8" and model in INT8_MODELS else "float32"
    return "float16"  # TensorRT FP16 plans (gpu) and torch CUDA FP16 (gpu-torch, and the GRU on gpu)


def _build_plan(onnx_path: Path, plan: Path, meta: Mapping[str, Any], cache: Path) -> None:
    from covidet.export import build_tensorrt_engine

    build_tensorrt_engine(
        onnx_path,
        plan,
        max_batch=C.SLICE_BATCH,
        input_hw=tuple(meta["preprocessing"]["input_size"]),
        fp16=True,
        timing_cache=cache,
    )


def render_repository(
    profile: str = "cpu",
    out_dir: Path | str = Path("build/model_repository"),
    checkpoints: Path | str | None = None,
    *,
    threads: int | None = None,
    calibration: Calibration | None = None,
    torch_compile: str = "reduce-overhead",
) -> Path:
    """Write a complete Triton model repository for `profile` into `out_dir` and return it.

    ``calibration``: the scans that calibrate and check the int8 models of profile ``cpu-int8``
    (default: `Calibration.phantoms`, the demo models' own domain; give real scans for real
    checkpoints). ``torch_compile``: the `torch.compile` mode of the gpu-torch slice models
    (``none``: eager; each compiled batch-size bucket is compiled by Triton's warm-up at load)."""
    from covidet.ensemble import DEFAULT_INFLIGHT_CHUNKS, PIPELINE_CONFIG_FILE, PipelineConfig, usable_cores

    if profile not in PROFILES:
        raise RenderError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    ckpt = Path(checkpoints) if checkpoints else default_checkpoints()
    out = Path(out_dir).resolve()
    src = source_repository()
    metas = checkpoint_metadata(ckpt)
    if torch_compile not in TORCH_COMPILE_MODES:
        raise RenderError(f"torch_compile {torch_compile!r}: choose one of {', '.join(TORCH_COMPILE_MODES)}")
    if calibration is not None and profile != "cpu-int8":
        raise RenderError(f"calibration scans are for profile cpu-int8, not {profile}")
    if profile == "cpu-int8" and calibration is None:
        foreign = sorted(n for n in INT8_MODELS if metas[n].get("variant") != "demo")
        if foreign:  # phantoms are the demo models' own domain, nobody else's
            raise RenderError(
                f"profile cpu-int8 with non-demo checkpoints ({', '.join(foreign)}) needs calibration "
                "scans like the ones to be served: `covidet export --profile cpu-int8 --calibration "
                "SCAN SCAN...`, then `covidet serve --model-repository` on the result"
            )
    out.mkdir(parents=True, exist_ok=True)
    threads = threads or usable_cores()  # a container's CPU limit counts, not the node's cores

    for spec in (*C.SLICE_MODELS, C.GRU_FUSION):
        vdir = out / spec.name / "1"
        vdir.mkdir(parents=True, exist_ok=True)
        stem = (ckpt / spec.name).resolve()
        template = _SLICE_TEMPLATE if spec in C.SLICE_MODELS else spec.name
        (vdir / "checkpoint.json").write_text(json.dumps(metas[spec.name], indent=2))
        if profile == "cpu-int8" and spec.name in INT8_MODELS:
            _export_onnx(stem, spec, vdir / "model.fp32.onnx")
            calibration = calibration or Calibration.phantoms()
            _quantize(spec, metas[spec.name], vdir, calibration)
        elif profile in CPU_PROFILES or profile == "gpu":
            _export_onnx(stem, spec, vdir / "model.onnx")
        if profile in CPU_PROFILES:
            params = {
                "runtime": "onnxruntime",
                "model_file": "model.onnx",
                "intra_op_threads": str(max(1, threads // cpu_instances(spec))),
                # idle ORT workers sleep instead of spinning: +9% scans/s at concurrency 4
                "allow_spinning": "false",
                "mem_pattern": "false",
            }
        else:
            params = {"runtime": "torch", "checkpoint": str(stem), "device": "cuda", "fp16": "true"}
            if spec in C.SLICE_MODELS:  # the GRU's sequence length varies per scan: eager
                params["compile"] = torch_compile
                # the pipeline's GPU tensors arrive as they are (DLPack through BLS)
                params["FORCE_CPU_ONLY_INPUT_TENSORS"] = "no"
        if profile == "gpu" and spec in C.SLICE_MODELS:
            _build_plan(vdir / "model.onnx", vdir / "model.plan", metas[spec.name], out / ".trt_timing.cache")
            (vdir / "model.py").unlink(missing_ok=True)
            text = slice_config(spec, metas[spec.name], profile, {})
        else:
            shutil.copy2(src / template / "1" / "model.py", vdir / "model.py")
            if spec in C.SLICE_MODELS:
                text = slice_config(spec, metas[spec.name], profile, params)
            else:
                text = scan_config(spec, profile, params, instances=1)
        (out / spec.name / "config.pbtxt").write_text(text)

    pdir = out / C.PIPELINE.name / "1"
    pdir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / C.PIPELINE.name / "1" / "model.py", pdir / "model.py")
    (pdir / PIPELINE_CONFIG_FILE).write_text(
        PipelineConfig(
            # each answer's PROVENANCE says which numerics ran, beside the checkpoint's identity
            models={name: {**meta, "precision": _precision(profile, name)} for name, meta in metas.items()},
            max_inflight_chunks=DEFAULT_INFLIGHT_CHUNKS if profile in CPU_PROFILES else GPU_INFLIGHT_CHUNKS,
            # GPU profiles window, resize and up-sample on the GPU: the CPU would need ~15 cores
            # for that alone at 25 scans/s (0.58 CPU-s a 300x512x512 scan with the demo grids)
            device=None if profile in CPU_PROFILES else "cuda",
            # ... and hand the slice models their inputs there, and take their outputs there
            device_tensors=profile not in CPU_PROFILES,
        ).to_json()
    )
    (out / C.PIPELINE.name / "config.pbtxt").write_text(
        scan_config(
            C.PIPELINE,
            profile,
            # one torch thread per instance on 2 cores: 0.350-0.377 scans/s at concurrency 2 (two
            # runs) against 0.325 with torch's default of a thread per core in each instance
            {
                "pipeline_config": PIPELINE_CONFIG_FILE,
                "torch_threads": str(max(1, threads // pipeline_instances(profile, threads))),
            },
            pipeline_instances(profile, threads),
        )
    )
    for spec in (C.CLINICAL_SVM, C.PROGRESSION_GPR):  # Python models with their own config
        shutil.copytree(
            src / spec.name, out / spec.name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    (out / C.ENSEMBLE.name / "1").mkdir(parents=True, exist_ok=True)
    (out / C.ENSEMBLE.name / "config.pbtxt").write_text(ensemble_config())
    return out
