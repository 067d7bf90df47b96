"""Decision rules: how class probabilities become calls, as the papers state them.

Computed on the report side from the fused 4-class probabilities the server returns
(``CLASS_PROBS``, Jin et al.'s top-K fusion normalised to sum 1), not inside the server:

- ``argmax``: the most probable class (the class a `Diagnosis` names today);
- ``threshold``: Jin et al.'s default threshold 0.5 on each class's probability, one class vs
  the rest (a scan may be called for no class, or, in principle, for several);
- ``task``: Jin et al.'s task-specific fusion with threshold 0.5. Pneumonia vs non-pneumonia:
  the pneumonia scores summed (CAP + influenza + COVID-19). One pneumonia class vs the other
  pneumonias: the classes outside the task (non-pneumonia) muted, the rest renormalised,
  ``p_c / (p_CAP + p_influenza + p_COVID-19)``, on the pneumonia scans. Applied to the fused
  probabilities (the paper sums and mutes slice scores before the top-K fusion), so the scores
  equal the paper's up to that order of operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from covidet import _contract as C

__all__ = ["RULES", "THRESHOLD", "Rule", "TaskScore", "task_scores"]

#: Jin et al.'s default decision threshold.
THRESHOLD = 0.5


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    threshold: float | None


RULES: dict[str, Rule] = {
    "argmax": Rule("argmax", "the most probable of the four classes", None),
    "threshold": Rule(
        "threshold", "Jin et al.: each class's probability >= 0.5, one class vs the rest", THRESHOLD
    ),
    "task": Rule(
        "task",
        "Jin et al.'s task-specific fusion, threshold 0.5: pneumonia = the pneumonia scores summed; "
        "one pneumonia class vs the other pneumonias = non-pneumonia muted, renormalised",
        THRESHOLD,
    ),
}


@dataclass(frozen=True)
class TaskScore:
    """One binary task of the ``task`` rule: who takes part, the truth and the score."""

    name: str
    members: np.ndarray  # bool, over all scans
    y: np.ndarray  # 1 = positive, over the members
    score: np.ndarray  # over the members


def task_scores(labels: np.ndarray, probs: np.ndarray) -> list[TaskScore]:
    """The ``task`` rule's binary tasks for scans with 4-class ``labels`` and ``probs``."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64).reshape(-1, len(C.CLASS_NAMES))
    everyone = np.ones(labels.size, bool)
    pneumonia = p[:, 1:].sum(axis=1)
    tasks = [TaskScore("pneumonia vs non-pneumonia", everyone, (labels != 0).astype(np.int64), pneumonia)]
    members = labels != 0
    for c in range(1, len(C.CLASS_NAMES)):
        score = p[:, c] / np.clip(pneumonia, 1e-12, None)
        tasks.append(
            TaskScore(
                f"{C.CLASS_NAMES[c]} vs other pneumonia",
                members,
                (labels[members] == c).astype(np.int64),
                score[members],
            )
        )
    return tasks
