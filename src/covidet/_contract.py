"""The wire contract: model names, tensor names, dtypes, shapes and class order.

This module is the single source of truth shared by the client, the model-repository rendering
and the tests. It must stay dependency-free (standard library only): the light client imports it.
No tensor name or dtype is written anywhere else.

Shapes use -1 for a variable dimension. For slice models (``max_batch_size > 0``) the shapes
exclude the batch (slice) axis, as in Triton's ``config.pbtxt``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "ATTENTION_METHODS",
    "CLASS_NAMES",
    "CLIENT_SHM_PREFIX",
    "CLINICAL_SVM",
    "ENSEMBLE",
    "EXPLAIN_OUTPUTS",
    "GRU_FUSION",
    "LESION_SEG",
    "LUNG_SEG",
    "MAX_REFUSED_REPORT",
    "PIPELINE",
    "PROGRESSION_GPR",
    "QUALITY_SEVERITIES",
    "REFUSED_PARAMETER",
    "SLICE_BATCH",
    "SLICE_CLASSIFIER",
    "SLICE_ENCODER",
    "SLICE_MODELS",
    "STEPWISE_NAMES",
    "TOP_K",
    "AttentionRegion",
    "ErrorCode",
    "Explanation",
    "ModelSpec",
    "QualityFlag",
    "TensorSpec",
    "all_models",
    "describe_crossing",
    "error_message",
    "model_spec",
    "parse_error_message",
    "quality_from_json",
    "quality_to_json",
    "refused_count",
]

#: Jin et al. 4-class order (index = class id).
CLASS_NAMES: tuple[str, ...] = ("non-pneumonia", "CAP", "influenza", "COVID-19")
#: CoviDet stepwise outputs: DL#1 viral pneumonia vs control, DL#2 COVID-19 vs other viral.
STEPWISE_NAMES: tuple[str, ...] = ("viral_pneumonia", "covid_given_viral")
#: Jin et al. task-specific top-K fusion.
TOP_K = 3
#: Maximum slices per execution of a slice model (the dynamic batcher's max batch).
SLICE_BATCH = 32
#: Name prefix of the /dev/shm regions a client writes CT volumes into (the server maps them).
CLIENT_SHM_PREFIX = "covidet_ct_"
#: Request parameter: how many times the server's admission bound refused this scan before the
#: attempt that carries it (covidet's client sends it on its retries; the pipeline counts it in
#: ``covidet_admission_rejected_total`` once the scan is admitted).
REFUSED_PARAMETER = "covidet_refused"
#: Counts above this are not believed (a bad client): a retry loop of hours stays far below it.
MAX_REFUSED_REPORT = 10_000


def refused_count(parameters: str | dict[str, object] | None) -> int:
    """The `REFUSED_PARAMETER` of a request's parameters (a dict, or the JSON the Python backend
    gives): 0 when absent, not a whole number, negative or beyond `MAX_REFUSED_REPORT`. A bad
    report is dropped, never an error: it must not cost the scan its answer."""
    if isinstance(parameters, str):
        try:
            parameters = json.loads(parameters) if parameters else {}
        except ValueError:
            return 0
    value = (parameters or {}).get(REFUSED_PARAMETER) if isinstance(parameters, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REFUSED_REPORT:
        return 0
    return value


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of a model."""

    name: str
    #: Triton data type name without the ``TYPE_`` prefix: FP32, INT16, INT32, UINT8, BOOL, BYTES.
    dtype: str
    dims: tuple[int, ...]
    optional: bool = False
    doc: str = ""

    @property
    def numpy_dtype(self) -> str:
        """The numpy dtype string used on the wire for this tensor."""
        return _NUMPY_DTYPES[self.dtype]


_NUMPY_DTYPES = {
    "FP32": "float32",
    "FP16": "float16",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "BOOL": "bool",
    "BYTES": "object",
}


