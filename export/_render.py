"""Render the Triton model repository for a deployment profile.

The committed `model_repository/` is the source: each model's `config.pbtxt` (checked against
`covidet._contract`) and `1/model.py`. Rendering copies it and fills in what a profile
(`covidet.export._profiles.Profile`), the node and the checkpoints decide: the configs through
`covidet.export._configs`, and the weights: ONNX files (ONNX Runtime, and the TensorRT build),
int8 graphs, TensorRT plans, or checkpoint references (torch).
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
from covidet.errors import ArtifactError, DeploymentError
from covidet.export._admission import DEFAULT_MAX_SCAN_BYTES, default_inflight_bytes, queue_size
from covidet.export._configs import (
    config_text,
    model_config,
    pipeline_config,
    read_config,
    runtime_parameters,
)
from covidet.export._profiles import PROFILES, Profile
from covidet.preprocessing import PreprocessingRecord, record_from_json

__all__ = [
    "CPU_PROFILES",
    "PROFILES",
    "QUANTIZATION_FILE",
    "TORCH_COMPILE_MODES",
    "Calibration",
    "Profile",
    "RenderError",
    "checkpoint_metadata",
    "default_checkpoints",
    "get_profile",
    "render_repository",
    "source_repository",
]

#: Names of the profiles that need no GPU (for callers that list them; branch on a `Profile`'s
#: fields instead).
CPU_PROFILES = tuple(name for name, p in PROFILES.items() if p.device == "cpu")
#: `torch.compile` modes of the gpu-torch slice models ("none": eager).
TORCH_COMPILE_MODES = ("reduce-overhead", "default", "max-autotune", "none")
#: File beside an int8 model.onnx recording how it was checked against the float graph.
QUANTIZATION_FILE = "quantization.json"
#: The committed config whose presence marks a folder as the model_repository sources.
_MARKER = Path(C.ENSEMBLE.name) / "config.pbtxt"


class RenderError(DeploymentError, RuntimeError):
    """The repository cannot be rendered (missing checkpoint, unknown profile, no TensorRT...)."""


def get_profile(profile: str | Profile) -> Profile:
    """The `Profile` of a `--profile` name (a `Profile` is returned as it is)."""
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError as exc:  # its message lists the valid names
        raise RenderError(exc.args[0]) from None


def _package_dir() -> Path:
    """The `covidet` package's own folder (an editable install's links resolved to the checkout)."""
    import covidet

    return Path(covidet.__file__).resolve().parent


def source_repository() -> Path:
    """The `model_repository/` with the committed configs and `model.py` sources (a wheel: its
    packaged copy; a checkout: the folder at its root)."""
    pkg = _package_dir()
    for candidate in (pkg / "_model_repository", pkg.parent.parent / "model_repository"):
        if (candidate / _MARKER).is_file():
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


def _explain_checkpoint(checkpoints: Path, metas: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The classifier's checkpoint for the pipeline's Guided Grad-CAM (torch, in its process);
    None where its architecture has no class activation maps (the explanation is then refused
    by the classifier's export already) or the server has no torch to run it."""
    from covidet.models import supports_cam

    name = C.SLICE_CLASSIFIER.name
    if not supports_cam(str(metas[name].get("architecture"))) or importlib.util.find_spec("torch") is None:
        return None
    return str((checkpoints / name).resolve())


