"""Architectures (registered by name), checkpoints and the Jin et al. key maps."""

from __future__ import annotations

from covidet.models import _deeplab, _gru, _resnet, _unet  # noqa: F401  (registration)
from covidet.models._checkpoint import (
    CheckpointError,
    CheckpointMeta,
    load_checkpoint,
    load_state_strict,
    save_checkpoint,
)
from covidet.models._keymap import jin_lung_unet_key_map, jin_resnet152_key_map, load_jin_checkpoint
from covidet.models._layers import WS_CONVENTIONS, WSConv2d, standardize_weight
from covidet.models._registry import VARIANTS, build_model, list_models, register_model
from covidet.models._serving import fold_weight_standardization, serving_module

__all__ = [
    "VARIANTS",
    "WS_CONVENTIONS",
    "CheckpointError",
    "CheckpointMeta",
    "WSConv2d",
    "build_model",
    "fold_weight_standardization",
    "jin_lung_unet_key_map",
    "jin_resnet152_key_map",
    "list_models",
    "load_checkpoint",
    "load_jin_checkpoint",
    "load_state_strict",
    "register_model",
    "save_checkpoint",
    "serving_module",
    "standardize_weight",
]
