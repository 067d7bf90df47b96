"""The clinical SVM's model file: one JSON document, written, read and validated.

It holds every number of a `ClinicalSVM` (floats are written with ``repr`` and read back
bit-exactly) and a sha256 over its canonical content (`content_hash`); reading checks the format,
the hash, the feature schema, shapes and finiteness, and any problem raises `ModelFileError`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from covidet.clinical._schema import CLINICAL_SCHEMA, FEATURE_NAMES, N_FEATURES, Feature
from covidet.clinical._svm import EPS, KERNELS, ClinicalSVM, Fusion, demo_model_path
from covidet.errors import ArtifactError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelFileError",
    "content_hash",
    "from_dict",
    "identity",
    "load_svm",
    "save_svm",
    "to_dict",
]

FORMAT = "covidet.clinical_svm"
FORMAT_VERSION = 1


class ModelFileError(ArtifactError, ValueError):
    """A clinical SVM model file is unreadable, malformed, inconsistent or tampered with."""


def to_dict(model: ClinicalSVM) -> dict[str, Any]:
    """The model file content (without its hash)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "provenance": model.provenance,
        "schema": [_feature_record(f) for f in CLINICAL_SCHEMA],
        "imputation_medians": {k: float(v) for k, v in model.medians.items()},
        "scaler": {"mean": _floats(model.scaler_mean), "scale": _floats(model.scaler_scale)},
        "svm": {
            "kernel": model.kernel,
            "C": float(model.C),
            "gamma": float(model.gamma),
            "degree": int(model.degree),
            "coef0": float(model.coef0),
            "support_vectors": [_floats(r) for r in model.support_vectors],
            "dual_coef": _floats(model.dual_coef),
            "intercept": float(model.intercept),
            "platt_a": float(model.platt_a),
            "platt_b": float(model.platt_b),
        },
        "fusion": {
            "w_dl2": float(model.fusion.w_dl2),
            "w_svm": float(model.fusion.w_svm),
            "bias": float(model.fusion.bias),
            "eps": EPS,
        },
        "metrics": model.metrics,
    }


def save_svm(model: ClinicalSVM, path: Path | str) -> Path:
    """Write the JSON model file (a directory gets ``clinical_svm.json``); returns its path."""
    path = Path(path)
    if path.suffix != ".json":
        path = path / "clinical_svm.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    content = to_dict(model)
    content["sha256"] = content_hash(content)
    path.write_text(json.dumps(content, indent=1, sort_keys=True, allow_nan=False) + "\n")
    return path


def identity(model: ClinicalSVM) -> dict[str, Any]:
    """The model's identity as an answer's PROVENANCE reports it, with the same keys as the
    imaging models' entries: the model file's hash (of the content it was read from, which
    `to_dict` rebuilds bit-exactly), its format version and the provenance its trainer wrote.
    ``variant`` is ``"demo"`` for the shipped demo model (trained on synthetic patients), which
    the answer's quality flags then name (DEMO_MODELS)."""
    digest = content_hash(to_dict(model))
    return {
        "architecture": f"svm-{model.kernel}",
        "variant": "demo" if digest == _demo_hash() else None,
        "version": FORMAT_VERSION,
        "trained": True,
        "provenance": model.provenance,
        "sha256": digest[:16],
        "precision": "float64",
    }


@functools.cache
def _demo_hash() -> str:
    """The content hash of the shipped demo model (read and checked once)."""
    return content_hash(to_dict(load_svm(demo_model_path())))


def load_svm(path: Path | str) -> ClinicalSVM:
    """Read and validate a model file; any problem raises `ModelFileError` naming it."""
    path = Path(path)
    if path.is_dir():
        path = path / "clinical_svm.json"
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelFileError(f"cannot read clinical SVM model file {path}: {exc}") from exc
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ModelFileError(f"{path} is not valid JSON: {exc}") from exc
    try:
        return from_dict(doc)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None


