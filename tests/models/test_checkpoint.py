"""Checkpoints with metadata, hash verification, strict loading and the Jin et al. key maps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from covidet.models import (
    CheckpointError,
    CheckpointMeta,
    build_model,
    jin_lung_unet_key_map,
    jin_resnet152_key_map,
    load_checkpoint,
    load_jin_checkpoint,
    save_checkpoint,
)
from covidet.preprocessing import LesionRecord

LESION_64 = LesionRecord((-1200.0, 300.0), (64, 64))


def _meta(arch: str, **extra: object) -> CheckpointMeta:
    return CheckpointMeta(
        arch,
        "demo",
        "1",
        LesionRecord((-1200.0, 300.0), (64, 64)),
        ["a"],
        None,
        "test",
        False,
        "",
        dict(extra),
    )


def test_round_trip_and_tamper_detection(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("gru_fusion", "demo", feature_dim=16).eval()
    save_checkpoint(model, _meta("gru_fusion", feature_dim=16), tmp_path / "g")
    loaded, meta = load_checkpoint(tmp_path / "g")
    x = torch.rand(1, 5, 16)
    assert torch.equal(loaded(x), model(x)) and meta.extra["feature_dim"] == 16
    assert len(meta.sha256) == 64
    data = bytearray((tmp_path / "g.pt").read_bytes())
    data[-20] ^= 0xFF
    (tmp_path / "g.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="was modified"):
        load_checkpoint(tmp_path / "g")


def test_wrong_architecture_lists_missing_and_unexpected_keys(tmp_path: Path) -> None:
    save_checkpoint(build_model("lung_unet", "demo"), _meta("lung_unet"), tmp_path / "u")
    meta = json.loads((tmp_path / "u.json").read_text())
    meta["architecture"] = "resnet152_cls"
    (tmp_path / "u.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"missing keys \d+ \(.*unexpected keys \d+ \("):
        load_checkpoint(tmp_path / "u")


def test_a_bad_preprocessing_record_is_refused_at_load(tmp_path: Path) -> None:
    save_checkpoint(build_model("lung_unet", "demo"), _meta("lung_unet"), tmp_path / "u")
    meta = json.loads((tmp_path / "u.json").read_text())
    assert meta["preprocessing"] == {
        "kind": "lung_window",
        "hu_window": [-1200.0, 300.0],
        "input_size": [64, 64],
    }
    for bad, match in (
        ({"kind": "lung_window", "hu_window": [300, -1200], "input_size": [64, 64]}, "low < high"),
        ({"kind": "lung_window", "hu_window": [-1200, 300]}, r"missing fields \['input_size'\]"),
        (
            {"kind": "lung_window", "hu_window": [-1200, 300], "input_size": [64, 64], "x": 1},
            "unknown fields",
        ),
        ({"kind": "fancy"}, "valid: lung_unet, jin_slices, lung_window, features"),
    ):
        (tmp_path / "u.json").write_text(json.dumps({**meta, "preprocessing": bad}))
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(tmp_path / "u")


def test_metadata_fields_are_checked(tmp_path: Path) -> None:
    save_checkpoint(build_model("lung_unet", "demo"), _meta("lung_unet"), tmp_path / "u")
    meta = json.loads((tmp_path / "u.json").read_text())
    del meta["provenance"]
    meta["colour"] = "red"
    (tmp_path / "u.json").write_text(json.dumps(meta))
    with pytest.raises(
        CheckpointError, match=r"missing fields \['provenance'\], unknown fields \['colour'\]"
    ):
        load_checkpoint(tmp_path / "u")


def _jin_classifier_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our ResNet state dict in the layout of Jin et al.'s checkpoint."""
    alias = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    state = {}
    for k, v in model.state_dict().items():
        head, rest = k.split(".", 1)
        if head == "fc":
            state["classifier." + rest] = v.clone()
        else:
            state[k] = v.clone()
            state[f"features.{alias[head]}.{rest}"] = v.clone()
    return {"module." + k: v for k, v in state.items()}


def test_jin_classifier_key_map(tmp_path: Path) -> None:
    torch.manual_seed(1)
    ours = build_model("resnet152_cls", "demo").eval()
    state = _jin_classifier_state(ours)
    torch.save(state, tmp_path / "jin.pt")
    loaded = load_jin_checkpoint(tmp_path / "jin.pt", "resnet152_cls", "demo")
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(loaded(x), ours(x))
    bad = dict(state)
    bad["module.features.4.0.conv1.weight"] = bad["module.features.4.0.conv1.weight"] + 1
    with pytest.raises(CheckpointError, match="differs from its twin"):
        jin_resnet152_key_map(bad)
    extra = dict(state, **{"module.extra_head.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="extra_head"):
        jin_resnet152_key_map(extra)
    missing = {k: v for k, v in state.items() if not k.startswith("module.classifier")}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing keys 2 \(fc.bias, fc.weight\)"):
        load_jin_checkpoint(tmp_path / "missing.pt", "resnet152_cls", "demo")


def test_jin_lung_unet_key_map(tmp_path: Path) -> None:
    torch.manual_seed(2)
    ours = build_model("lung_unet", "demo").eval()
    jin = {}
    for k, v in ours.state_dict().items():
        k = k.replace("double_conv", "conv").replace("maxpool_conv", "mpconv")
        jin[k.replace("outpred.", "outpred.conv.")] = v
    torch.save(jin, tmp_path / "unet.pt")
    loaded = load_jin_checkpoint(tmp_path / "unet.pt", "lung_unet", "demo")
    x = torch.rand(1, 1, 64, 64)
    assert torch.equal(loaded(x), ours(x))
    with pytest.raises(CheckpointError, match="final_layer"):
        jin_lung_unet_key_map({**jin, "final_layer.weight": torch.zeros(1)})