def _rename_io(path: Path, spec: C.ModelSpec) -> None:
    """Give the ONNX graph the contract's tensor names (TensorRT plans keep them): its input, and
    its outputs in the contract's order (the slice classifier has two)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    if len(graph.output) != len(spec.outputs):
        raise ArtifactError(
            f"{spec.name}: the exported graph has {len(graph.output)} outputs, the contract "
            f"{len(spec.outputs)} ({', '.join(t.name for t in spec.outputs)}): re-export the "
            "checkpoint with this version of covidet"
        )
    renames = {graph.input[0].name: spec.inputs[0].name}
    renames.update((o.name, t.name) for o, t in zip(graph.output, spec.outputs, strict=True))
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    graph.input[0].name = spec.inputs[0].name
    for output, tensor in zip(graph.output, spec.outputs, strict=True):
        output.name = tensor.name
    onnx.save(model, str(path))


#: How each model that may run int8 builds its input from HU slices (the pipeline's own
#: preprocessing), to calibrate and check the int8 graph on.
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

    def inputs(self, model: str, record: PreprocessingRecord) -> tuple[np.ndarray, np.ndarray]:
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
        report = quantize_onnx(
            src, tmp, *calibration.inputs(spec.name, record_from_json(meta["preprocessing"]))
        )
    except ExportError as exc:
        tmp.unlink(missing_ok=True)
        raise RenderError(f"{spec.name}: int8 quantization rejected: {exc}") from exc
    os.replace(tmp, out)
    record.write_text(json.dumps({"precision": "int8", "check": report.to_json()}, indent=2))
    stamp.write_text(key)


def _build_plan(onnx_path: Path, plan: Path, meta: Mapping[str, Any], cache: Path, *, fp16: bool) -> None:
    from covidet.export import build_tensorrt_engine

    build_tensorrt_engine(
        onnx_path,
        plan,
        max_batch=C.SLICE_BATCH,
        input_hw=record_from_json(meta["preprocessing"]).input_size,  # type: ignore[union-attr]
        fp16=fp16,
        timing_cache=cache,
    )


def render_repository(
    profile: str | Profile = "cpu",
    out_dir: Path | str = Path("build/model_repository"),
    checkpoints: Path | str | None = None,
    *,
    threads: int | None = None,
    calibration: Calibration | None = None,
    torch_compile: str = "reduce-overhead",
    max_inflight_bytes: int | None = None,
    max_scan_bytes: int = DEFAULT_MAX_SCAN_BYTES,
) -> Path:
    """Write a complete Triton model repository for `profile` (a name of `PROFILES`, or a
    `Profile`) into `out_dir` and return it.

    ``calibration``: the scans that calibrate and check the int8 models of a profile that has
    some (cpu-int8; default: `Calibration.phantoms`, the demo models' own domain; give real scans
    for real checkpoints). ``torch_compile``: the `torch.compile` mode of the torch slice models
    (``none``: eager; each compiled batch-size bucket is compiled by Triton's warm-up at load).
    ``max_inflight_bytes`` (default: `covidet.export._admission.default_inflight_bytes`) bounds the
    scan input bytes the server holds at once, scans of at most ``max_scan_bytes`` each."""
    from covidet.ensemble import DEFAULT_INFLIGHT_CHUNKS, PIPELINE_CONFIG_FILE, PipelineConfig, usable_cores

    prof = get_profile(profile)
    ckpt = Path(checkpoints) if checkpoints else default_checkpoints()
    out = Path(out_dir).resolve()
    src = source_repository()
    metas = checkpoint_metadata(ckpt)
    if torch_compile not in TORCH_COMPILE_MODES:
        raise RenderError(f"torch_compile {torch_compile!r}: choose one of {', '.join(TORCH_COMPILE_MODES)}")
    if calibration is not None and not prof.int8_models:
        int8 = " or ".join(name for name, p in PROFILES.items() if p.int8_models)
        raise RenderError(f"calibration scans are for profile {int8}, not {prof.name}")
    if prof.int8_models and calibration is None:
        foreign = sorted(n for n in prof.int8_models if metas[n].get("variant") != "demo")
        if foreign:  # phantoms are the demo models' own domain, nobody else's
            raise RenderError(
                f"profile {prof.name} with non-demo checkpoints ({', '.join(foreign)}) needs "
                f"calibration scans like the ones to be served: `covidet export --profile {prof.name} "
                "--calibration SCAN SCAN...`, then `covidet serve --model-repository` on the result"
            )
    out.mkdir(parents=True, exist_ok=True)
    threads = threads or usable_cores()  # a container's CPU limit counts, not the node's cores

    def write_config(cfg: Any) -> None:
        (out / cfg.name / "config.pbtxt").write_text(config_text(cfg, profile=prof))

    for spec in C.all_models():  # every model's version folder, with its model.py if it has one
        vsrc, vdir = src / spec.name / "1", out / spec.name / "1"
        vdir.mkdir(parents=True, exist_ok=True)  # an ensemble's is empty, but Triton wants it
        if vsrc.is_dir():
            shutil.copytree(vsrc, vdir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))

    for spec in (*C.SLICE_MODELS, C.GRU_FUSION):
        vdir = out / spec.name / "1"
        stem = (ckpt / spec.name).resolve()
        meta = metas[spec.name]
        runtime = prof.runtime(spec.name)
        (vdir / "checkpoint.json").write_text(json.dumps(meta, indent=2))
        if spec.name in prof.int8_models:
            _export_onnx(stem, spec, vdir / "model.fp32.onnx")
            calibration = calibration or Calibration.phantoms()
            _quantize(spec, meta, vdir, calibration)
        elif runtime in ("onnxruntime", "tensorrt"):  # the graph to run, or to build the plan from
            _export_onnx(stem, spec, vdir / "model.onnx")
        if runtime == "tensorrt":
            fp16 = prof.precision == "float16"
            _build_plan(vdir / "model.onnx", vdir / "model.plan", meta, out / ".trt_timing.cache", fp16=fp16)
            (vdir / "model.py").unlink()  # Triton's TensorRT backend serves the plan
        committed = read_config(src / spec.name / "config.pbtxt")
        params = runtime_parameters(
            spec,
            prof,
            {k: v.string_value for k, v in committed.parameters.items()},
            threads=threads,
            checkpoint=stem,
            torch_compile=torch_compile,
        )
        write_config(model_config(committed, spec, prof, params, meta))

    pipeline = PipelineConfig(
        # each answer's PROVENANCE says which numerics ran, beside the checkpoint's identity
        models={name: {**meta, "precision": prof.precision_of(name)} for name, meta in metas.items()},
        max_inflight_chunks=prof.inflight_chunks or DEFAULT_INFLIGHT_CHUNKS,
        device=prof.pipeline_device,
        device_tensors=prof.device_tensors,
        explain_checkpoint=_explain_checkpoint(ckpt, metas),
        max_scan_bytes=max_scan_bytes,
    )
    (out / C.PIPELINE.name / "1" / PIPELINE_CONFIG_FILE).write_text(pipeline.to_json())
    instances = prof.pipeline_instances(threads)
    committed = read_config(src / C.PIPELINE.name / "config.pbtxt")
    # torch threads: the node's cores shared among the instances, so they never oversubscribe
    params = {"pipeline_config": PIPELINE_CONFIG_FILE, "torch_threads": str(max(1, threads // instances))}
    budget = default_inflight_bytes() if max_inflight_bytes is None else max_inflight_bytes
    waiting = queue_size(budget, max_scan_bytes, instances, strict=max_inflight_bytes is not None)
    write_config(pipeline_config(committed, params, instances=instances, max_queue_size=waiting))

    for spec in (C.CLINICAL_SVM, C.PROGRESSION_GPR, C.ENSEMBLE):  # nothing in them depends on the profile
        write_config(read_config(src / spec.name / "config.pbtxt"))
    return out
