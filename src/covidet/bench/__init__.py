"""Load generation, baselines and FLOP accounting for `benchmarks/bench.py`."""

from __future__ import annotations

from covidet.bench._load import LevelResult, Sample, Scan, run_closed_loop, run_open_loop
from covidet.bench._main import main

__all__ = ["LevelResult", "Sample", "Scan", "main", "run_closed_loop", "run_open_loop"]
