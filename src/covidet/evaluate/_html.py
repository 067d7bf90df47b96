"""``report.html``: one self-contained page (tables and matplotlib PNGs embedded as data URIs),
the models' provenance at the top."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from covidet.evaluate._metrics import DECISION_KEYS

__all__ = ["write_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1180px;color:#1b1b1b;line-height:1.35}
h1{font-size:1.6em;margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #ccc;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.9em}
th,td{border:1px solid #d0d0d0;padding:3px 8px;text-align:left}th{background:#f2f2f2}
td.num{text-align:right}
.warn{background:#fff4d6;border:1px solid #e6b800;padding:8px 12px;margin:8px 0}
.bad{background:#fde2e1;border:1px solid #d33;padding:8px 12px;margin:8px 0}
.figs{display:flex;flex-wrap:wrap;gap:8px}.figs img{width:560px;border:1px solid #eee}
.small{color:#555;font-size:.85em}td .small{white-space:nowrap}code{background:#f4f4f4;padding:0 3px}
"""


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _ci(e: dict[str, float] | None, digits: int = 3) -> str:
    if not e:
        return "–"
    s = _fmt(e.get("value"), digits)
    if e.get("ci_low") is not None and math.isfinite(e.get("ci_low", float("nan"))):
        s += f" <span class=small>({_fmt(e['ci_low'], digits)}–{_fmt(e['ci_high'], digits)})</span>"
    return s


def _td(cell: str) -> str:
    """A cell; figures (a number, a CI, a count, a dash) right-aligned."""
    numeric = bool(cell) and (cell[0].isdigit() or cell[0] in "-–")
    return f"<td class=num>{cell}</td>" if numeric else f"<td>{cell}</td>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(_td(c) for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _figure() -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.6))
    return fig, fig.add_subplot()


def _curves(tasks: dict[str, dict[str, Any]], kind: str, title: str) -> str:
    fig, ax = _figure()
    drawn = 0
    for name, t in tasks.items():
        c = (t.get("curves") or {}).get(kind)
        if c is None:
            continue
        drawn += 1
        if kind == "roc":
            ax.plot(c["fpr"], c["tpr"], label=f"{name}: AUC {_fmt(t['auc']['value'])}")
        elif kind == "pr":
            ax.plot(c["recall"], c["precision"], label=f"{name}: AP {_fmt(t['average_precision']['value'])}")
        elif kind == "calibration":
            ax.plot(c["predicted"], c["observed"], "o-", label=f"{name}: Brier {_fmt(t['brier']['value'])}")
    if not drawn:
        return ""
    if kind in ("roc", "calibration"):
        ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    labels = {
        "roc": ("1 - specificity", "sensitivity"),
        "pr": ("recall (sensitivity)", "precision (PPV)"),
        "calibration": ("mean predicted probability", "observed fraction positive"),
    }[kind]
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if kind == "roc" else "best", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _decision_curves(tasks: dict[str, dict[str, Any]], title: str) -> str:
    fig, ax = _figure()
    lows = []
    for name, t in tasks.items():
        c = (t.get("curves") or {}).get("decision")
        if c is None:
            continue
        ax.plot(c["thresholds"], c["model"], label=name)
        lows.append(min(c["model"]))
    if not lows:
        return ""
    first = next(t["curves"]["decision"] for t in tasks.values() if t.get("curves"))
    ax.plot(first["thresholds"], first["treat_all"], "--", color="grey", lw=1, label="treat all (first task)")
    ax.axhline(0, color="black", lw=1, label="treat none")
    ax.set_ylim(max(min(lows) - 0.05, -0.3), max(first["treat_all"][0], 0.1) + 0.1)
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _confusion(cm: dict[str, Any]) -> str:
    m = np.asarray(cm["matrix"])
    if m.size == 0:
        return ""
    fig, ax = _figure()
    ax.imshow(m, cmap="Blues")
    n = len(cm["labels"])
    ax.set_xticks(range(n), cm["labels"], rotation=20)
    ax.set_yticks(range(n), cm["labels"])
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(m[i, j]),
                ha="center",
                va="center",
                color="black" if m[i, j] < m.max() / 2 else "white",
            )
    ax.set_xlabel("predicted (arg-max)")
    ax.set_ylabel("reference")
    ax.set_title("confusion matrix")
    fig.tight_layout()
    return _png(fig)


