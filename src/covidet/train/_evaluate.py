"""Measure the demo models on freshly generated phantoms (`covidet evaluate-demo`).

Runs the exact serving pipeline (`ScanPipeline`) in-process on the rendered ONNX models and
compares with the phantoms' ground truth: lung and lesion Dice, 4-class accuracy (top-K fusion),
DL#1 / DL#2 accuracy; and, with the explanation (EXPLAIN) on, whether it points at the lesions:

- the pointing game (on pneumonia phantoms): the share of the top-K slices whose attention peak
  lies inside the true lesion mask dilated by `POINTING_TOLERANCE_PX` pixels;
- the share of the top-K slices that carry a true lesion at all, and the same for the K slices
  with the most lesion by the lesion model (SLICE_LESION_MM2): how well each locates infected
  slices.
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
#: The pointing game's tolerance: the lesion mask dilated by this many pixels (a disc).
POINTING_TOLERANCE_PX = 5


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
    #: top-K slices whose attention peak lies in the (dilated) true lesion; None unexplained
    pointing_hits: int | None = None
    #: top-K slices that carry a true lesion
    topk_lesion_hits: int | None = None
    #: of the K slices with the most lesion by the lesion model, those that carry a true lesion
    lesion_rank_hits: int | None = None
    k: int = C.TOP_K


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
            **self._explained(),
        }

    def _explained(self) -> dict[str, float]:
        """The explanation's scores, over the pneumonia phantoms (the ones with lesions)."""
        sick = [x for x in self.scans if x.kind != C.CLASS_NAMES[0] and x.pointing_hits is not None]
        if not sick:
            return {}
        slices = sum(x.k for x in sick)
        return {
            "pointing_game": sum(x.pointing_hits or 0 for x in sick) / slices,
            "topk_slices_with_lesion": sum(x.topk_lesion_hits or 0 for x in sick) / slices,
            "lesion_ranked_slices_with_lesion": sum(x.lesion_rank_hits or 0 for x in sick) / slices,
        }


def _explanation_hits(ph: Phantom, out: dict[str, np.ndarray]) -> dict[str, int]:
    """The pointing game and the infected-slice locating of one explained scan."""
    from scipy import ndimage

    topk = [int(i) for i in out["TOPK_SLICES"]]
    attention = out["ATTENTION"]
    r = POINTING_TOLERANCE_PX
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = yy**2 + xx**2 <= r * r
    pointing = 0
    for k, idx in enumerate(topk):
        lesion = ndimage.binary_dilation(ph.lesion_mask[idx], structure=disc)
        peak = np.unravel_index(int(np.argmax(attention[k])), attention.shape[1:])
        pointing += int(attention[k].any() and lesion[peak])
    true_area = ph.lesion_mask.sum(axis=(1, 2))
    by_lesion = out["SELECTED_SLICES"][np.argsort(-out["SLICE_LESION_MM2"], kind="stable")[: len(topk)]]
    return {
        "pointing_hits": pointing,
        "topk_lesion_hits": sum(int(true_area[i] > 0) for i in topk),
        "lesion_rank_hits": sum(int(true_area[int(i)] > 0) for i in by_lesion),
        "k": len(topk),
    }


def score(ph: Phantom, out: dict[str, np.ndarray], seconds: float) -> ScanScore:
    probs = out["CLASS_PROBS"]
    has_lesion = bool(ph.lesion_mask.any())
    explained = _explanation_hits(ph, out) if out["ATTENTION"].size else {}
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
        **explained,
    )


def evaluate_phantoms(
    repository: Path, phantoms: Sequence[Phantom], *, threads: int | None = None, explain: bool = True
) -> EvaluationReport:
    models = InProcessModels(repository, threads=threads)
    config = PipelineConfig.from_repository(repository)
    pipe = ScanPipeline(config, models.infer)
    report = EvaluationReport()
    try:
        for ph in phantoms:
            t0 = time.perf_counter()
            spacing = np.asarray(ph.spacing, np.float32)
            out = asyncio.run(pipe.run(ph.hu, spacing, return_masks=True, explain=explain))
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
