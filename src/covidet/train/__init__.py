"""Demo-model training on synthetic phantoms and their evaluation (needs the `export` extra)."""

from __future__ import annotations

from covidet.train._demo import main_train_demo, train_all
from covidet.train._evaluate import EvaluationReport, evaluate_phantoms, main_evaluate_demo

__all__ = [
    "EvaluationReport",
    "evaluate_phantoms",
    "main_evaluate_demo",
    "main_train_demo",
    "train_all",
]