@dataclass(frozen=True)
class ModelSpec:
    """One Triton model: its name, its tensors and whether it batches slices."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    #: 0 = no Triton batching (one request = one scan); > 0 = slices batched by the dynamic batcher.
    max_batch_size: int = 0
    #: Registered architecture served by this model (None for Python-only steps).
    architecture: str | None = None
    doc: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def input(self, name: str) -> TensorSpec:
        return _find(self.inputs, name, self.name)

    def output(self, name: str) -> TensorSpec:
        return _find(self.outputs, name, self.name)


def _find(specs: tuple[TensorSpec, ...], name: str, model: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    valid = ", ".join(s.name for s in specs)
    raise KeyError(f"model {model!r} has no tensor {name!r}; valid names: {valid}")


# --- slice models (dynamic batching; batch axis = slices) -----------------------------------------
# Spatial dims are -1 here; the rendered config takes them from the checkpoint's preprocessing
# record, so input sizes are never written twice.

LUNG_SEG = ModelSpec(
    name="lung_seg",
    architecture="lung_unet",
    max_batch_size=SLICE_BATCH,
    inputs=(TensorSpec("IMAGE", "FP32", (1, -1, -1), doc="HU clipped at -1024, /255"),),
    outputs=(TensorSpec("LUNG_PROB", "FP32", (1, -1, -1), doc="P(lung) = 1 - softmax[0]"),),
    doc="2D U-Net lung segmentation (Jin et al.), per slice",
)

SLICE_CLASSIFIER = ModelSpec(
    name="slice_classifier",
    architecture="resnet152_cls",
    max_batch_size=SLICE_BATCH,
    inputs=(TensorSpec("IMAGE", "FP32", (3, -1, -1), doc="(mask*255, mask*slice, slice)/255"),),
    outputs=(
        TensorSpec("CLASS_PROBS", "FP32", (len(CLASS_NAMES),), doc="softmax over CLASS_NAMES"),
        # Only computed when asked for (the pipeline asks when a request sets EXPLAIN). Its rows and
        # columns are the last convolution's grid (the input's / 32), not the input's: the render
        # leaves them variable.
        TensorSpec(
            "CLASS_MAPS",
            "FP32",
            (len(CLASS_NAMES), -1, -1),
            doc="class activation maps: ReLU(map) = Grad-CAM of the class logit",
        ),
    ),
    doc="4-class slice classifier (Jin et al. ResNet-152), per slice",
)

SLICE_ENCODER = ModelSpec(
    name="slice_encoder",
    architecture="resnext50_ws_gn",
    max_batch_size=SLICE_BATCH,
    inputs=(TensorSpec("IMAGE", "FP32", (3, -1, -1), doc="same input as slice_classifier"),),
    outputs=(TensorSpec("FEATURES", "FP32", (-1,), doc="pooled slice features for the GRU"),),
    doc="CoviDet ResNeXt-50 32x4d + weight standardization + GroupNorm slice encoder",
)

LESION_SEG = ModelSpec(
    name="lesion_seg",
    architecture="deeplabv3plus_densenet121",
    max_batch_size=SLICE_BATCH,
    inputs=(TensorSpec("IMAGE", "FP32", (1, -1, -1), doc="lung-window HU scaled to [0, 1]"),),
    outputs=(TensorSpec("LESION_PROB", "FP32", (1, -1, -1), doc="P(lesion) per pixel"),),
    doc="DeepLabV3+ (DenseNet-121 encoder) lesion segmentation, per slice",
)

SLICE_MODELS: tuple[ModelSpec, ...] = (LUNG_SEG, SLICE_CLASSIFIER, SLICE_ENCODER, LESION_SEG)

# --- per-scan models (no Triton batching; one request = one scan) ---------------------------------

GRU_FUSION = ModelSpec(
    name="gru_fusion",
    architecture="gru_fusion",
    max_batch_size=0,
    inputs=(TensorSpec("FEATURES", "FP32", (-1, -1), doc="[slices, features] in slice order"),),
    outputs=(
        TensorSpec(
            "STEPWISE_PROBS",
            "FP32",
            (len(STEPWISE_NAMES),),
            doc="DL#1, DL#2 in STEPWISE_NAMES order",
        ),
    ),
    doc="CoviDet GRU fusion of slice features into the stepwise scan result",
)

# Outputs of a scan diagnosis (the pipeline step and the public ensemble share them).
_SCAN_OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("P_VIRAL", "FP32", (1,), doc="DL#1 P(viral pneumonia) vs control"),
    TensorSpec("P_COVID_GIVEN_VIRAL", "FP32", (1,), doc="DL#2 P(COVID-19 | viral pneumonia)"),
    TensorSpec("P_COVID_STEPWISE", "FP32", (1,), doc="P(viral) x P(COVID-19 | viral)"),
    TensorSpec("CLASS_PROBS", "FP32", (len(CLASS_NAMES),), doc="Jin et al. top-K fused, CLASS_NAMES"),
    TensorSpec("TOPK_SLICES", "INT32", (TOP_K,), doc="input slice indices locating the finding"),
    TensorSpec("LUNG_VOLUME_ML", "FP32", (1,), doc="lung volume in mL from the input spacing"),
    TensorSpec("LESION_VOLUME_ML", "FP32", (1,), doc="lesion volume in mL"),
    TensorSpec("LESION_RATIO", "FP32", (1,), doc="lesion volume / lung volume"),
    TensorSpec("N_SLICES_USED", "INT32", (1,), doc="slices fed to the classifiers"),
    TensorSpec("LUNG_MASK", "UINT8", (-1, -1, -1), doc="S x H x W on the input grid; 0x0x0 unless asked"),
    TensorSpec("LESION_MASK", "UINT8", (-1, -1, -1), doc="S x H x W on the input grid; 0x0x0 unless asked"),
    TensorSpec("PROVENANCE", "BYTES", (1,), doc="JSON: model versions and checkpoint provenance"),
    TensorSpec("QUALITY", "BYTES", (1,), doc="JSON: quality flags, a list of {code, severity, message}"),
    # --- explanation (EXPLAIN): empty unless asked for ---
    TensorSpec(
        "ATTENTION",
        "UINT8",
        (-1, -1, -1),
        doc="K x H x W: predicted class's attention on TOPK_SLICES, 0-255; 0x0x0 unless EXPLAIN",
    ),
    TensorSpec(
        "EXPLANATION",
        "BYTES",
        (1,),
        doc="JSON: the attention's method and its regions (area, lesion overlap); {} unless EXPLAIN",
    ),
    TensorSpec("SELECTED_SLICES", "INT32", (-1,), doc="input slice indices fed to the classifiers"),
    TensorSpec("SLICE_SCORES", "FP32", (-1,), doc="P(pneumonia) of each SELECTED_SLICES slice"),
    TensorSpec("SLICE_LESION_MM2", "FP32", (-1,), doc="lesion area in mm^2 of each SELECTED_SLICES slice"),
)

#: Outputs of the explanation: returned empty unless a request sets EXPLAIN.
EXPLAIN_OUTPUTS: tuple[str, ...] = (
    "ATTENTION",
    "EXPLANATION",
    "SELECTED_SLICES",
    "SLICE_SCORES",
    "SLICE_LESION_MM2",
)

_SCAN_INPUTS: tuple[TensorSpec, ...] = (
    # exactly one of CT and CT_COMPRESSED
    TensorSpec("CT", "INT16", (-1, -1, -1), optional=True, doc="HU volume, slices x rows x columns"),
    # optional for Triton, required by the pipeline: a request without it is answered by the
    # pipeline's own message, not an ensemble that cannot start its first step
    TensorSpec("SPACING", "FP32", (3,), optional=True, doc="voxel spacing in mm: slice, row, column"),
    TensorSpec("RETURN_MASKS", "BOOL", (1,), optional=True, doc="return LUNG_MASK/LESION_MASK"),
    TensorSpec("EXPLAIN", "BOOL", (1,), optional=True, doc="return ATTENTION and the slice scores"),
    TensorSpec(
        "CT_COMPRESSED",
        "BYTES",
        (1,),
        optional=True,
        doc="CT as a byte-shuffled zstd frame (covidet._codec), instead of CT",
    ),
)

PIPELINE = ModelSpec(
    name="covidet_pipeline",
    max_batch_size=0,
    inputs=_SCAN_INPUTS,
    outputs=_SCAN_OUTPUTS,
    doc="BLS step: windowing, slice fan-out to the slice models, selection, fusion, statistics",
)


# --- issue 4: clinical_svm and progression_gpr ---

CLINICAL_SVM = ModelSpec(
    name="clinical_svm",
    max_batch_size=0,
    inputs=(
        TensorSpec("P_COVID_GIVEN_VIRAL", "FP32", (1,), doc="DL#2 P(COVID-19 | viral pneumonia)"),
        TensorSpec(
            "CLINICAL",
            "FP32",
            (14,),  # = len(covidet.clinical.CLINICAL_SCHEMA), checked on its import
            optional=True,
            doc="clinical features in CLINICAL_SCHEMA order, NaN = missing (imputable ones only)",
        ),
        TensorSpec(
            "PROVENANCE",
            "BYTES",
            (1,),
            optional=True,
            doc="the imaging step's PROVENANCE: with QUALITY, for the DEMO_MODELS flag to name all",
        ),
        TensorSpec(
            "QUALITY",
            "BYTES",
            (1,),
            optional=True,
            doc="the imaging step's QUALITY flags, passed on with the SVM's own",
        ),
    ),
    outputs=(
        TensorSpec("P_SVM", "FP32", (1,), doc="SVM P(COVID-19) from clinical data; NaN if absent"),
        TensorSpec(
            "P_COVID_FUSED",
            "FP32",
            (1,),
            doc="DL#3 P(COVID-19 | viral, clinical); = P_COVID_GIVEN_VIRAL without CLINICAL",
        ),
        TensorSpec(
            "SVM_PROVENANCE",
            "BYTES",
            (1,),
            doc="JSON: the clinical SVM's identity (model file hash, provenance), as PROVENANCE's entries",
        ),
        TensorSpec(
            "QUALITY",
            "BYTES",
            (1,),
            doc="JSON: the QUALITY input's flags; DEMO_MODELS also names a demo SVM that fused the answer",
        ),
    ),
    doc="DL#3: SVM on clinical features fused with DL#2 (Python backend)",
)

PROGRESSION_GPR = ModelSpec(
    name="progression_gpr",
    max_batch_size=0,
    inputs=(
        TensorSpec("DAYS", "FP32", (-1,), doc="days of the patient's scans (>= 3 distinct)"),
        TensorSpec("RATIOS", "FP32", (-1,), doc="lesion / lung ratio of each scan, in [0, 1]"),
        TensorSpec("QUERY_DAYS", "FP32", (-1,), doc="days at which to predict the ratio"),
        TensorSpec("LEVELS", "FP32", (-1,), optional=True, doc="ratio levels to find crossings of"),
    ),
    outputs=(
        TensorSpec("MEAN", "FP32", (-1,), doc="forecast ratio at QUERY_DAYS (posterior median), in [0, 1]"),
        TensorSpec(
            "STD",
            "FP32",
            (-1,),
            doc="equivalent SD at QUERY_DAYS (the band is asymmetric: use LOWER/UPPER)",
        ),
        TensorSpec(
            "CROSSING_DAYS",
            "FP32",
            (-1,),
            doc="per level: the forecast day it is reached, the median day the patient's possible "
            "courses first reach it after the last scan; NaN = under half do within the horizon",
        ),
        TensorSpec("LOWER", "FP32", (-1,), doc="lower edge of the 95% band at QUERY_DAYS, in [0, 1]"),
        TensorSpec("UPPER", "FP32", (-1,), doc="upper edge of the 95% band at QUERY_DAYS, in [0, 1]"),
        TensorSpec(
            "CROSSING_EARLIEST",
            "FP32",
            (-1,),
            doc="per level: the day 2.5% of the possible courses have reached it; NaN = fewer do "
            "within the horizon",
        ),
        TensorSpec(
            "CROSSING_LATEST",
            "FP32",
            (-1,),
            doc="per level: the day 97.5% of the possible courses have reached it; NaN = fewer do "
            "within the horizon",
        ),
        TensorSpec(
            "REACH_PROBABILITY",
            "FP32",
            (-1,),
            doc="per level: the share of the possible courses that reach it within the horizon",
        ),
        TensorSpec(
            "MEAN_CROSSING_DAYS",
            "FP32",
            (-1,),
            doc="per level: the first day the plotted mean path (MEAN) reaches it; NaN = not within "
            "the horizon. Not the forecast day: a course that may go either way has a mean path "
            "that goes neither way",
        ),
    ),
    doc="DL#5: per-patient Gaussian process regression of the lesion ratio course",
)


def describe_crossing(
    level: float,
    day: float | None,
    early: float | None,
    late: float | None,
    last: float,
    p_reach: float | None = None,
) -> str:
    """One level's PROGRESSION_GPR answer in words, e.g. "reaches 0.05 around day 14 (11-19)".

    ``day`` from CROSSING_DAYS (the median first passage), ``early``/``late`` from
    CROSSING_EARLIEST/LATEST (the 2.5 % and 97.5 % quantiles; None for NaN), ``last`` the day of
    the last scan, ``p_reach`` from REACH_PROBABILITY (said where the level is not expected).
    The client's table and plot say it alike.
    """
    if day is not None and day <= last:
        return f"at {level:g} by the last scan (day {last:.0f})"
    if day is None:
        share = "" if p_reach is None else f"{100 * p_reach:.0f}% of the likely courses do"
        if early is not None:
            share = f"{share}, from day {early:.0f}" if share else f"possible from day {early:.0f}"
        return f"not expected to reach {level:g} within the horizon" + (f" ({share})" if share else "")
    lo = day if early is None else early
    if late is not None:
        span = f"{lo:.0f}-{late:.0f}"
    elif p_reach is None:
        span = f"from day {lo:.0f}; may take longer than the horizon"
    else:  # the 97.5 % day lies beyond the horizon: say how many courses do not get there in it
        span = f"from day {lo:.0f}; {100 * (1 - p_reach):.0f}% of the likely courses not within the horizon"
    return f"reaches {level:g} around day {day:.0f} ({span})"


def range_covers(day: float, early: float | None, late: float | None) -> bool:
    """Whether ``day`` lies in a level's stated range: from ``early`` (CROSSING_EARLIEST; None:
    not within the horizon, so no range) to ``late`` (CROSSING_LATEST; None: "may take longer
    than the horizon", open). What `describe_crossing` says, checked against a real day."""
    return early is not None and early <= day and (late is None or day <= late)


ENSEMBLE = ModelSpec(
    name="covidet",
    max_batch_size=0,
    inputs=(*_SCAN_INPUTS, CLINICAL_SVM.input("CLINICAL")),
    # QUALITY comes from the clinical step, which passes the imaging step's flags on with its own
    outputs=(
        *_SCAN_OUTPUTS,
        *(t for t in CLINICAL_SVM.outputs if t.name not in {s.name for s in _SCAN_OUTPUTS}),
    ),
    doc="Public entry point: the covidet ensemble (imaging pipeline, then DL#3 clinical fusion)",
)


# --- quality flags -------------------------------------------------------------------------------
# Every answer carries QUALITY: a JSON list of flags saying when it must not be used. The codes and
# the checks behind them are the server's (`covidet.ensemble.QUALITY_CODES`); the form is this.

#: Severities of a quality flag. ``error``: the diagnosis must not be used.
QUALITY_SEVERITIES: tuple[str, ...] = ("info", "warning", "error")


@dataclass(frozen=True)
class QualityFlag:
    """One quality flag of an answer: a stable ``code``, a ``severity`` in QUALITY_SEVERITIES,
    and a message that says what is wrong and what to do."""

    code: str
    severity: str
    message: str

    def __post_init__(self) -> None:
        if self.severity not in QUALITY_SEVERITIES:
            raise ValueError(f"quality severity {self.severity!r}: expected one of {QUALITY_SEVERITIES}")

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message}


