"""Deployment profiles as data: one `Profile` record per `--profile NAME`, in `PROFILES`.

The README's profile table, with everything the rendering needs to know about a profile: which
runtime runs the slice models and the GRU, on which device, in which precision, with how many
instances, and how the pipeline hands tensors to the slice models. The rendering
(`covidet.export._render`, `covidet.export._configs`) reads these fields and never a profile's
name. Standard library only: the launcher and the benchmarks import it without the export stack.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from covidet import _contract as C

__all__ = [
    "HEAVY_MODELS",
    "MAX_GPU_PIPELINE_INSTANCES",
    "PIPELINE_INSTANCES",
    "PROFILES",
    "Profile",
]

#: The two segmentation networks (U-Net, DeepLabV3+): they see every slice of a scan at full
#: resolution and carry most of its compute; the classifier and the encoder see the ~35 selected
#: slices. On the CPU these get two instances, and in cpu-int8 the int8 graphs.
HEAVY_MODELS = (C.LUNG_SEG.name, C.LESION_SEG.name)

#: The fewest orchestrator instances of any profile: two scans overlap (one pre/post-processes
#: while the other's slices run) and their slices share batches. Each instance holds a whole scan
#: in memory, so more cost memory and bring nothing on cores the slice models already fill.
PIPELINE_INSTANCES = 2
#: The most orchestrator instances on the GPU profiles: each holds a scan in host memory and its
#: tensors in /dev/shm, whose size the chart's `shm.sizeLimit` bounds.
MAX_GPU_PIPELINE_INSTANCES = 8


@dataclass(frozen=True)
class Profile:
    """One deployment profile: where covidet runs and how (the README's profile table)."""

    #: The `--profile` name.
    name: str
    #: Where it is meant to run (documentation).
    where: str
    #: What runs the four slice models: ONNX Runtime on the CPU (Python backend), TensorRT plans
    #: (Triton's ``tensorrt_plan`` platform) or torch (Python backend).
    slice_runtime: Literal["onnxruntime", "tensorrt", "torch"]
    #: What runs gru_fusion (always the Python backend).
    gru_runtime: Literal["onnxruntime", "torch"]
    #: Where the torch runtimes and the pipeline's pre/post-processing run.
    device: Literal["cpu", "cuda"]
    #: Numerics of the models not in `int8_models` (each answer's provenance reports it).
    precision: Literal["float32", "float16"]
    #: Models served as int8 graphs (static QDQ, calibrated and checked against float on masks).
    int8_models: frozenset[str] = frozenset()
    #: The pipeline hands slice tensors to the slice models on `device` (DLPack through BLS) and
    #: takes their outputs there, instead of through host memory.
    device_tensors: bool = False
    #: Instances of each slice model, by name (others: 1).
    slice_instances: tuple[tuple[str, int], ...] = ()
    #: Upper bound of the orchestrator's instances (`pipeline_instances`).
    max_pipeline_instances: int = PIPELINE_INSTANCES
    #: Chunks of one scan in flight per slice model (`PipelineConfig.max_inflight_chunks`); None:
    #: the pipeline's default (`covidet.ensemble.DEFAULT_INFLIGHT_CHUNKS`).
    inflight_chunks: int | None = None
    #: Where Triton comes from (documentation).
    triton: str = ""

    def __post_init__(self) -> None:
        bad = sorted(m for m in self.int8_models if self.runtime(m) != "onnxruntime")
        if bad:
            raise ValueError(f"profile {self.name}: int8 models run in ONNX Runtime only, not {bad}")

    @property
    def pipeline_device(self) -> str | None:
        """The pipeline's torch device for pre/post-processing (None: numpy on the host)."""
        return None if self.device == "cpu" else self.device

    @property
    def instance_kind(self) -> str:
        """Triton instance kind of the models that run on `device` (the pipeline is always CPU)."""
        return "KIND_GPU" if self.device == "cuda" else "KIND_CPU"

    def runtime(self, model: str) -> str:
        """The runtime of ``model`` (a slice model or gru_fusion)."""
        return self.gru_runtime if model == C.GRU_FUSION.name else self.slice_runtime

    def precision_of(self, model: str) -> str:
        """The numerics ``model`` runs with (reported in every answer's provenance)."""
        return "int8" if model in self.int8_models else self.precision

    def instances(self, model: str) -> int:
        """Triton instances of slice model ``model``."""
        return dict(self.slice_instances).get(model, 1)

    def pipeline_instances(self, cores: int) -> int:
        """Orchestrator instances on a node with ``cores`` CPU cores.

        An instance runs one scan at a time, so the instances bound the scans in flight:
        throughput <= instances / latency (Little's law), and each scan's host work, run in its
        instance's one Python thread, caps what one instance serves. Half the cores, within
        [`PIPELINE_INSTANCES`, `max_pipeline_instances`].
        """
        return max(PIPELINE_INSTANCES, min(self.max_pipeline_instances, cores // 2))


class _Registry(dict[str, Profile]):
    """`PROFILES`: a dict whose failed lookup names the valid profiles."""

    def __init__(self, profiles: Iterable[Profile]) -> None:
        super().__init__((p.name, p) for p in profiles)

    def __missing__(self, name: str) -> Profile:
        raise KeyError(f"unknown profile {name!r}; choose one of {', '.join(self)}")


_CPU = Profile(
    name="cpu",
    where="any laptop or CI machine, no GPU (the default, embedded)",
    slice_runtime="onnxruntime",
    gru_runtime="onnxruntime",
    device="cpu",
    precision="float32",
    # two sessions of half the cores each: while one waits on the pipeline the other computes
    slice_instances=tuple((m, 2) for m in HEAVY_MODELS),
    triton="the tritonserver binary inside the nvidia-pytriton PyPI wheel",
)

_GPU = Profile(
    name="gpu",
    where="production GPU nodes",
    slice_runtime="tensorrt",
    gru_runtime="torch",
    device="cuda",
    precision="float16",  # TensorRT FP16 plans, and the GRU in torch FP16
    # window, resize and up-sample on the GPU too (the CPU would be the bottleneck),
    # and keep the slice tensors there between the pipeline and the slice models
    device_tensors=True,
    max_pipeline_instances=MAX_GPU_PIPELINE_INSTANCES,
    inflight_chunks=16,  # a GPU batches more slices of each scan at once
    triton="NVIDIA's tritonserver container image",
)

#: Every profile by its `--profile` name; ``PROFILES[name]`` of an unknown name raises a
#: KeyError that lists the valid ones.
PROFILES: dict[str, Profile] = _Registry(
    (
        _CPU,
        replace(
            _CPU,
            name="cpu-int8",
            where="as cpu, the two segmentation models int8 (checked against float at render time)",
            # the classifier and the encoder see a scan's selected slices only: float stays cheap
            int8_models=frozenset(HEAVY_MODELS),
        ),
        _GPU,
        replace(
            _GPU, name="gpu-torch", where="a GPU without TensorRT", slice_runtime="torch", triton="either"
        ),
    )
)
