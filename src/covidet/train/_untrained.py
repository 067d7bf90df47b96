"""Untrained checkpoints of the papers' full-size networks, for benchmarks and GPU profiling.

No trained full-size weights can be downloaded here, yet speed and memory depend only on the
architectures and input sizes: `write_untrained` writes seeded random weights with complete
metadata (``trained: false``, a provenance that says so), which every covidet tool loads like any
other checkpoint. Random weights give arbitrary masks (typically lung everywhere, so every slice
is also a lesion slice: the most work per scan). Never serve them to diagnose.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from covidet import __version__
from covidet import _contract as C
from covidet.models import build_model, save_checkpoint
from covidet.preprocessing import PreprocessingRecord, default_records
from covidet.train._demo import checkpoint_meta

__all__ = ["FULL_INPUT_SIZES", "main_init_checkpoints", "untrained_records", "write_untrained"]

#: Input sizes of the full-size networks where they differ from the demo records: Jin et al.'s
#: lung U-Net runs on the whole 512x512 slice (the demo one on 128x128).
FULL_INPUT_SIZES = {C.LUNG_SEG.name: (512, 512)}


def untrained_records(variant: str) -> dict[str, PreprocessingRecord]:
    """The preprocessing record of each model in ``variant`` (the demo records, full-size inputs)."""
    records = default_records()
    if variant == "full":
        for name, size in FULL_INPUT_SIZES.items():
            records[name] = dataclasses.replace(records[name], input_size=size)  # type: ignore[arg-type]
    return records


def write_untrained(out: Path | str, *, variant: str = "full", seed: int = 0) -> dict[str, Path]:
    """Write ``<model>.pt`` + ``<model>.json`` of every model in ``variant`` with random weights."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    records = untrained_records(variant)
    provenance = (
        f"untrained: random weights (seed {seed}) by `covidet init-checkpoints --variant {variant}` "
        f"(covidet {__version__}), for benchmarks only; NOT a model"
    )
    encoder = build_model(str(C.SLICE_ENCODER.architecture), variant)
    dim = int(getattr(encoder, "feature_dim"))  # noqa: B009  (set by the architecture)
    written = {}
    for spec in (*C.SLICE_MODELS, C.GRU_FUSION):
        extra = {"feature_dim": dim} if spec in (C.SLICE_ENCODER, C.GRU_FUSION) else {}
        if spec is C.SLICE_ENCODER:
            model = encoder
        else:
            model = build_model(str(spec.architecture), variant, **extra)
        meta = checkpoint_meta(
            spec.name, records[spec.name], extra, variant=variant, provenance=provenance, trained=False
        )
        save_checkpoint(model.eval(), meta, out / spec.name)
        written[spec.name] = out / spec.name
    return written


def main_init_checkpoints(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="covidet init-checkpoints",
        description="Write untrained checkpoints (random weights, full metadata) for benchmarks: "
        "`bench.py --checkpoints DIR` measures the papers' full-size networks with them.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--variant", choices=["full", "demo"], default="full")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    written = write_untrained(args.out, variant=args.variant, seed=args.seed)
    size = sum(p.with_suffix(".pt").stat().st_size for p in written.values()) / 2**20
    print(f"{len(written)} untrained {args.variant} checkpoints ({size:.0f} MiB) written to {args.out}")
    return 0
