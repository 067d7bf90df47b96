#!/usr/bin/env python
"""Load-test covidet: closed-loop concurrency sweep and open-loop rates, with baselines.

    python benchmarks/bench.py --concurrency 1,2,4 --duration 30 --compare naive,onnx --flops \
        --json benchmarks/results/cpu.json --csv benchmarks/results/cpu.csv --png benchmarks/results/cpu.png

Without --url it renders the repository, starts its own Triton on free local ports and measures the
server's peak resident memory (Triton and its Python-backend stubs). See benchmarks/README.md.
"""

from __future__ import annotations

import sys

from covidet.bench import main

if __name__ == "__main__":
    sys.exit(main())
