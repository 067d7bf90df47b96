"""Measure the demo models on freshly generated phantoms (`covidet evaluate-demo`).

Runs the exact serving pipeline (`ScanPipeline`) in-process on the rendered ONNX models and
compares with the phantoms' ground truth: lung and lesion Dice, 4-class accuracy (top-K fusion),
DL#1 / DL#2 accuracy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from covidet import _contract as C
from covidet.ensemble import InProcessModels, PipelineConfig, ScanPipeline
from covidet.metrics import dice
from covidet.phantom import Phantom, make_phantom

__all__ = ["EvaluationReport", "ScanScore", "evaluate_phantoms", "main_evaluate_demo"]

_VIRAL = {"influenza", "COVID-19"}


@dataclass
class ScanScore:
    kind: str
    predicted: str
    lung_dice: float
    lesion_dice: float | None  # None when the phantom has no lesion
    p_viral: float
    p_covid_given_viral: float
    lesion_ratio_true: float
    lesion_ratio_pred: float
    seconds: float


@dataclass
class EvaluationReport:
    scans: list[ScanScore] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        s = self.scans
        lesion = [x.lesion_dice for x in s if x.lesion_dice is not None]
        viral = [x for x in s if x.kind in _VIRAL]
        return {
            "n_scans": len(s),
            "lung_dice_mean": float(np.mean([x.lung_dice for x in s])),
            "lung_dice_min": float(np.min([x.lung_dice for x in s])),
            "lesion_dice_mean": float(np.mean(lesion)) if lesion else float("nan"),
            "lesion_dice_min": float(np.min(lesion)) if lesion else float("nan"),
            "accuracy_4class": float(np.mean([x.predicted == x.kind for x in s])),
            "accuracy_dl1_viral": float(np.mean([(x.p_viral > 0.5) == (x.kind in _VIRAL) for x in s])),
            "accuracy_dl2_covid": float(
                np.mean([(x.p_covid_given_viral > 0.5) == (x.kind == "COVID-19") for x in viral])
            )
            if viral
            else float("nan"),
            "seconds_per_scan": float(np.mean([x.seconds for x in s])),
        }


def score(ph: Phantom, out: dict[str, np.ndarray], seconds: float) -> ScanScore:
    probs = out["CLASS_PROBS"]
    has_lesion = bool(ph.lesion_mask.any())
    return ScanScore(
        kind=ph.kind,
        predicted=C.CLASS_NAMES[int(np.argmax(probs))],
        lung_dice=dice(out["LUNG_MASK"], ph.lung_mask),
        lesion_dice=dice(out["LESION_MASK"], ph.lesion_mask) if has_lesion else None,
        p_viral=float(out["P_VIRAL"][0]),
        p_covid_given_viral=float(out["P_COVID_GIVEN_VIRAL"][0]),
        lesion_ratio_true=float(ph.lesion_mask.sum() / max(ph.lung_mask.sum(), 1)),
        lesion_ratio_pred=float(out["LESION_RATIO"][0]),
        seconds=seconds,
    )


def evaluate_phantoms(
    repository: Path, phantoms: Sequence[Phantom], *, threads: int | None = None
) -> EvaluationReport:
    models = InProcessModels(repository, threads=threads)
    config = PipelineConfig.from_repository(repository)
    pipe = ScanPipeline(config, models.infer)
    report = EvaluationReport()
    try:
        for ph in phantoms:
            t0 = time.perf_counter()
            out = asyncio.run(pipe.run(ph.hu, np.asarray(ph.spacing, np.float32), return_masks=True))
            report.scans.append(score(ph, out, time.perf_counter() - t0))
    finally:
        models.close()
    return report


def main_evaluate_demo(argv: Sequence[str] | None = None) -> int:
    from covidet.export._render import render_repository

    parser = argparse.ArgumentParser(prog="covidet evaluate-demo", description=__doc__)
    parser.add_argument("--seed", type=int, default=1000, help="phantom seed (not the training ones)")
    parser.add_argument("--per-class", type=int, default=5)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--checkpoints", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    phantoms = [
        make_phantom(kind, n_slices=args.slices, size=args.size, seed=args.seed + 10 * i + j)
        for i in range(args.per_class)
        for j, kind in enumerate(C.CLASS_NAMES)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        repo = render_repository("cpu", Path(tmp) / "repo", args.checkpoints)
        report = evaluate_phantoms(repo, phantoms)
    summary = report.summary()
    if args.json:
        print(json.dumps({"summary": summary, "scans": [asdict(s) for s in report.scans]}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"demo models on {len(phantoms)} fresh phantoms (seed {args.seed})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console().print(table)
    return 0
