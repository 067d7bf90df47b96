"""`covidet eval-progression`: the DL#5 fit-on-3, predict-the-interval evaluation."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from covidet.progression._synthetic import PATTERNS, evaluate_progression

__all__ = ["main_eval_progression"]


def main_eval_progression(argv: Sequence[str] | None = None) -> int:
    """Evaluate DL#5 on synthetic courses: MAE (days) of the 3rd->4th/5th interval per pattern."""
    p = argparse.ArgumentParser(prog="covidet eval-progression", description=main_eval_progression.__doc__)
    p.add_argument("--n", type=int, default=200, help="number of synthetic courses")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--horizon", type=float, default=30.0, help="days searched after the 3rd scan")
    p.add_argument("--patterns", nargs="+", default=list(PATTERNS), choices=PATTERNS)
    p.add_argument("--restarts", type=int, default=2, help="optimizer restarts per GP fit")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    res = evaluate_progression(
        args.n,
        args.seed,
        horizon_days=args.horizon,
        patterns=args.patterns,
        n_restarts=args.restarts,
    )
    if args.json:
        print(json.dumps(res, indent=2, allow_nan=True))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"DL#5 on {args.n} synthetic courses: fit 3 scans, predict the interval")
    for col in ("pattern", "n"):
        t.add_column(col)
    for k in (4, 5):
        t.add_column(f"3->{k} MAE d", justify="right")
        t.add_column(f"3->{k} pred/act d", justify="right")
        t.add_column(f"3->{k} crossed: n%, MAE d", justify="right")
    t.add_column("ratio MAE 4/5", justify="right")
    for name, s in res.items():
        if name == "all":
            t.add_section()
        cells = [name, f"{s['n']:.0f}"]
        for k in (4, 5):
            cells += [
                f"{s[f'mae_days_3to{k}']:.2f}",
                f"{s[f'pred_days_3to{k}']:.2f}/{s[f'actual_days_3to{k}']:.2f}",
                f"{100 * s[f'reached_3to{k}']:.0f}%, {s[f'mae_days_reached_3to{k}']:.2f}",
            ]
        cells.append(f"{s['mae_ratio_4']:.3f}/{s['mae_ratio_5']:.3f}")
        t.add_row(*cells)
    Console().print(t)
    return 0
