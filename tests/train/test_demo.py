"""Demo training: parts trained alone, epoch counts scaled by an argument."""

from __future__ import annotations

from pathlib import Path

from covidet import _contract as C
from covidet.models import load_checkpoint


def test_train_demo_part_with_scaled_epochs(tmp_path: Path) -> None:
    """`train_all` trains only the parts asked for, with the epoch scale passed in (no globals)."""
    from covidet.train import train_all

    lines: list[str] = []
    written = train_all(
        tmp_path, seed=3, n_per_class=1, n_slices=8, parts=["lung"], log=lines.append, epoch_scale=0.01
    )
    assert set(written) == {C.LUNG_SEG.name}
    _, meta = load_checkpoint(written[C.LUNG_SEG.name])
    assert meta.trained is True and "train-demo --seed 3" in meta.provenance
    assert not any("classifier phantoms" in line for line in lines)  # no data for parts not trained
