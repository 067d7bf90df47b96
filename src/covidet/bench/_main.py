"""`benchmarks/bench.py` / `covidet bench`: load-test a covidet server and compare with baselines."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from covidet.bench._compare import BASELINES, BaselineRun, run_baselines
from covidet.bench._levels import run_levels, serving
from covidet.bench._plan import Plan, make_plan, parse_args
from covidet.bench._report import add_flops, new_report, publish

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["BASELINES", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Plan, render the repository, run the levels (and the baselines that need the server) while
    it serves, then the in-process baselines and FLOPs; print and write the report."""
    args = parse_args(argv, __doc__, BASELINES)

    from rich.console import Console

    console = Console(stderr=True)
    plan = make_plan(args, argv, BASELINES)
    try:
        return _run(plan, console)
    finally:
        plan.cleanup()  # --end-to-end: bench's own phantom series on disk


def _run(plan: Plan, console: Console) -> int:
    args = plan.args
    report = new_report(plan)
    from covidet.export._render import render_repository

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo = render_repository(
            plan.profile, work / "repo", plan.checkpoints, torch_compile=args.torch_compile
        )
        with serving(plan, repo, console) as (url, server_pid):
            report["levels"] = run_levels(plan, url, server_pid, console)
            if url:  # (c) perf_analyzer needs the server: run it before stopping it
                report["baselines"] += run_baselines(
                    BaselineRun(plan, repo, work, url), console, serving=True
                )
        report["baselines"] += run_baselines(BaselineRun(plan, repo, work), console, serving=False)
        if args.flops:
            add_flops(report, plan)
    return publish(report, plan, console)
