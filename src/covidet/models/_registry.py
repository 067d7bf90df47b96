"""Architectures registered by name; one factory builds them (timm/MONAI style)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["VARIANTS", "build_model", "list_models", "model_kwargs", "register_model"]

VARIANTS = ("full", "demo")
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``fn(variant: str, **kwargs) -> nn.Module`` under ``name``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """Names of the registered architectures."""
    return sorted(_REGISTRY)


def _builder(name: str) -> Callable[..., nn.Module]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; valid names: {', '.join(list_models())}") from None


def model_kwargs(name: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``extra`` that the architecture's builder accepts as keyword arguments."""
    params = inspect.signature(_builder(name)).parameters
    return {k: v for k, v in extra.items() if k in params and k != "variant"}


def build_model(name: str, variant: str = "full", **kwargs: Any) -> nn.Module:
    """Build architecture ``name`` in ``variant`` ('full' = the paper's, 'demo' = reduced width)."""
    builder = _builder(name)
    if variant not in VARIANTS:
        raise KeyError(f"unknown variant {variant!r} for {name!r}; valid variants: {VARIANTS}")
    model = builder(variant, **kwargs)
    model.architecture = name  # type: ignore[assignment]
    model.variant = variant  # type: ignore[assignment]
    return model