def _bland_altman(entry: dict[str, Any], title: str) -> str:
    pred = np.asarray(entry["pairs_ml"]["predicted"])
    ref = np.asarray(entry["pairs_ml"]["reference"])
    if pred.size == 0:
        return ""
    ba = entry["bland_altman_ml"]
    fig, ax = _figure()
    ax.scatter((pred + ref) / 2, pred - ref, s=14)
    for key, style in (("bias", "-"), ("loa_low", "--"), ("loa_high", "--")):
        if ba.get(key) is not None and math.isfinite(ba[key]):
            ax.axhline(ba[key], ls=style, color="grey", lw=1)
    ax.set_xlabel("mean of predicted and reference (mL)")
    ax.set_ylabel("predicted - reference (mL)")
    ax.set_title(
        f"{title}: bias {_fmt(ba['bias'], 1)} mL, LoA {_fmt(ba['loa_low'], 1)}..{_fmt(ba['loa_high'], 1)}"
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _task_rows(tasks: dict[str, dict[str, Any]], point: str) -> list[list[str]]:
    rows = []
    for name, t in tasks.items():
        if "auc" not in t:
            rows.append([html.escape(name), f"{t['n_pos']}/{t['n']}", t.get("note", "")] + [""] * 8)
            continue
        ops = t["operating_points"]
        at = t["youden"] if point == "youden" else ops.get(point)
        if at is None:  # this task has its own rule (the steps: threshold 0.5)
            at = next(iter(ops.values()))
        cut = _fmt(t["youden"]["cutoff"]) if point == "youden" else ""
        rows.append(
            [html.escape(name), f"{t['n_pos']}/{t['n']}", _ci(t["auc"]), _ci(t["average_precision"])]
            + [_ci(at[k]) for k in DECISION_KEYS]
            + [cut or _ci(t["brier"])]
        )
    return rows


def _decision_table(tasks: dict[str, dict[str, Any]], point: str) -> str:
    last = "Youden cut-off" if point == "youden" else "Brier"
    header = ["task", "pos/n", "AUC", "AP", *DECISION_KEYS, last]
    return _table(header, _task_rows(tasks, point))


def write_html(path: Path, m: dict[str, Any], *, title: str = "covidet site validation") -> Path:
    """Write the report page for the figures ``m`` of `compute_metrics`."""
    op = m["operating_point"]
    counts = m["counts"]
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p class=small>generated {m['generated_at']}</p>"]
    models = m["provenance"]["models"]
    prov_rows = [
        [html.escape(name), html.escape(str(v.get("version", ""))), html.escape(str(v.get("provenance", "")))]
        for name, v in sorted(models.items())
        if isinstance(v, dict)
    ]
    parts.append("<h2>Models</h2>" + _table(["model", "version", "provenance"], prov_rows))
    if any("demo" in r[2].lower() or "random" in r[2].lower() for r in prov_rows):
        parts.append(
            "<div class=warn>These are demo or untrained models: the figures below measure them on "
            "this cohort and say nothing about diagnostic performance on patients.</div>"
        )
    if m["provenance"]["distinct"] > 1:
        parts.append(
            f"<div class=bad>{m['provenance']['distinct']} different model sets answered this run.</div>"
        )
    parts.append(
        "<h2>Cohort</h2>"
        + _table(
            [
                "scans",
                "diagnosed",
                "failed",
                "not usable (quality error)",
                "excluded",
                "in the metrics",
                *counts["by_class"],
            ],
            [
                [
                    str(counts[k])
                    for k in ("scans", "diagnosed", "failed", "flagged_not_usable", "excluded", "in_metrics")
                ]
                + [str(v) for v in counts["by_class"].values()]
            ],
        )
    )
    if m["failures"]["scans"]:
        parts.append(
            "<div class=bad>Failed scans are counted here and left out of the figures below.</div>"
            + _table(
                ["scan", "error", "code", "message"],
                [
                    [
                        html.escape(f["scan_id"]),
                        f["type"],
                        _fmt(f.get("code")),
                        html.escape(f["message"][:300]),
                    ]
                    for f in m["failures"]["scans"]
                ],
            )
        )
    q = m["quality"]["codes"]
    if q:
        parts.append(
            "<h3>Quality flags</h3><p class=small>Counted over the diagnosed scans; flagged scans are "
            + ("left out of" if m["settings"]["exclude_flagged"] else "kept in")
            + " the metrics (<code>--exclude-flagged</code>).</p>"
            + _table(
                ["code", "severity", "scans", "message (first)"],
                [
                    [html.escape(c), v["severity"], str(v["scans"]), html.escape(v["message"][:200])]
                    for c, v in q.items()
                ],
            )
        )
    desc = html.escape(op["description"])
    parts.append(
        f"<h2>Operating point</h2><p>Decision rule <b>{op['rule']}</b>: {desc}. Figures are "
        f"value (95% CI, stratified bootstrap of {m['settings']['bootstrap']} resamples, seed "
        f"{m['settings']['seed']}).</p>"
    )
    mc = m["multiclass"]
    parts.append(
        "<h2>The whole classifier (4 classes)</h2>"
        + _table(
            ["macro AUC (one vs rest)", "multi-way AUC (Hand & Till, one vs one)", "accuracy (arg-max)"],
            [[_ci(mc.get("macro_auc_ovr")), _ci(mc.get("multiway_auc_ovo")), _ci(mc.get("accuracy"))]],
        )
        + (f"<p class=small>{html.escape(mc['note'])}</p>" if "note" in mc else "")
    )
    headline = "task" if op["rule"] == "task" else op["rule"]
    per_class = m["per_class"]
    parts.append(
        f"<h2>Per class, one vs rest</h2><h3>At the operating point (rule {op['rule']})</h3>"
        + _decision_table(per_class if headline != "task" else m["task_specific"], headline)
        + "<h3>At Youden's J</h3>"
        + _decision_table(per_class, "youden")
    )
    other = [r for r in ("argmax", "threshold") if r != headline]
    for r in other:
        parts.append(f"<h3>Rule {r}</h3>" + _decision_table(per_class, r))
    parts.append(
        "<div class=figs>"
        + _curves(per_class, "roc", "ROC, one vs rest")
        + _curves(per_class, "pr", "precision-recall, one vs rest")
        + _confusion(mc["confusion_matrix"])
        + _curves(per_class, "calibration", "reliability diagram")
        + _decision_curves(per_class, "decision curves, one vs rest")
        + "</div>"
    )
    parts.append(
        "<h2>Jin et al.'s task-specific rule</h2>"
        + _decision_table(m["task_specific"], "task")
        + "<h3>At Youden's J</h3>"
        + _decision_table(m["task_specific"], "youden")
        + "<div class=figs>"
        + _curves(m["task_specific"], "roc", "ROC, task-specific scores")
        + "</div>"
    )
    steps = m["steps"]
    parts.append(
        "<h2>CoviDet's steps (threshold 0.5)</h2>"
        + _decision_table(steps, "threshold")
        + "<h3>At Youden's J</h3>"
        + _decision_table(steps, "youden")
        + "<div class=figs>"
        + _curves(steps, "roc", "ROC, CoviDet steps")
        + _curves(steps, "calibration", "reliability, CoviDet steps")
        + _decision_curves(steps, "decision curves, CoviDet steps")
        + "</div>"
    )
    seg = m["segmentation"]
    if any(k in seg for k in ("lung", "lesion")):
        rows = []
        figs = []
        for organ in ("lung", "lesion"):
            if organ not in seg:
                continue
            e = seg[organ]
            ba = e["bland_altman_ml"]
            rows.append(
                [
                    organ,
                    f"{e['n_with_reference']}/{e['n']}",
                    _ci(e["dice"]),
                    _ci(e["volume_error_ml"], 1),
                    _ci(e["relative_volume_error"]),
                    f"{_fmt(ba['bias'], 1)} ({_fmt(ba['loa_low'], 1)}..{_fmt(ba['loa_high'], 1)})",
                    _ci(e.get("false_positive_volume_ml"), 1),
                ]
            )
            figs.append(_bland_altman(e, f"{organ} volume"))
        parts.append(
            "<h2>Segmentation</h2><p class=small>Dice and volume errors over the scans whose reference "
            "mask is not empty; false-positive volume over those whose reference is empty.</p>"
            + _table(
                [
                    "mask",
                    "ref non-empty/n",
                    "Dice",
                    "volume error mL",
                    "relative error",
                    "Bland–Altman bias (LoA) mL",
                    "false-positive mL",
                ],
                rows,
            )
            + "<div class=figs>"
            + "".join(figs)
            + "</div>"
        )
    course = m["course"]
    if course.get("checks"):
        parts.append(
            "<h2>The course (DL#5, GPR fitted on the first 3 scans)</h2>"
            + _table(
                [
                    "patients",
                    "later scans checked",
                    "crossing reached",
                    "crossing-day error mean d",
                    "crossing-day MAE d",
                    "ratio MAE at the real day",
                ],
                [
                    [
                        str(course["patients"]),
                        str(course["checks"]),
                        str(course["reached"]),
                        _ci(course["crossing_error_days_mean"], 2),
                        _ci(course["crossing_error_days_mae"], 2),
                        _ci(course["ratio_error_mae"], 4),
                    ]
                ],
            )
            + (
                _table(
                    ["real day inside the stated 95% range", "range closed within the horizon"],
                    [[_ci(course["range_coverage"], 2), _ci(course["range_closed"], 2)]],
                )
                if "range_coverage" in course
                else ""
            )
            + _table(
                ["scan of the course", "checked", "reached", "crossing-day MAE d"],
                [
                    [k, str(v["n"]), str(v["reached"]), _ci(v["crossing_error_days_mae"], 2)]
                    for k, v in course["by_point"].items()
                ],
            )
        )
    parts.append(
        "<p class=small>covidet is research software, not a medical device. Every figure with its "
        "interval is in metrics.json; every scan in per_scan.csv.</p>"
    )
    doc = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>"
    )
    path.write_text(doc, encoding="utf-8")
    return path
