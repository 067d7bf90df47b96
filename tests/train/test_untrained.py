"""Untrained checkpoints for benchmarks: complete metadata that says what they are."""

from __future__ import annotations

from pathlib import Path

from covidet import _contract as C
from covidet.models import load_checkpoint
from covidet.train import write_untrained
from covidet.train._untrained import untrained_records


def test_untrained_checkpoints_load_and_say_so(tmp_path: Path) -> None:
    written = write_untrained(tmp_path, variant="demo", seed=1)
    assert set(written) == {s.name for s in (*C.SLICE_MODELS, C.GRU_FUSION)}
    for stem in written.values():
        _, meta = load_checkpoint(stem)  # sha256 checked, keys strict
        assert meta.variant == "demo" and meta.trained is False
        assert "untrained" in meta.provenance and "NOT a model" in meta.provenance
    _, gru = load_checkpoint(written[C.GRU_FUSION.name])
    _, enc = load_checkpoint(written[C.SLICE_ENCODER.name])
    assert gru.extra["feature_dim"] == enc.extra["feature_dim"]
    again = write_untrained(tmp_path / "again", variant="demo", seed=1)  # seeded: same weights
    for name in written:
        assert written[name].with_suffix(".pt").read_bytes() == again[name].with_suffix(".pt").read_bytes()


def test_full_records_use_the_papers_input_sizes() -> None:
    full, demo = untrained_records("full"), untrained_records("demo")
    assert full[C.LUNG_SEG.name].input_size == (512, 512)  # type: ignore[union-attr]
    assert demo[C.LUNG_SEG.name].input_size == (128, 128)  # type: ignore[union-attr]
    assert full[C.SLICE_CLASSIFIER.name] == demo[C.SLICE_CLASSIFIER.name]
