"""`covidet eval-progression` (the DL#5 fit-on-3, predict-the-interval evaluation, against a line)
and `covidet train-course-prior` (the GPR's population prior from earlier patients)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from covidet.errors import InvalidInputError
from covidet.progression._evaluate import METHODS, PAPER_DL5, TRUTH, evaluate_courses, evaluate_progression
from covidet.progression._prior import DEFAULT_PRIOR, CoursePrior, read_course_table, read_courses_csv
from covidet.progression._prior_train import train_course_prior
from covidet.progression._synthetic import PATTERNS, generate_course

__all__ = ["main_eval_progression", "main_train_course_prior"]

_METHOD_NAMES = {
    "gpr": "GPR (served)",
    "line": "line 2-3",
    "gpr_mean_path": "GPR mean path",
    TRUTH: "true course",
}


def _pm(mean: float, sd: float) -> str:
    return f"{mean:.2f} ± {sd:.2f}"


def _p(p: float) -> str:
    return f"{p:.2g}" if p < 0.01 else f"{p:.2f}"


def main_eval_progression(argv: Sequence[str] | None = None) -> int:
    """Evaluate DL#5 (fit 3 scans, predict the 3rd->4th/5th interval) against a line: on synthetic
    courses, per pattern, or on a hospital's own serial scans (--courses)."""
    p = argparse.ArgumentParser(prog="covidet eval-progression", description=main_eval_progression.__doc__)
    p.add_argument(
        "--courses",
        type=Path,
        default=None,
        help="CSV with columns patient,day,ratio and optionally group (one row per scan): evaluate "
        "on these courses instead of synthetic ones (each needs 4 or more scans)",
    )
    p.add_argument("--n", type=int, default=200, help="number of synthetic courses")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--horizon",
        type=float,
        default=30.0,
        help="days searched after the 3rd scan; no crossing counts as this many days in the MAE",
    )
    p.add_argument("--patterns", nargs="+", default=list(PATTERNS), choices=PATTERNS)
    p.add_argument("--restarts", type=int, default=2, help="optimizer restarts per GP fit")
    p.add_argument(
        "--prior",
        type=Path,
        default=None,
        help="course prior JSON (covidet train-course-prior); default built-in",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = p.parse_args(argv)
    prior = DEFAULT_PRIOR if args.prior is None else CoursePrior.load(args.prior)
    if args.courses is not None:
        courses = read_course_table(args.courses)
        res = evaluate_courses(courses, horizon_days=args.horizon, n_restarts=args.restarts, prior=prior)
        what = f"{res['all']['n']} courses of {args.courses.name}"
        if res["all"]["n"] == 0:
            raise InvalidInputError(
                f"{args.courses}: none of its {len(courses)} courses has 4 or more scans; the forecast "
                "is fit on 3 and judged on the 4th and 5th"
            )
    else:
        res = evaluate_progression(
            args.n,
            args.seed,
            horizon_days=args.horizon,
            patterns=args.patterns,
            n_restarts=args.restarts,
            prior=prior,
        )
        what = f"{args.n} synthetic courses"
    if args.json:
        print(json.dumps(res, indent=2, allow_nan=True))
        return 0
    from rich.console import Console

    console = Console()
    console.print(
        f"course prior: {prior.source} (drift {prior.drift:.3g}/day, slope SD "
        f"{prior.slope_sd:.3g}/day, tau {prior.tau:.3g} d)"
    )
    if res["all"].get("n_skipped"):
        console.print(f"{res['all']['n_skipped']} courses with fewer than 4 scans left out")
    console.print(_interval_table(res, what, args.horizon))
    g, mp = res["all"]["gpr"], res["all"]["gpr_mean_path"]
    console.print(
        "possible, not forecast (not counted as a crossing): GPR, under half but at least 2.5% of the "
        f"likely courses reach the level: 3->4 {100 * g['possible_only_3to4']:.0f}%, 3->5 "
        f"{100 * g['possible_only_3to5']:.0f}%; its mean path does not but its 95% band does: 3->4 "
        f"{100 * mp['possible_only_3to4']:.0f}%, 3->5 {100 * mp['possible_only_3to5']:.0f}%"
    )
    console.print(
        "the stated 95% ranges of the day (GPR): the actual day lies in them for 3->4 "
        f"{100 * g['range_coverage_3to4']:.0f}%, 3->5 {100 * g['range_coverage_3to5']:.0f}% of the courses "
        "(an open end covers every later day); they close within the horizon for 3->4 "
        f"{100 * g['range_closed_3to4']:.0f}%, 3->5 {100 * g['range_closed_3to5']:.0f}%"
    )
    console.print(_paper_table(res["all"]))
    return 0


def main_train_course_prior(argv: Sequence[str] | None = None) -> int:
    """Learn the GPR's course prior (resolution drift, slope SD, slope memory) from earlier courses."""
    p = argparse.ArgumentParser(
        prog="covidet train-course-prior", description=main_train_course_prior.__doc__
    )
    p.add_argument(
        "courses", nargs="?", type=Path, help="CSV with columns patient,day,ratio (one row per scan)"
    )
    p.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="instead of a CSV: N courses of this project's synthetic generator (6 scans each; a demo, "
        "not a population)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic courses")
    p.add_argument("--out", type=Path, required=True, help="the prior's JSON (for --prior / course_prior)")
    args = p.parse_args(argv)
    if (args.courses is None) == (args.synthetic <= 0):
        p.error("give either a courses CSV or --synthetic N")
    if args.courses is not None:
        courses = read_courses_csv(args.courses)
        source = f"trained on {args.courses.name}"
    else:
        # seeds far from eval-progression's (seed * 1_000_003 + i): other courses than it evaluates
        base = 10_000_000 * (args.seed + 1)
        courses = [generate_course(PATTERNS[i % len(PATTERNS)], base + i, 6) for i in range(args.synthetic)]
        source = f"trained on {args.synthetic} synthetic courses (seed {args.seed})"
    prior = train_course_prior(courses, source=source)
    prior.save(args.out)
    print(
        f"{prior.n_courses} courses: drift {prior.drift:.4g} logit/day, slope SD {prior.slope_sd:.4g} "
        f"logit/day, tau {prior.tau:.4g} days -> {args.out}"
    )
    return 0