def from_dict(doc: Any) -> ClinicalSVM:
    """Validate a parsed model file (format, hash, schema, shapes, finiteness)."""
    if not isinstance(doc, dict):
        raise ModelFileError(f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"format {doc.get('format')!r} v{doc.get('format_version')!r} is not "
            f"{FORMAT!r} v{FORMAT_VERSION}: write it with covidet train-svm"
        )
    stored = doc.get("sha256")
    body = {k: v for k, v in doc.items() if k != "sha256"}
    if not isinstance(stored, str) or stored != content_hash(body):
        raise ModelFileError(
            "sha256 mismatch: the content was modified after it was written (tampered or "
            "corrupted); retrain it with covidet train-svm or restore the original file"
        )
    _check_schema(doc.get("schema"))
    svm = _get(doc, "svm", dict)
    kernel = _get(svm, "kernel", str)
    if kernel not in KERNELS:
        raise ModelFileError(f"svm.kernel {kernel!r} is not one of {KERNELS}")
    sv = _array(svm, "support_vectors", 2)
    if sv.shape[0] < 1 or sv.shape[1] != N_FEATURES:
        raise ModelFileError(
            f"svm.support_vectors has shape {list(sv.shape)}, expected [m >= 1, {N_FEATURES}]"
        )
    dual = _array(svm, "dual_coef", 1)
    if dual.shape != (sv.shape[0],):
        raise ModelFileError(
            f"svm.dual_coef has {dual.size} values, expected one per support vector ({sv.shape[0]})"
        )
    scaler = _get(doc, "scaler", dict)
    mean, scale = _array(scaler, "mean", 1), _array(scaler, "scale", 1)
    if mean.shape != (N_FEATURES,) or scale.shape != (N_FEATURES,) or (scale <= 0).any():
        raise ModelFileError(
            f"scaler.mean/scale must be {N_FEATURES} finite values (scale > 0), got {mean.size}/{scale.size}"
        )
    gamma, degree = _number(svm, "gamma"), svm.get("degree")
    if kernel != "linear" and gamma <= 0:
        raise ModelFileError(f"svm.gamma must be > 0 for the {kernel} kernel, got {gamma}")
    if not isinstance(degree, int) or degree < 1:
        raise ModelFileError(f"svm.degree must be an integer >= 1, got {degree!r}")
    medians = _get(doc, "imputation_medians", dict)
    want = {f.name for f in CLINICAL_SCHEMA if f.imputable}
    if set(medians) != want:
        raise ModelFileError(
            f"imputation_medians has keys {sorted(medians)}, expected the imputable features {sorted(want)}"
        )
    meds = {k: _number(medians, k) for k in medians}
    fus = _get(doc, "fusion", dict)
    metrics = doc.get("metrics", {})
    return ClinicalSVM(
        kernel=kernel,
        C=_number(svm, "C"),
        gamma=gamma,
        degree=degree,
        coef0=_number(svm, "coef0"),
        scaler_mean=mean,
        scaler_scale=scale,
        support_vectors=sv,
        dual_coef=dual,
        intercept=_number(svm, "intercept"),
        platt_a=_number(svm, "platt_a"),
        platt_b=_number(svm, "platt_b"),
        medians=meds,
        fusion=Fusion(_number(fus, "w_dl2"), _number(fus, "w_svm"), _number(fus, "bias")),
        metrics=metrics if isinstance(metrics, dict) else {},
        provenance=str(doc.get("provenance", "")),
    )


def content_hash(content: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of a model file without its hash."""
    canon = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canon.encode()).hexdigest()


def _floats(a: np.ndarray | Sequence[float]) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-finite number {name} is not allowed")


def _get(d: Mapping[str, Any], key: str, kind: type) -> Any:
    v = d.get(key)
    if not isinstance(v, kind):
        raise ModelFileError(f"field {key!r} missing or not a {kind.__name__}")
    return v


def _number(d: Mapping[str, Any], key: str) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ModelFileError(f"field {key!r} must be a finite number, got {v!r}")
    return float(v)


def _array(d: Mapping[str, Any], key: str, ndim: int) -> np.ndarray:
    try:
        a = np.array(d.get(key), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"field {key!r} is not a numeric array: {exc}") from None
    if a.ndim != ndim or not np.isfinite(a).all():
        raise ModelFileError(f"field {key!r} must be a finite {ndim}-D array, got shape {a.shape}")
    return a


def _feature_record(f: Feature) -> dict[str, Any]:
    """How one schema feature is stored in (and checked against) a model file."""
    return {
        "name": f.name,
        "unit": f.unit,
        "low": f.low,
        "high": f.high,
        "imputable": f.imputable,
        "binary": f.binary,
    }


def _check_schema(schema: Any) -> None:
    if not isinstance(schema, list) or len(schema) != N_FEATURES:
        n = len(schema) if isinstance(schema, list) else "no"
        raise ModelFileError(f"schema has {n} features, expected {N_FEATURES}: {', '.join(FEATURE_NAMES)}")
    for i, (got, f) in enumerate(zip(schema, CLINICAL_SCHEMA, strict=True)):
        want = _feature_record(f)
        if got != want:
            raise ModelFileError(
                f"schema feature {i} is {got}, but this covidet expects {want}: the model was "
                "trained for another feature schema; retrain it"
            )
