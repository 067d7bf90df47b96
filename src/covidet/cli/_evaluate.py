"""`covidet evaluate MANIFEST.csv --url HOST:PORT --out DIR`: site validation through a running
server (docs/evaluation.md)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from covidet.cli._options import DEFAULT_URL, add_server_options

__all__ = ["main_evaluate"]


def main_evaluate(argv: list[str]) -> int:
    """Measure the served models on labelled scans: results.jsonl, metrics.json, per_scan.csv,
    report.html."""
    from covidet.evaluate._rules import RULES

    p = argparse.ArgumentParser(prog="covidet evaluate", description=main_evaluate.__doc__)
    p.add_argument("manifest", type=Path, nargs="?", help="CSV, one row per scan (docs/evaluation.md)")
    p.add_argument("--out", type=Path, required=True, help="results and report folder (a re-run resumes)")
    add_server_options(p)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per scan")
    p.add_argument("--concurrency", type=int, default=2, help="scans in flight at once")
    p.add_argument(
        "--wait-ready",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for a server that is still starting",
    )
    p.add_argument("--retry-failed", action="store_true", help="run the scans that failed before again")
    p.add_argument(
        "--from-results",
        action="store_true",
        help="recompute the report from DIR/results.jsonl, no server (no manifest needed)",
    )
    p.add_argument(
        "--rule", choices=list(RULES), default="argmax", help="the decision rule of the operating point"
    )
    p.add_argument(
        "--exclude-flagged",
        action="store_true",
        help="leave scans a quality check marks not usable out of the metrics (they are counted)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = p.parse_args(argv)
    if args.concurrency < 1:
        p.error(f"--concurrency must be >= 1, got {args.concurrency}")
    if not args.from_results:
        if args.manifest is None:
            p.error("give the MANIFEST (or --from-results to report on DIR/results.jsonl)")
        _run(args)
    from covidet.evaluate import write_report

    try:
        paths = write_report(
            args.out,
            rule=args.rule,
            exclude_flagged=args.exclude_flagged,
            n_boot=args.bootstrap,
            seed=args.seed,
        )
    except FileNotFoundError as exc:
        from covidet.errors import InvalidInputError

        raise InvalidInputError(str(exc)) from None
    _summary(paths["metrics"])
    print(f"report: {paths['report']}")
    print(f"metrics: {paths['metrics']}")
    print(f"per scan: {paths['per_scan']}")
    return 0


def _run(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from covidet.client import AsyncClient
    from covidet.errors import ServerUnavailableError
    from covidet.evaluate import evaluate, read_manifest
    from covidet.evaluate._results import RESULTS_NAME, read_results

    rows = read_manifest(args.manifest)
    console = Console(stderr=True)
    have = {r.get("key") for r in read_results(args.out / RESULTS_NAME) if r.get("kind") == "scan"}
    left = sum(1 for r in rows if r.scan_id not in have)

    async def go() -> Any:
        urls = args.url or [DEFAULT_URL]
        async with AsyncClient(urls, protocol=args.protocol, timeout_s=args.timeout) as client:
            await _wait_ready(client, args.wait_ready)
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=console) as progress:
                task = progress.add_task("evaluating", total=len(rows), completed=len(rows) - left)

                def advance(rec: dict[str, Any]) -> None:
                    if rec["status"] != "ok":
                        err = rec["error"]
                        console.print(
                            f"{rec['scan_id']}: failed: {err['type']}: {err['message']}", markup=False
                        )
                    progress.advance(task)

                return await evaluate(
                    rows,
                    client,
                    args.out,
                    concurrency=args.concurrency,
                    retry_failed=args.retry_failed,
                    on_result=advance,
                )

    try:
        s = asyncio.run(go())
    except ServerUnavailableError as exc:
        raise ServerUnavailableError(
            f"{exc}; the results so far are in {args.out / RESULTS_NAME}: run the same command again "
            "to resume"
        ) from exc
    console.print(
        f"{s.done} scans diagnosed, {s.failed} failed, {s.skipped} already in {args.out / RESULTS_NAME}; "
        f"{s.courses} courses forecast"
    )


async def _wait_ready(client: Any, seconds: float) -> None:
    import time

    deadline = time.monotonic() + seconds
    while seconds > 0 and not await client.is_ready():
        if time.monotonic() > deadline:
            from covidet.errors import ServerUnavailableError

            raise ServerUnavailableError(f"the server was not ready within {seconds:g} s")
        await asyncio.sleep(1.0)


def _summary(metrics_path: Path) -> None:
    import json

    m = json.loads(metrics_path.read_text())
    c = m["counts"]
    print(
        f"{c['scans']} scans: {c['diagnosed']} diagnosed, {c['failed']} failed, "
        f"{c['flagged_not_usable']} not usable, {c['in_metrics']} in the metrics"
    )
    mc = m["multiclass"]
    if "macro_auc_ovr" in mc:
        print(f"macro AUC {_ci(mc['macro_auc_ovr'])}, multi-way AUC {_ci(mc['multiway_auc_ovo'])}")
    for group in ("per_class", "steps"):
        for name, t in m[group].items():
            if "auc" in t:
                print(f"  AUC {name}: {_ci(t['auc'])}")


def _ci(e: dict[str, Any]) -> str:
    def f(v: Any) -> str:
        return "nan" if v is None else f"{v:.3f}"

    return f"{f(e['value'])} ({f(e['ci_low'])}-{f(e['ci_high'])})"