def quality_to_json(flags: tuple[QualityFlag, ...] | list[QualityFlag]) -> bytes:
    """The QUALITY output's value."""
    return json.dumps([f.to_json() for f in flags]).encode()


def quality_from_json(raw: bytes | str) -> tuple[QualityFlag, ...]:
    """The flags of a QUALITY output's value."""
    data = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    return tuple(QualityFlag(str(d["code"]), str(d["severity"]), str(d["message"])) for d in data)


@dataclass(frozen=True)
class AttentionRegion:
    """One binarised attention region of an explained slice (EXPLANATION), in pixels of the
    input grid: Jin et al.'s attention map binarised, near the lung, over their size rule."""

    slice: int  #: input slice index (one of TOPK_SLICES)
    rank: int  #: its place in TOPK_SLICES (0 = the slice that weighed most)
    area_px: int
    area_mm2: float
    lesion_overlap_px: int  #: region pixels inside the lesion mask
    lesion_overlap: float  #: lesion_overlap_px / area_px
    centroid: tuple[float, float]  #: (row, column)
    bbox: tuple[int, int, int, int]  #: (row0, row1, column0, column1), half-open

    def to_json(self) -> dict[str, object]:
        return {
            "slice": self.slice,
            "rank": self.rank,
            "area_px": self.area_px,
            "area_mm2": self.area_mm2,
            "lesion_overlap_px": self.lesion_overlap_px,
            "lesion_overlap": self.lesion_overlap,
            "centroid": list(self.centroid),
            "bbox": list(self.bbox),
        }


