"""Checkpoints: a plain `state_dict` (.pt) plus a metadata JSON that travels with the weights."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from covidet._fields import field_mismatch
from covidet.errors import ArtifactError
from covidet.models._registry import build_model, model_kwargs
from covidet.preprocessing import PreprocessingRecord, RecordError, record_from_json, record_to_json

__all__ = [
    "CheckpointError",
    "CheckpointMeta",
    "load_checkpoint",
    "load_state_strict",
    "save_checkpoint",
]

FORMAT = "covidet-checkpoint/1"
StateDict = dict[str, torch.Tensor]


class CheckpointError(ArtifactError):
    """A checkpoint cannot be used: bad metadata, modified weights, or mismatched keys."""


@dataclass
class CheckpointMeta:
    """What a checkpoint is and how its inputs must be prepared."""

    architecture: str
    variant: str
    version: str
    preprocessing: PreprocessingRecord
    class_names: list[str]
    ws_convention: str | None
    provenance: str
    trained: bool
    sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["preprocessing"] = record_to_json(self.preprocessing)
        return {"format": FORMAT, **fields}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckpointMeta:
        data = dict(data)
        if data.pop("format", FORMAT) != FORMAT:
            raise CheckpointError(f"unsupported checkpoint format; expected {FORMAT!r}")
        mismatch = field_mismatch(cls, data)
        if mismatch:
            raise CheckpointError(f"checkpoint metadata: {mismatch}")
        try:
            data["preprocessing"] = record_from_json(data["preprocessing"])
        except RecordError as exc:
            raise CheckpointError(f"checkpoint metadata: {exc}") from exc
        return cls(**data)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(model: nn.Module, meta: CheckpointMeta, stem: str | Path) -> CheckpointMeta:
    """Write ``<stem>.pt`` (state_dict) and ``<stem>.json`` (metadata with the .pt's sha256)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    pt = stem.with_suffix(".pt")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, pt)
    meta = dataclasses.replace(meta, sha256=_sha256(pt))
    stem.with_suffix(".json").write_text(json.dumps(meta.to_json(), indent=2) + "\n")
    return meta


def _listing(keys: set[str]) -> str:
    shown = ", ".join(sorted(keys)[:10])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > 10 else ''})"


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped key is an error."""
    own = model.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    shapes = {k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape)}
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{source} does not match the architecture: missing keys {_listing(missing)}; "
            f"unexpected keys {_listing(unexpected)}; shape mismatches {_listing(shapes)}. "
            "Check the architecture/variant in the metadata or use the right key map."
        )
    model.load_state_dict(dict(state), strict=True)


def load_checkpoint(
    stem: str | Path,
    *,
    map_location: str = "cpu",
    key_map: Callable[[StateDict], StateDict] | None = None,
) -> tuple[nn.Module, CheckpointMeta]:
    """Load ``<stem>.pt`` + ``<stem>.json``: verify the hash, build the model, load strictly."""
    stem = Path(stem)
    if stem.suffix in (".pt", ".json"):
        stem = stem.with_suffix("")
    meta_path, pt = stem.with_suffix(".json"), stem.with_suffix(".pt")
    for p in (meta_path, pt):
        if not p.is_file():
            raise CheckpointError(f"checkpoint file {p} not found (a checkpoint is <stem>.pt + <stem>.json)")
    try:
        meta = CheckpointMeta.from_json(json.loads(meta_path.read_text()))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{meta_path} is not valid JSON: {exc}") from exc
    digest = _sha256(pt)
    if meta.sha256 and digest != meta.sha256:
        raise CheckpointError(
            f"{pt} was modified: its sha256 {digest[:16]}... differs from the metadata's "
            f"{meta.sha256[:16]}...; restore the file or re-create the checkpoint"
        )
    state = torch.load(pt, map_location=map_location, weights_only=True)
    if key_map is not None:
        state = key_map(state)
    try:
        kwargs = dict(meta.extra)
        if meta.ws_convention:
            kwargs["ws_convention"] = meta.ws_convention
        model = build_model(meta.architecture, meta.variant, **model_kwargs(meta.architecture, kwargs))
    except KeyError as exc:
        raise CheckpointError(f"{meta_path}: {exc.args[0]}") from exc
    load_state_strict(model, state, str(pt))
    model.eval()
    return model, meta
