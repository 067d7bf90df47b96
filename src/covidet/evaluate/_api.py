"""`evaluate`: the whole run (scans, courses, report) as the command does it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from covidet.evaluate._html import write_html
from covidet.evaluate._manifest import ManifestRow
from covidet.evaluate._report import compute_metrics, write_per_scan
from covidet.evaluate._results import RESULTS_NAME, ResultsLog, _json_safe, read_results
from covidet.evaluate._run import RunSummary, ScanClient, run_courses, run_scans

__all__ = ["evaluate", "write_report"]


def write_report(
    out: str | Path,
    *,
    rule: str = "argmax",
    exclude_flagged: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Path]:
    """``metrics.json``, ``per_scan.csv`` and ``report.html`` in ``out`` from its results file
    (no server needed)."""
    out = Path(out)
    records = read_results(out / RESULTS_NAME)
    if not records:
        raise FileNotFoundError(f"{out / RESULTS_NAME}: no results to report")
    metrics = compute_metrics(records, rule=rule, exclude_flagged=exclude_flagged, n_boot=n_boot, seed=seed)
    paths = {
        "metrics": out / "metrics.json",
        "per_scan": out / "per_scan.csv",
        "report": out / "report.html",
    }
    paths["metrics"].write_text(json.dumps(_json_safe(metrics), indent=1, allow_nan=False) + "\n")
    write_per_scan(paths["per_scan"], records, exclude_flagged=exclude_flagged)
    write_html(paths["report"], metrics)
    return paths


async def evaluate(
    rows: list[ManifestRow],
    client: ScanClient,
    out: str | Path,
    *,
    concurrency: int = 1,
    retry_failed: bool = False,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> RunSummary:
    """Run ``rows`` through ``client`` (an open `covidet.client.AsyncClient`) into
    ``out/results.jsonl``, then the courses; resumes a previous run in ``out``."""
    with ResultsLog(Path(out) / RESULTS_NAME) as log:
        summary = await run_scans(
            rows, client, log, concurrency=concurrency, retry_failed=retry_failed, on_result=on_result
        )
        summary.courses = await run_courses(rows, client, log)
        return summary