#: How ATTENTION was computed. ``guided-grad-cam``: Jin et al.'s Guided Grad-CAM (guided
#: backpropagation times Grad-CAM, where the server can run the classifier with autograd);
#: ``grad-cam``: the class activation map, which for the served classifier is its Grad-CAM.
ATTENTION_METHODS: tuple[str, ...] = ("guided-grad-cam", "grad-cam")


@dataclass(frozen=True)
class Explanation:
    """The EXPLANATION output: how ATTENTION was computed, and its binarised regions."""

    method: str  #: one of ATTENTION_METHODS
    regions: tuple[AttentionRegion, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in ATTENTION_METHODS:
            raise ValueError(f"attention method {self.method!r}: expected one of {ATTENTION_METHODS}")

    def to_json(self) -> bytes:
        """The EXPLANATION output's value."""
        return json.dumps({"method": self.method, "regions": [r.to_json() for r in self.regions]}).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Explanation | None:
        """The explanation in an EXPLANATION output's value; None for an unexplained answer ({})."""
        data = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        if not data:
            return None
        return cls(str(data["method"]), tuple(_region(d) for d in data["regions"]))


def _region(d: dict) -> AttentionRegion:
    return AttentionRegion(
        slice=int(d["slice"]),
        rank=int(d["rank"]),
        area_px=int(d["area_px"]),
        area_mm2=float(d["area_mm2"]),
        lesion_overlap_px=int(d["lesion_overlap_px"]),
        lesion_overlap=float(d["lesion_overlap"]),
        centroid=(float(d["centroid"][0]), float(d["centroid"][1])),
        bbox=(int(d["bbox"][0]), int(d["bbox"][1]), int(d["bbox"][2]), int(d["bbox"][3])),
    )


def all_models() -> tuple[ModelSpec, ...]:
    """Every model of the repository, public ensemble last."""
    return (*SLICE_MODELS, GRU_FUSION, PIPELINE, CLINICAL_SVM, PROGRESSION_GPR, ENSEMBLE)


def model_spec(name: str) -> ModelSpec:
    """The model named ``name``; a KeyError lists the valid names."""
    for spec in all_models():
        if spec.name == name:
            return spec
    raise KeyError(f"no model {name!r}; valid names: {', '.join(m.name for m in all_models())}")


# --- error codes ----------------------------------------------------------------------------------
# A covidet model that fails a request says why with one code, written into its Triton error message
# as the prefix ``[covidet:CODE] `` (`error_message`), e.g. ``[covidet:NO_LUNG] no lung found ...``.
# Triton may put its own context before it (an ensemble names the failing step), so a reader takes
# the first tag anywhere in the message (`parse_error_message`); a message without a tag comes from
# Triton itself (unknown model, bad tensor shape, server shutting down). The Triton status stays the
# coarse class (`ErrorCode.triton_status`) for clients that do not know the codes.


class ErrorCode(str, Enum):
    """Why a covidet model refused or failed a request (the value is the wire spelling)."""

    #: The CT voxels or their spacing break a rule (dtype, size, HU range, spacing): fix the input.
    INVALID_VOLUME = "INVALID_VOLUME"
    #: The scan contains no lung: not a chest CT in Hounsfield units.
    NO_LUNG = "NO_LUNG"
    #: The clinical features break covidet.clinical.CLINICAL_SCHEMA (count, range, missing values).
    INVALID_CLINICAL = "INVALID_CLINICAL"
    #: The (day, lesion ratio) series of a forecast cannot be fit (too few days, bad values).
    INVALID_SERIES = "INVALID_SERIES"
    #: Any other malformed input tensor.
    INVALID_INPUT = "INVALID_INPUT"
    #: A step of the pipeline is restarting or reloading: the request was not processed; retry.
    STEP_UNAVAILABLE = "STEP_UNAVAILABLE"
    #: The server failed on a valid request (a bug or a broken deployment): report it.
    INTERNAL = "INTERNAL"

    @property
    def triton_status(self) -> str:
        """The Triton Python backend's ``TritonError`` code name that goes with this code."""
        return _TRITON_STATUS.get(self, "INVALID_ARG")


_TRITON_STATUS = {ErrorCode.STEP_UNAVAILABLE: "UNAVAILABLE", ErrorCode.INTERNAL: "INTERNAL"}
_ERROR_TAG = re.compile(r"\[covidet:([A-Z_]+)\] ?")


def error_message(code: ErrorCode | str, text: str) -> str:
    """The error message carrying ``code`` on the wire: ``[covidet:CODE] text``."""
    return f"[covidet:{ErrorCode(code).value}] {text}"


def parse_error_message(message: str) -> tuple[ErrorCode | None, str]:
    """(code, message without its tag) of a server error message; (None, message) when it carries
    no covidet code or one this version does not know."""
    match = _ERROR_TAG.search(message)
    if match is None or match.group(1) not in ErrorCode.__members__:
        return None, message
    return ErrorCode(match.group(1)), message[: match.start()] + message[match.end() :]
