"""The `config.pbtxt` text of every model, from the contract and the checkpoint metadata.

Tensor names, dtypes and ranks come from `covidet._contract`; per-slice sizes and feature widths
from the checkpoints' metadata. Every field carries a comment saying what it is for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from covidet import __version__
from covidet import _contract as C

__all__ = [
    "CPU_HEAVY_MODELS",
    "CPU_PROFILES",
    "cpu_instances",
    "ensemble_config",
    "scan_config",
    "slice_config",
]

#: Profiles whose slice models run in ONNX Runtime on the CPU.
CPU_PROFILES = ("cpu", "cpu-int8")


@dataclass
class _Config:
    lines: list[str]

    def field(self, text: str, comment: str) -> None:
        self.lines.append(f"{text}  # {comment}")

    def raw(self, text: str) -> None:
        self.lines.append(text)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _config_dtype(wire: str) -> str:
    """Model-config enum of a wire dtype (the wire's BYTES is TYPE_STRING in config.pbtxt)."""
    return "TYPE_STRING" if wire == "BYTES" else f"TYPE_{wire}"


def _dims(dims: Iterable[int]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def _tensors(cfg: _Config, kind: str, specs: Iterable[C.TensorSpec], dims: Mapping[str, tuple]) -> None:
    for spec in specs:
        cfg.raw(f"{kind} {{")
        cfg.field(f'  name: "{spec.name}"', spec.doc or "tensor name from covidet._contract")
        cfg.field(f"  data_type: {_config_dtype(spec.dtype)}", "wire dtype from covidet._contract")
        what = "per slice (batch axis excluded)" if kind == "input" or kind == "output" else ""
        cfg.field(f"  dims: {_dims(dims.get(spec.name, spec.dims))}", f"shape {what}".strip())
        if spec.optional:
            cfg.field("  optional: true", "requests may omit it")
        cfg.raw("}")


#: What each model parameter means (the comment rendered next to its value).
_PARAMETER_DOCS = {
    "runtime": "onnxruntime (cpu profile) or torch (gpu-torch profile)",
    "model_file": "ONNX file in the version folder",
    "intra_op_threads": "ONNX Runtime threads per instance (cores / instances)",
    "allow_spinning": "false: idle ONNX Runtime workers sleep instead of busy-waiting",
    "mem_pattern": "false: no per-batch-size activation plan kept (less memory, same speed)",
    "checkpoint": "covidet checkpoint stem (.pt + .json)",
    "device": "torch device",
    "fp16": "half precision on the GPU",
    "compile": "torch.compile mode (reduce-overhead: CUDA graphs), per padded batch size; none: eager",
    "pipeline_config": "per-model preprocessing records, from the checkpoints' metadata",
    "torch_threads": "torch threads for resizing (cores / pipeline instances): no oversubscription",
    "FORCE_CPU_ONLY_INPUT_TENSORS": "no: inputs the pipeline sent from the GPU arrive on it (DLPack)",
}

#: Parameters that Triton's Python backend reads itself (the others are covidet's, for model.py).
_BACKEND_PARAMETERS = {"FORCE_CPU_ONLY_INPUT_TENSORS"}


def _parameters(cfg: _Config, params: Mapping[str, str]) -> None:
    for key, value in params.items():
        cfg.raw("parameters {")
        by_backend = key in _BACKEND_PARAMETERS
        cfg.field(f'  key: "{key}"', "read by Triton's Python backend" if by_backend else "read by model.py")
        cfg.field(f'  value: {{ string_value: "{value}" }}', _PARAMETER_DOCS.get(key, ""))
        cfg.raw("}")


def _header(cfg: _Config, spec: C.ModelSpec, *, backend: str | None, platform: str | None) -> None:
    cfg.raw(f"# {spec.doc}")
    cfg.raw(f"# Rendered by covidet {__version__} from covidet._contract; do not edit by hand.")
    cfg.field(f'name: "{spec.name}"', "model name = folder name")
    if backend:
        cfg.field(f'backend: "{backend}"', "Triton backend that runs the model")
    if platform:
        cfg.field(f'platform: "{platform}"', "engine format")
    cfg.field(
        f"max_batch_size: {spec.max_batch_size}",
        "slices per execution (dynamic batcher)" if spec.max_batch_size else "one request = one scan",
    )


def _slice_dims(spec: C.ModelSpec, meta: Mapping[str, Any]) -> dict[str, tuple]:
    """Concrete per-slice shapes from the checkpoint metadata (no size written twice)."""
    h, w = meta["preprocessing"]["input_size"]
    dims: dict[str, tuple] = {}
    for t in (*spec.inputs, *spec.outputs):
        if len(t.dims) == 3:
            dims[t.name] = (t.dims[0], h, w)
        elif t.dims == (-1,):
            dims[t.name] = (int(meta["extra"]["feature_dim"]),)
    return dims


#: CPU profile: the two heavy slice models (U-Net, DeepLabV3+: 90% of the FLOPs) get two
#: instances of half the cores each. One 2-thread session per model left a core idle whenever a
#: model waited on the pipeline; two 1-thread instances keep both busy. Measured on 2 cores,
#: 300x512x512 scans: 0.205 -> 0.232 scans/s at concurrency 4, p50 5.41 -> 4.93 s at 1.
CPU_HEAVY_MODELS = (C.LUNG_SEG.name, C.LESION_SEG.name)


def cpu_instances(spec: C.ModelSpec) -> int:
    return 2 if spec.name in CPU_HEAVY_MODELS else 1


def slice_config(spec: C.ModelSpec, meta: Mapping[str, Any], profile: str, params: dict) -> str:
    cfg = _Config([])
    trt = profile == "gpu"
    _header(cfg, spec, backend=None if trt else "python", platform="tensorrt_plan" if trt else None)
    dims = _slice_dims(spec, meta)
    _tensors(cfg, "input", spec.inputs, dims)
    _tensors(cfg, "output", spec.outputs, dims)
    cfg.raw("dynamic_batching {")
    cfg.field("  preferred_batch_size: [ 16, 32 ]", "full batches first")
    cfg.field("  max_queue_delay_microseconds: 2000", "wait up to 2 ms for slices of other scans")
    cfg.raw("}")
    cfg.raw("instance_group {")
    if profile in CPU_PROFILES and cpu_instances(spec) > 1:
        cfg.field(f"  count: {cpu_instances(spec)}", "two sessions of half the cores: no core idles")
    else:
        cfg.field("  count: 1", "one instance; ONNX Runtime / CUDA use the cores / GPU fully")
    cfg.field(f"  kind: {'KIND_CPU' if profile in CPU_PROFILES else 'KIND_GPU'}", "where it runs")
    cfg.raw("}")
    if profile == "gpu-torch":
        _warmup(cfg, spec, dims)
    if trt:
        _cuda_graphs(cfg, spec.max_batch_size)
    _parameters(cfg, params)
    return cfg.text()


def _cuda_graphs(cfg: _Config, max_batch: int) -> None:
    """TensorRT plans: a CUDA graph per batch size of the gpu-torch compile buckets.

    A batch of exactly that size replays its graph (one launch instead of one per layer); other
    sizes run the plan as usual. No ``graph_lower_bound``: it would pad, say, 17 slices to 32 and
    spend the saved launch time many times over on the full-size networks.
    """
    from covidet.ensemble import COMPILE_BUCKETS

    cfg.raw("optimization {")
    cfg.raw("  cuda {")
    cfg.field("    graphs: true", "capture CUDA graphs at load (TensorRT backend)")
    for size in (b for b in COMPILE_BUCKETS if b <= max_batch):
        cfg.raw("    graph_spec {")
        cfg.field(f"      batch_size: {size}", "slices in a batch that replays this graph")
        cfg.raw("    }")
    cfg.raw("  }")
    cfg.raw("}")


def _warmup(cfg: _Config, spec: C.ModelSpec, dims: Mapping[str, tuple]) -> None:
    """One zero batch of each compile bucket at load: torch.compile (and CUDA graph capture, and
    cuDNN's algorithm choice) happen before the model reports ready, not under the first scans."""
    from covidet.ensemble import COMPILE_BUCKETS

    (inp,) = spec.inputs
    for size in COMPILE_BUCKETS:
        cfg.raw("model_warmup {")
        cfg.field(f'  name: "batch {size}"', "one warm-up pass per padded batch size")
        cfg.field(f"  batch_size: {size}", "slices in the warm-up batch")
        cfg.raw("  inputs {")
        cfg.field(f'    key: "{inp.name}"', "the model's input")
        cfg.raw("    value {")
        cfg.field(f"      data_type: {_config_dtype(inp.dtype)}", "wire dtype from covidet._contract")
        cfg.field(f"      dims: {_dims(dims[inp.name])}", "one slice (batch axis excluded)")
        cfg.field("      zero_data: true", "zeros: only shapes matter here")
        cfg.raw("    }")
        cfg.raw("  }")
        cfg.raw("}")


def scan_config(spec: C.ModelSpec, profile: str, params: dict, instances: int) -> str:
    cfg = _Config([])
    _header(cfg, spec, backend="python", platform=None)
    _tensors(cfg, "input", spec.inputs, {})
    _tensors(cfg, "output", spec.outputs, {})
    cfg.raw("instance_group {")
    cfg.field(f"  count: {instances}", "scans processed concurrently")
    kind = "KIND_CPU" if profile in CPU_PROFILES or spec is C.PIPELINE else "KIND_GPU"
    cfg.field(f"  kind: {kind}", "where it runs")
    cfg.raw("}")
    _parameters(cfg, params)
    return cfg.text()


def ensemble_config() -> str:
    cfg = _Config([])
    spec = C.ENSEMBLE
    cfg.raw(f"# {spec.doc}")
    cfg.raw(f"# Rendered by covidet {__version__} from covidet._contract; do not edit by hand.")
    cfg.field(f'name: "{spec.name}"', "the public entry point")
    cfg.field('platform: "ensemble"', "Triton ensemble of the models below")
    cfg.field("max_batch_size: 0", "one request = one scan")
    _tensors(cfg, "input", spec.inputs, {})
    _tensors(cfg, "output", spec.outputs, {})
    # (Triton 2.51, the PyPI build, has no ensemble max_inflight_requests: memory is bounded by
    # the pipeline's instance count and its per-chunk processing instead.)
    cfg.raw("ensemble_scheduling {")
    cfg.raw("  step {")
    cfg.field(f'    model_name: "{C.PIPELINE.name}"', "the per-scan BLS orchestrator")
    cfg.field("    model_version: -1", "latest version")
    for t in C.PIPELINE.inputs:
        cfg.raw(f'    input_map {{ key: "{t.name}" value: "{t.name}" }}')
    for t in C.PIPELINE.outputs:
        cfg.raw(f'    output_map {{ key: "{t.name}" value: "{t.name}" }}')
    cfg.raw("  }")
    cfg.raw("  step {")
    cfg.field(f'    model_name: "{C.CLINICAL_SVM.name}"', "DL#3: DL#2 fused with the clinical SVM")
    cfg.field("    model_version: -1", "latest version")
    for t in C.CLINICAL_SVM.inputs:  # DL#2 from the pipeline step; CLINICAL from the request
        cfg.raw(f'    input_map {{ key: "{t.name}" value: "{t.name}" }}')
    for t in C.CLINICAL_SVM.outputs:
        cfg.raw(f'    output_map {{ key: "{t.name}" value: "{t.name}" }}')
    cfg.raw("  }")
    cfg.raw("}")
    return cfg.text()
