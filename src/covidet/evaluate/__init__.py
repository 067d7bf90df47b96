"""Site validation: run a hospital's labelled scans through a running server and measure the
served models (ROC/AUC with bootstrap CIs, PR, decision statistics, calibration, decision curves,
CoviDet's steps, segmentation, the course). A client-side tool: it talks to the server through
`covidet.client` and computes with numpy, scikit-learn and matplotlib (no torch).

``DIR/results.jsonl`` (one record per scan, appended as it arrives: the run resumes),
``DIR/metrics.json``, ``DIR/per_scan.csv`` and ``DIR/report.html``. See docs/evaluation.md.
"""

from __future__ import annotations

from covidet.evaluate._api import evaluate, write_report
from covidet.evaluate._manifest import ManifestError, ManifestRow, read_manifest
from covidet.evaluate._metrics import binary_task, multiclass_summary, youden_cutoff
from covidet.evaluate._report import compute_metrics
from covidet.evaluate._results import ResultsLog, read_results
from covidet.evaluate._rules import RULES
from covidet.evaluate._run import RunSummary, run_courses, run_scans

__all__ = [
    "RULES",
    "ManifestError",
    "ManifestRow",
    "ResultsLog",
    "RunSummary",
    "binary_task",
    "compute_metrics",
    "evaluate",
    "multiclass_summary",
    "read_manifest",
    "read_results",
    "run_courses",
    "run_scans",
    "write_report",
    "youden_cutoff",
]
