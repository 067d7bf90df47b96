"""Explicit, strict key maps for the Jin et al. checkpoints (plain state_dicts).

Their own loader skipped mismatched keys silently; here every key is accounted for.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from covidet.models._checkpoint import CheckpointError, StateDict, load_state_strict
from covidet.models._registry import build_model

__all__ = ["jin_lung_unet_key_map", "jin_resnet152_key_map", "load_jin_checkpoint"]

#: Jin's classifier keeps a `features` Sequential aliasing the torchvision modules:
#: features.0 = conv1, features.1 = bn1, features.4..7 = layer1..layer4.
_FEATURE_ALIASES = {
    "0": "conv1",
    "1": "bn1",
    "4": "layer1",
    "5": "layer2",
    "6": "layer3",
    "7": "layer4",
}


def _strip_module(state: StateDict) -> StateDict:
    """Drop the ``module.`` prefix that nn.DataParallel adds to every key."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def jin_resnet152_key_map(state: StateDict) -> StateDict:
    """Jin et al. ResNet-152 classifier keys -> ours.

    ``features.N.*`` duplicates must equal their twins (then they are dropped); ``classifier.*``
    becomes ``fc.*``; ``conv1/bn1/layerN`` are kept. Any other key is an error.
    """
    state = _strip_module(state)
    out: StateDict = {}
    aliases: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        m = re.match(r"features\.(\d+)\.(.+)$", key)
        if m:
            if m.group(1) not in _FEATURE_ALIASES:
                unknown.append(key)
                continue
            aliases[f"{_FEATURE_ALIASES[m.group(1)]}.{m.group(2)}"] = value
        elif key.startswith("classifier."):
            out["fc." + key[len("classifier.") :]] = value
        elif re.match(r"(conv1|bn1|layer[1-4])\.", key):
            out[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unexpected keys in the Jin classifier checkpoint: {sorted(unknown)[:10]}")
    for key, value in aliases.items():
        twin = out.get(key)
        if twin is None:
            out[key] = value  # only the alias was saved
        elif twin.shape != value.shape or not torch.equal(twin, value):
            raise CheckpointError(f"duplicate key for {key!r} differs from its twin in features.*")
    return out


def jin_lung_unet_key_map(state: StateDict) -> StateDict:
    """Jin et al. lung U-Net keys -> ours.

    Assumed source layout (their U-Net follows the common PyTorch U-Net): ``inc.conv.*`` /
    ``inc.double_conv.*``, ``down{1-4}.mpconv.1.conv.*`` or ``down{1-4}.maxpool_conv.1.double_conv.*``,
    ``up{1-4}.conv.conv.*`` / ``up{1-4}.conv.double_conv.*``, and the head ``outpred.conv.*``
    (or ``outpred.*``). Unknown keys are an error.
    """
    state = _strip_module(state)
    out: StateDict = {}
    unknown = []
    rules = [
        (r"^inc\.(?:conv|double_conv)\.(.+)$", r"inc.double_conv.\1"),
        (
            r"^down([1-4])\.(?:mpconv|maxpool_conv)\.1\.(?:conv|double_conv)\.(.+)$",
            r"down\1.maxpool_conv.1.double_conv.\2",
        ),
        (r"^up([1-4])\.conv\.(?:conv|double_conv)\.(.+)$", r"up\1.conv.double_conv.\2"),
        (r"^outpred\.(?:conv\.)?(weight|bias)$", r"outpred.\1"),
    ]
    for key, value in state.items():
        for pattern, repl in rules:
            if re.match(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unexpected keys in the Jin lung U-Net checkpoint: {sorted(unknown)[:10]}")
    return out


def load_jin_checkpoint(pt_path: str | Path, architecture: str, variant: str = "full") -> nn.Module:
    """Load a Jin et al. ``state_dict`` (``lung_unet`` or ``resnet152_cls``) through its key map."""
    maps = {"lung_unet": jin_lung_unet_key_map, "resnet152_cls": jin_resnet152_key_map}
    if architecture not in maps:
        raise KeyError(f"no Jin key map for {architecture!r}; valid: {', '.join(maps)}")
    state = torch.load(Path(pt_path), map_location="cpu", weights_only=True)
    model = build_model(architecture, variant)
    load_state_strict(model, maps[architecture](state), str(pt_path))
    return model.eval()