def _interval_table(res: dict[str, dict[str, Any]], what: str, horizon: float) -> Any:
    from rich.table import Table

    t = Table(
        title=f"DL#5 on {what}: fit 3 scans, predict the day the 4th / 5th ratio is "
        f"reached (no crossing within {horizon:g} d counts as {horizon:g} d)"
    )
    for col in ("group", "n", "method"):
        t.add_column(col)
    for k in (4, 5):
        t.add_column(f"3->{k} MAE d", justify="right")
        t.add_column(f"3->{k} no crossing", justify="right")
        t.add_column(f"3->{k} MAE d, crossed", justify="right")
    t.add_column("ratio MAE 4 / 5", justify="right")
    for name, s in res.items():
        if name == "all":
            t.add_section()
        for i, m in enumerate(m for m in (*METHODS, TRUTH) if m in s):
            ms = s[m]
            n = f"{s['n']}" if ms["n_3to5"] == s["n"] else f"{s['n']} ({ms['n_3to5']:.0f} with a 5th)"
            cells = [name if i == 0 else "", n if i == 0 else "", _METHOD_NAMES[m]]
            for k in (4, 5):
                cells += [
                    f"{ms[f'mae_days_3to{k}']:.2f}",
                    f"{100 * ms[f'no_crossing_3to{k}']:.0f}%",
                    f"{ms[f'mae_days_crossed_3to{k}']:.2f}",
                ]
            cells.append(f"{ms['mae_ratio_4']:.3f} / {ms['mae_ratio_5']:.3f}")
            t.add_row(*cells)
    return t


def _paper_table(s: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(
        title="The paper's comparison, over the courses whose forecast crosses: predicted vs actual "
        "interval (days, mean ± SD), paired t-test, Bland-Altman bias ± 1.96 SD"
    )
    for col in ("interval", "method", "n crossed", "predicted", "actual", "paired p", "bias ± LoA"):
        t.add_column(col, justify="left" if col in ("interval", "method") else "right")
    for k in (4, 5):
        for m in METHODS:
            ms = s[m]
            t.add_row(
                f"3rd->{k}th",
                _METHOD_NAMES[m],
                f"{ms[f'n_crossed_3to{k}']:.0f}",
                _pm(ms[f"pred_mean_3to{k}"], ms[f"pred_sd_3to{k}"]),
                _pm(ms[f"actual_mean_3to{k}"], ms[f"actual_sd_3to{k}"]),
                _p(ms[f"p_paired_3to{k}"]),
                _pm(ms[f"bias_3to{k}"], ms[f"loa_3to{k}"]),
            )
        ref = PAPER_DL5[k]
        t.add_row(
            f"3rd->{k}th",
            "paper (CoviDet)",
            "",
            _pm(ref["pred_mean"], ref["pred_sd"]),
            _pm(ref["actual_mean"], ref["actual_sd"]),
            f"{ref['p']:.2f}",
            "",
        )
    return t
