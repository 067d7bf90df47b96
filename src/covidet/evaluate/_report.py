"""From the results records to the figures of ``metrics.json`` and the rows of ``per_scan.csv``."""

from __future__ import annotations

import csv
import datetime
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from covidet import _contract as C
from covidet.evaluate._metrics import binary_task, estimate, multiclass_summary
from covidet.evaluate._rules import RULES, THRESHOLD, task_scores
from covidet.metrics import bland_altman

__all__ = ["PER_SCAN_COLUMNS", "compute_metrics", "write_per_scan"]

_VIRAL = (C.CLASS_NAMES.index("influenza"), C.CLASS_NAMES.index("COVID-19"))
_COVID = C.CLASS_NAMES.index("COVID-19")


def _scans(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("kind", "scan") == "scan"]


def _flagged(rec: dict[str, Any]) -> bool:
    """A diagnosis a quality check says must not be used (a flag of severity ``error``)."""
    return any(f.get("severity") == "error" for f in rec["diagnosis"].get("quality") or [])


def _mean_ci(values: np.ndarray, n_boot: int, seed: int) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return estimate(float("nan"))
    if n_boot <= 0 or v.size < 2:
        return estimate(float(v.mean()))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    return estimate(float(v.mean()), means)


def compute_metrics(
    records: list[dict[str, Any]],
    *,
    rule: str = "argmax",
    exclude_flagged: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every figure of the report (see docs/evaluation.md) from the results records."""
    if rule not in RULES:
        raise ValueError(f"unknown decision rule {rule!r}; valid: {', '.join(RULES)}")
    scans = _scans(records)
    ok = [r for r in scans if r.get("status") == "ok"]
    failed = [r for r in scans if r.get("status") != "ok"]
    flagged = [r for r in ok if _flagged(r)]
    used = [r for r in ok if not (exclude_flagged and _flagged(r))]
    op = RULES[rule]
    out: dict[str, Any] = {
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "operating_point": {"rule": op.name, "description": op.description, "threshold": op.threshold},
        "rules": {k: {"description": v.description, "threshold": v.threshold} for k, v in RULES.items()},
        "settings": {"bootstrap": n_boot, "seed": seed, "exclude_flagged": exclude_flagged, "ci": 0.95},
        "provenance": _provenance(ok),
        "counts": {
            "scans": len(scans),
            "diagnosed": len(ok),
            "failed": len(failed),
            "flagged_not_usable": len(flagged),
            "excluded": len(ok) - len(used),
            "in_metrics": len(used),
            "by_class": {n: sum(1 for r in used if r["label"] == n) for n in C.CLASS_NAMES},
        },
        "failures": {
            "by_type": dict(Counter(r["error"]["code"] or r["error"]["type"] for r in failed)),
            "scans": [{"scan_id": r["scan_id"], **r["error"]} for r in failed],
        },
        "quality": _quality(ok),
    }
    labels = np.array([C.CLASS_NAMES.index(r["label"]) for r in used], dtype=np.int64)
    probs = np.array([[r["diagnosis"]["class_probs"][n] for n in C.CLASS_NAMES] for r in used]).reshape(
        -1, len(C.CLASS_NAMES)
    )
    kw: dict[str, Any] = {"n_boot": n_boot, "seed": seed}
    pred = probs.argmax(axis=1) if len(used) else np.zeros(0, np.int64)
    out["per_class"] = {
        name: binary_task(
            name,
            labels == c,
            probs[:, c],
            operating={"argmax": pred == c, "threshold": probs[:, c] >= THRESHOLD},
            **kw,
        )
        for c, name in enumerate(C.CLASS_NAMES)
    }
    out["multiclass"] = multiclass_summary(labels, probs, C.CLASS_NAMES, **kw)
    out["task_specific"] = {
        t.name: binary_task(t.name, t.y, t.score, operating={"task": t.score >= THRESHOLD}, **kw)
        for t in task_scores(labels, probs)
    }
    out["steps"] = _steps(used, labels, kw)
    out["segmentation"] = _segmentation(used, kw)
    out["course"] = _course([r for r in records if r.get("kind") == "course"], kw)
    return out


def _provenance(ok: list[dict[str, Any]]) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []
    for r in ok:
        p = r["diagnosis"].get("provenance") or {}
        if p not in seen:
            seen.append(p)
    return {"models": seen[0] if seen else {}, "distinct": len(seen)}


def _quality(ok: list[dict[str, Any]]) -> dict[str, Any]:
    codes: dict[str, dict[str, Any]] = {}
    for r in ok:
        for f in r["diagnosis"].get("quality") or []:
            c = codes.setdefault(f["code"], {"severity": f["severity"], "scans": 0, "message": f["message"]})
            c["scans"] += 1
    severities = Counter(f["severity"] for r in ok for f in r["diagnosis"].get("quality") or [])
    return {"codes": codes, "by_severity": dict(severities)}


def _steps(used: list[dict[str, Any]], labels: np.ndarray, kw: dict[str, Any]) -> dict[str, Any]:
    def col(key: str) -> np.ndarray:
        return np.array(
            [np.nan if r["diagnosis"].get(key) is None else r["diagnosis"][key] for r in used], np.float64
        )

    viral = np.isin(labels, _VIRAL)
    covid = labels == _COVID
    out: dict[str, Any] = {}

    def task(name: str, members: np.ndarray, y: np.ndarray, score: np.ndarray) -> None:
        members = members & np.isfinite(score)
        s = score[members]
        out[name] = binary_task(name, y[members], s, operating={"threshold": s >= THRESHOLD}, **kw)

    task("DL#1 viral pneumonia vs not", np.ones(labels.size, bool), viral, col("p_viral"))
    task("DL#2 COVID-19 vs other viral", viral, covid, col("p_covid_given_viral"))
    task("stepwise P(COVID-19)", np.ones(labels.size, bool), covid, col("p_covid_stepwise"))
    has_clinical = np.array([bool(r.get("has_clinical")) for r in used], bool)
    fused = col("p_covid_fused")
    if has_clinical.any():
        task("DL#3 COVID-19 vs other viral, with clinical data", viral & has_clinical, covid, fused)
    return out


def _segmentation(used: list[dict[str, Any]], kw: dict[str, Any]) -> dict[str, Any]:
    segs = [(r, r["segmentation"]) for r in used if r.get("segmentation")]
    out: dict[str, Any] = {
        "errors": [{"scan_id": r["scan_id"], **s["error"]} for r, s in segs if "error" in s]
    }
    for organ in ("lung", "lesion"):
        rows = [(r, s) for r, s in segs if f"{organ}_dice" in s]
        if not rows:
            continue
        pred = np.array([r["diagnosis"][f"{organ}_volume_ml"] for r, _ in rows], np.float64)
        ref = np.array([s[f"{organ}_volume_ref_ml"] for _, s in rows], np.float64)
        dice = np.array([s[f"{organ}_dice"] for _, s in rows], np.float64)
        present = ref > 0  # Dice of a lesion-free reference says nothing about the lesion model
        entry: dict[str, Any] = {
            "n": len(rows),
            "n_with_reference": int(present.sum()),
            "dice": _mean_ci(dice[present], kw["n_boot"], kw["seed"]),
            "volume_error_ml": _mean_ci(pred[present] - ref[present], kw["n_boot"], kw["seed"]),
            "relative_volume_error": _mean_ci(
                (pred[present] - ref[present]) / ref[present], kw["n_boot"], kw["seed"]
            ),
            "bland_altman_ml": bland_altman(pred, ref),
            "pairs_ml": {"predicted": pred.tolist(), "reference": ref.tolist()},
        }
        if (~present).any():
            entry["false_positive_volume_ml"] = _mean_ci(pred[~present], kw["n_boot"], kw["seed"])
        out[organ] = entry
    return out


def _course(courses: list[dict[str, Any]], kw: dict[str, Any]) -> dict[str, Any]:
    ok = [c for c in courses if c.get("status") == "ok"]
    checks = [ch for c in ok for ch in c["checks"]]
    out: dict[str, Any] = {
        "patients": len(ok),
        "failed": [{"patient_id": c["patient_id"], **c["error"]} for c in courses if c.get("status") != "ok"],
        "checks": len(checks),
    }
    if not checks:
        return out
    reached = [ch for ch in checks if ch["crossing_day"] is not None]
    err = np.array([ch["crossing_error_days"] for ch in reached], np.float64)
    ratio_err = np.array([ch["ratio_error"] for ch in checks], np.float64)
    out.update(
        {
            "reached": len(reached),
            "crossing_error_days_mean": _mean_ci(err, kw["n_boot"], kw["seed"]),
            "crossing_error_days_mae": _mean_ci(np.abs(err), kw["n_boot"], kw["seed"]),
            "ratio_error_mae": _mean_ci(np.abs(ratio_err), kw["n_boot"], kw["seed"]),
            # the stated 95 % ranges of the day: does the real day lie in them, and do they close
            # within the server's horizon (results from before the ranges were recorded: skipped)
            **_ranges([ch for ch in checks if "in_range" in ch], kw),
            "bland_altman_interval_days": bland_altman(
                np.array([ch["interval_predicted_days"] for ch in reached], np.float64),
                np.array([ch["interval_actual_days"] for ch in reached], np.float64),
            ),
            "by_point": {},
            "patients_detail": [
                {
                    "patient_id": c["patient_id"],
                    "days": c["days"],
                    "ratios": c["ratios"],
                    "checks": c["checks"],
                }
                for c in ok
            ],
        }
    )
    for point in sorted({ch["point"] for ch in checks}):
        pc = [ch for ch in checks if ch["point"] == point]
        pr = [ch["crossing_error_days"] for ch in pc if ch["crossing_day"] is not None]
        out["by_point"][str(point)] = {
            "n": len(pc),
            "reached": len(pr),
            "crossing_error_days_mae": _mean_ci(np.abs(np.asarray(pr, np.float64)), kw["n_boot"], kw["seed"]),
        }
    return out


def _ranges(checks: list[dict[str, Any]], kw: dict[str, Any]) -> dict[str, Any]:
    if not checks:
        return {}
    inside = np.array([ch["in_range"] for ch in checks], np.float64)
    closed = np.array([None not in ch["crossing_range"] for ch in checks], np.float64)
    return {
        "range_checks": len(checks),
        "range_coverage": _mean_ci(inside, kw["n_boot"], kw["seed"]),
        "range_closed": _mean_ci(closed, kw["n_boot"], kw["seed"]),
    }


PER_SCAN_COLUMNS: tuple[str, ...] = (
    "scan_id", "path", "label", "status", "error_type", "error_code", "error", "in_metrics",
    "predicted_class", *(f"p_{n}" for n in C.CLASS_NAMES), "p_viral", "p_covid_given_viral",
    "p_covid_stepwise", "p_svm", "p_covid_fused", "lung_volume_ml", "lesion_volume_ml", "lesion_ratio",
    "lung_dice", "lesion_dice", "lung_volume_ref_ml", "lesion_volume_ref_ml", "usable", "quality",
    "patient_id", "day", "latency_s",
)  # fmt: skip


def write_per_scan(path: Path, records: list[dict[str, Any]], *, exclude_flagged: bool = False) -> Path:
    """One row per scan of the manifest that has a result, failed ones included."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(PER_SCAN_COLUMNS))
        w.writeheader()
        for r in _scans(records):
            row: dict[str, Any] = {
                k: r.get(k, "") for k in ("scan_id", "path", "label", "status", "patient_id")
            }
            row["day"] = "" if r.get("day") is None else r["day"]
            err = r.get("error") or {}
            row.update(
                error_type=err.get("type", ""), error_code=err.get("code") or "", error=err.get("message", "")
            )
            d = r.get("diagnosis")
            if r.get("status") == "ok" and d:
                row["in_metrics"] = int(not (exclude_flagged and _flagged(r)))
                row["predicted_class"] = d["predicted_class"]
                for n in C.CLASS_NAMES:
                    row[f"p_{n}"] = d["class_probs"][n]
                for k in (
                    "p_viral", "p_covid_given_viral", "p_covid_stepwise", "p_svm", "p_covid_fused",
                    "lung_volume_ml", "lesion_volume_ml", "lesion_ratio", "latency_s", "usable",
                ):  # fmt: skip
                    row[k] = "" if d.get(k) is None else d[k]
                row["quality"] = ";".join(q["code"] for q in d.get("quality") or [])
                for k, v in (r.get("segmentation") or {}).items():
                    if k in PER_SCAN_COLUMNS:
                        row[k] = v
            else:
                row["in_metrics"] = 0
            w.writerow(row)
    return path
