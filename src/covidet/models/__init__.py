"""Architectures (registered by name), checkpoints, the Jin et al. key maps, and the class
attention maps that explain a slice diagnosis (CAM, Grad-CAM, guided Grad-CAM)."""

from __future__ import annotations

from covidet.models import _deeplab, _gru, _resnet, _unet  # noqa: F401  (registration)
from covidet.models._checkpoint import (
    CheckpointError,
    CheckpointMeta,
    load_checkpoint,
    load_state_strict,
    save_checkpoint,
)
from covidet.models._explain import (
    class_activation_maps,
    class_maps_from_features,
    grad_cam,
    guided_backprop,
    guided_grad_cam,
    require_cam,
    supports_cam,
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
    "class_activation_maps",
    "class_maps_from_features",
    "fold_weight_standardization",
    "grad_cam",
    "guided_backprop",
    "guided_grad_cam",
    "jin_lung_unet_key_map",
    "jin_resnet152_key_map",
    "list_models",
    "load_checkpoint",
    "load_jin_checkpoint",
    "load_state_strict",
    "register_model",
    "require_cam",
    "save_checkpoint",
    "serving_module",
    "standardize_weight",
    "supports_cam",
]
