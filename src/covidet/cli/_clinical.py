"""`covidet clinical-demo` and `covidet train-svm`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from covidet.clinical._schema import ClinicalDataError
from covidet.clinical._svm import KERNELS, ClinicalSVM
from covidet.clinical._svm_file import save_svm
from covidet.clinical._svm_train import train_svm
from covidet.clinical._synthetic import generate_clinical, read_csv, write_csv

__all__ = ["main_make_clinical", "main_train_svm"]


def main_make_clinical(argv: Sequence[str] | None = None) -> int:
    """Write a synthetic clinical CSV (features, simulated DL#2 probability, label)."""
    p = argparse.ArgumentParser(prog="covidet clinical-demo", description=main_make_clinical.__doc__)
    p.add_argument("--n", type=int, default=400, help="number of patients")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--covid-fraction", type=float, default=0.5)
    p.add_argument("--missing-rate", type=float, default=0.05, help="fraction of missing lab values")
    p.add_argument("--out", type=Path, default=Path("features.csv"))
    args = p.parse_args(argv)
    x, y, p_dl2 = generate_clinical(
        args.n,
        args.seed,
        covid_fraction=args.covid_fraction,
        missing_rate=args.missing_rate,
        return_p_dl2=True,
    )
    write_csv(args.out, x, y, p_dl2)
    print(f"wrote {args.n} synthetic patients ({int(y.sum())} COVID-19) to {args.out}")
    return 0


def print_metrics(model: ClinicalSVM) -> None:
    """A table of the CV AUC per kernel and the fusion's AUCs."""
    from rich.console import Console
    from rich.table import Table

    m = model.metrics
    t = Table(title=f"SVM kernels ({m.get('folds')}-fold CV on {m.get('n_train')} patients)")
    t.add_column("kernel")
    t.add_column("CV AUC", justify="right")
    t.add_column("best parameters")
    for k, r in m.get("kernels", {}).items():
        mark = " (chosen)" if k == m.get("chosen_kernel") else ""
        t.add_row(k + mark, f"{r['cv_auc']:.4f}", json.dumps(r["params"], sort_keys=True))
    t.add_section()
    t.add_row("DL#2 alone", f"{m.get('auc_dl2', float('nan')):.4f}", "simulated/observed p_dl2")
    t.add_row("SVM alone", f"{m.get('auc_svm_oof', float('nan')):.4f}", "out of fold")
    t.add_row("DL#3 fused", f"{m.get('auc_fused_oof', float('nan')):.4f}", "out of fold")
    Console().print(t)


def main_train_svm(argv: Sequence[str] | None = None) -> int:
    """Train the DL#3 clinical SVM + fusion from a CSV and write the JSON model file."""
    p = argparse.ArgumentParser(prog="covidet train-svm", description=main_train_svm.__doc__)
    p.add_argument("features", type=Path, help="CSV: schema features, p_dl2, label")
    p.add_argument("--out", type=Path, required=True, help="output directory (or .json path)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=KERNELS)
    p.add_argument("--provenance", default="", help="recorded in the model file")
    args = p.parse_args(argv)
    x, y, p_dl2 = read_csv(args.features)
    if p_dl2 is None:
        raise ClinicalDataError(
            f"{args.features} has no 'p_dl2' column: the DL#3 fusion needs the DL#2 probability "
            "of each patient (covidet clinical-demo writes a simulated one)"
        )
    prov = args.provenance or f"trained by covidet train-svm on {args.features.name} (seed {args.seed})"
    model = train_svm(x, y, seed=args.seed, p_dl2=p_dl2, kernels=args.kernels, provenance=prov)
    path = save_svm(model, args.out)
    print_metrics(model)
    print(f"model file: {path}")
    return 0
