"""Each model's `config.pbtxt` for a profile: the committed one, with the per-profile fields filled in.

The committed ``model_repository/<model>/config.pbtxt`` files are the source (data, checked against
`covidet._contract` by tests/test_model_repository.py); as committed they are the default cpu
profile with the demo checkpoints. Rendering parses one as a Triton ``ModelConfig``, changes only
what a profile, a node or a checkpoint decides (instance kind and count, runtime parameters,
backend or platform, image sizes and feature widths, warm-up, CUDA graphs), and writes it back as
text. Tensor names and dtypes are never written here: they come from the committed file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as M

from covidet import __version__
from covidet import _contract as C
from covidet.export._profiles import Profile
from covidet.preprocessing import record_from_json

__all__ = [
    "config_text",
    "model_config",
    "pipeline_config",
    "read_config",
    "runtime_parameters",
]


def read_config(path: Path) -> M.ModelConfig:
    """Parse a ``config.pbtxt`` (comments allowed) as a Triton ``ModelConfig``."""
    return text_format.Parse(path.read_text(), M.ModelConfig())


def config_text(cfg: M.ModelConfig, *, profile: Profile) -> str:
    """The rendered ``config.pbtxt`` text of ``cfg``: one header line, then the fields."""
    header = (
        f"# Rendered by covidet {__version__} from model_repository/{cfg.name}/config.pbtxt for "
        f"profile {profile.name}: edit that file, not this one.\n"
    )
    return header + text_format.MessageToString(cfg, use_short_repeated_primitives=True)


def runtime_parameters(
    spec: C.ModelSpec,
    profile: Profile,
    committed: Mapping[str, str],
    *,
    threads: int,
    checkpoint: Path,
    torch_compile: str,
) -> dict[str, str]:
    """The parameters `covidet.ensemble.make_runner` reads for ``spec`` (a slice model or the GRU)
    in ``profile``; ``committed``: the ones of the committed (onnxruntime) config."""
    runtime = profile.runtime(spec.name)
    if runtime == "tensorrt":
        return {}  # Triton's TensorRT backend runs the plan; no model.py reads parameters
    if runtime == "onnxruntime":
        # the committed settings, with the threads of this node shared among the instances
        return {**committed, "intra_op_threads": str(max(1, threads // profile.instances(spec.name)))}
    params = {
        "runtime": "torch",
        "checkpoint": str(checkpoint),
        "device": profile.device,
        "fp16": str(profile.precision == "float16").lower(),
    }
    if spec in C.SLICE_MODELS:  # the GRU's sequence length varies per scan: it stays eager
        params["compile"] = torch_compile
    if spec in C.SLICE_MODELS and profile.device_tensors:
        # Triton's Python backend would copy GPU inputs to the host; the pipeline sends them
        # from the GPU by DLPack, and they should arrive there
        params["FORCE_CPU_ONLY_INPUT_TENSORS"] = "no"
    return params


def _set_parameters(cfg: M.ModelConfig, params: Mapping[str, str]) -> None:
    cfg.ClearField("parameters")
    for key, value in params.items():
        cfg.parameters[key].string_value = value


def _set_instances(cfg: M.ModelConfig, *, kind: str | None = None, count: int | None = None) -> None:
    """The committed configs have one instance group: set its kind and count."""
    if len(cfg.instance_group) != 1:
        raise ValueError(f"{cfg.name}: expected one instance_group, found {len(cfg.instance_group)}")
    group = cfg.instance_group[0]
    if kind is not None:
        group.kind = M.ModelInstanceGroup.Kind.Value(kind)
    if count is not None:
        group.count = count


#: Maps on a network's own coarser grid, not the input's: their rows and columns stay variable.
_COARSE_MAPS = frozenset({C.SLICE_CLASSIFIER.output("CLASS_MAPS").name})


def _slice_dims(cfg: M.ModelConfig, spec: C.ModelSpec, meta: Mapping[str, Any]) -> None:
    """Per-slice shapes from the checkpoint's metadata: images at its input size, feature vectors
    of its feature width (no size written twice)."""
    h, w = record_from_json(meta["preprocessing"]).input_size  # type: ignore[union-attr]
    for tensors, specs in ((cfg.input, spec.inputs), (cfg.output, spec.outputs)):
        for tensor, contract in zip(tensors, specs, strict=True):
            if contract.name in _COARSE_MAPS:
                continue
            if len(contract.dims) == 3:  # [channels, rows, columns]
                tensor.dims[:] = [contract.dims[0], h, w]
            elif contract.dims == (-1,):  # a feature vector
                tensor.dims[:] = [int(meta["extra"]["feature_dim"])]


def _cuda_graphs(cfg: M.ModelConfig) -> None:
    """TensorRT plans: a CUDA graph per batch size of the gpu-torch compile buckets.

    A batch of exactly that size replays its graph (one launch instead of one per layer); other
    sizes run the plan as usual. No ``graph_lower_bound``: it would pad, say, 17 slices to 32 and
    spend the saved launch time many times over on the full-size networks.
    """
    from covidet.ensemble import COMPILE_BUCKETS

    cuda = cfg.optimization.cuda
    cuda.graphs = True
    for size in (b for b in COMPILE_BUCKETS if b <= cfg.max_batch_size):
        cuda.graph_spec.add().batch_size = size


def _warmup(cfg: M.ModelConfig) -> None:
    """One zero batch of each compile bucket at load: torch.compile (and CUDA graph capture, and
    cuDNN's algorithm choice) happen before the model reports ready, not under the first scans."""
    from covidet.ensemble import COMPILE_BUCKETS

    (inp,) = cfg.input
    for size in COMPILE_BUCKETS:
        warmup = cfg.model_warmup.add(name=f"batch {size}", batch_size=size)
        data = warmup.inputs[inp.name]
        data.data_type = inp.data_type
        data.dims[:] = inp.dims
        data.zero_data = True  # only the shapes matter


def model_config(
    committed: M.ModelConfig,
    spec: C.ModelSpec,
    profile: Profile,
    params: Mapping[str, str],
    meta: Mapping[str, Any],
) -> M.ModelConfig:
    """The config of a model that runs a checkpoint (a slice model or the GRU) for ``profile`` and
    the checkpoint ``meta`` describes; ``params``: its `runtime_parameters`, replacing the
    committed ones."""
    cfg = M.ModelConfig()
    cfg.CopyFrom(committed)
    _set_instances(cfg, kind=profile.instance_kind, count=profile.instances(spec.name))
    _set_parameters(cfg, params)
    if spec not in C.SLICE_MODELS:
        return cfg
    _slice_dims(cfg, spec, meta)
    runtime = profile.runtime(spec.name)
    if runtime == "tensorrt":
        cfg.ClearField("backend")
        cfg.platform = "tensorrt_plan"
        _cuda_graphs(cfg)
    elif runtime == "torch":
        _warmup(cfg)
    return cfg


def pipeline_config(
    committed: M.ModelConfig, params: Mapping[str, str], *, instances: int, max_queue_size: int
) -> M.ModelConfig:
    """The orchestrator's config: its instance count, the scans that may wait for an instance
    (`covidet.export._admission.queue_size`), and ``params`` set over the committed ones (it runs
    on the host whatever the profile: its torch work picks its device itself)."""
    cfg = M.ModelConfig()
    cfg.CopyFrom(committed)
    _set_instances(cfg, count=instances)
    cfg.dynamic_batching.default_queue_policy.max_queue_size = max_queue_size
    for key, value in params.items():
        cfg.parameters[key].string_value = value
    return cfg
