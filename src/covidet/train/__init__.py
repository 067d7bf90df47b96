"""Demo-model training on synthetic phantoms and their evaluation (needs the `export` extra)."""

from __future__ import annotations

from covidet.train._demo import main_train_demo, train_all
from covidet.train._evaluate import EvaluationReport, evaluate_phantoms, main_evaluate_demo
from covidet.train._untrained import main_init_checkpoints, write_untrained

__all__ = [
    "EvaluationReport",
    "evaluate_phantoms",
    "main_evaluate_demo",
    "main_init_checkpoints",
    "main_train_demo",
    "train_all",
    "write_untrained",
]
