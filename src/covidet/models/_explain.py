"""Explaining a slice diagnosis: class activation maps (CAM), Grad-CAM and guided Grad-CAM.

For a network that ends in global average pooling followed by one linear layer (the ResNet-152
slice classifier), the logit of class ``c`` is ``z_c = sum_k w[c,k] * mean_ij A[k,i,j] + b_c``
over the last convolutional feature maps ``A`` (layer4's output). Grad-CAM's channel weight is
the spatial mean of ``dz_c / dA_k``, which here is ``w[c,k] / (h*w)`` everywhere, so

    Grad-CAM_c = ReLU(sum_k alpha_k A_k) = ReLU(CAM_c),  CAM_c = sum_k w[c,k] A_k / (h*w)

(Zhou et al. 2016; Selvaraju et al. 2017, section 3.1). CAM needs no backward pass: the served
classifier computes it in its forward pass (`class_activation_maps`, the second output of
`serving_module` for ``resnet152_cls``). CAM is kept before the ReLU, so that its spatial sum plus
the fc bias is the class logit exactly (to float rounding); Grad-CAM is its ReLU.

The identity holds only for that head, so it is declared per architecture (`supports_cam`): an
encoder whose features feed a GRU across slices, or a segmentation network, has no such map,
and `require_cam` refuses them rather than serve something else under the name.

Guided Grad-CAM (Selvaraju et al.; what Jin et al. show radiologists) multiplies Grad-CAM,
upsampled bilinearly to the input size, with guided backpropagation (Springenberg et al. 2015:
the gradient of the class logit with respect to the input, where every ReLU passes back only
positive gradients and only where its input was positive). Guided backpropagation is a backward
pass through a modified network, so it needs autograd: it is available only where PyTorch runs
(the gpu-torch profile, a CPU torch runtime), never from an ONNX Runtime or TensorRT graph.
Here the guided gradient is reduced over the input channels by the maximum absolute value
(Simonyan et al.'s saliency), which gives one non-negative ``[N, H, W]`` map per slice that is
zero wherever the upsampled Grad-CAM is zero.

Every function takes the classifier itself (a `covidet.models` ResNet built by ``resnet152_cls``)
in eval mode, and never changes it: guided backpropagation runs on a copy whose ReLUs are
replaced (the copy shares the weights).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from covidet.models._checkpoint import CheckpointError

__all__ = [
    "class_activation_maps",
    "class_maps_from_features",
    "grad_cam",
    "guided_backprop",
    "guided_grad_cam",
    "require_cam",
    "supports_cam",
]

#: Per architecture: None where the last layers are global average pooling + one linear layer
#: (CAM == Grad-CAM), else why not. Every registered architecture is listed (a test checks it).
_CAM: dict[str, str | None] = {
    "resnet152_cls": None,
    "resnext50_ws_gn": "it is a slice encoder without a class layer: its pooled features feed the "
    "GRU across slices, so no class logit is linear in one slice's feature maps",
    "gru_fusion": "it is a recurrent network over slice features: it has no convolutional maps",
    "lung_unet": "it is a segmentation network: no global pooling, no class logit per slice",
    "deeplabv3plus_densenet121": "it is a segmentation network: no global pooling, no class logit per slice",
}

#: A class per slice: one index for all, or one per slice ([N] integers).
ClassIndex = int | torch.Tensor


def supports_cam(architecture: str) -> bool:
    """True where class activation maps equal Grad-CAM (global average pooling + one linear layer)."""
    if architecture not in _CAM:
        raise KeyError(f"unknown architecture {architecture!r}; valid names: {', '.join(sorted(_CAM))}")
    return _CAM[architecture] is None


def require_cam(architecture: str) -> None:
    """Raise `CheckpointError` unless ``architecture``'s class maps are its Grad-CAM."""
    if not supports_cam(architecture):
        valid = ", ".join(sorted(a for a, why in _CAM.items() if why is None))
        raise CheckpointError(
            f"{architecture} cannot be explained by class activation maps: {_CAM[architecture]}; "
            f"attention maps are served for {valid} checkpoints only"
        )


def _classifier(model: nn.Module) -> Any:
    """``model`` if it has the CAM structure (feature_maps -> global average pool -> one Linear)."""
    pool, fc = getattr(model, "avgpool", None), getattr(model, "fc", None)
    if (
        not hasattr(model, "feature_maps")
        or not isinstance(pool, nn.AdaptiveAvgPool2d)
        or pool.output_size not in (1, (1, 1))
        or not isinstance(fc, nn.Linear)
    ):
        raise CheckpointError(
            f"{type(model).__name__} does not end in global average pooling and one linear layer, "
            "so its class activation maps are not its Grad-CAM"
        )
    return model


def _evaluating(model: nn.Module) -> Any:
    net = _classifier(model)
    if net.training:  # batch statistics would mix the slices and update the running ones
        raise ValueError("explain a model in eval mode (call model.eval() first)")
    return net


def class_maps_from_features(maps: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """CAM from feature maps [N,K,h,w] and the linear layer's weight [C,K]: [N,C,h,w].

    cam[n,c] = sum_k weight[c,k] * maps[n,k] / (h*w): its spatial sum is the pooled logit
    without the bias. Written as one MatMul so the exported graph has no extra Conv (the int8
    quantizer keeps everything after the last Conv in float).
    """
    n, k, h, w = maps.shape
    cam = torch.matmul(weight, maps.reshape(n, k, h * w)) / (h * w)
    return cam.reshape(n, weight.shape[0], h, w)


def class_activation_maps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class activation maps of every class, [N, n_classes, h, w] (h, w: layer4's grid).

    Not rectified: ``cam.sum((2, 3)) + fc.bias`` is the logits; ``relu(cam[:, c])`` is
    Grad-CAM of class ``c``. Computed without gradients.
    """
    net = _evaluating(model)
    with torch.no_grad():
        return class_maps_from_features(net.feature_maps(x), net.fc.weight)


def _class_logits(logits: torch.Tensor, class_index: ClassIndex) -> torch.Tensor:
    """The logit of each slice's class, summed (slices are independent in eval mode)."""
    n, n_classes = logits.shape
    # a copy: an index made under torch.inference_mode() cannot be saved for the backward pass
    idx = torch.as_tensor(class_index, device=logits.device, dtype=torch.long).reshape(-1).clone()
    if idx.numel() == 1:
        idx = idx.expand(n)
    if idx.numel() != n or bool(((idx < 0) | (idx >= n_classes)).any()):
        raise ValueError(
            f"class_index must be one class in 0..{n_classes - 1} or one per slice ({n}); got {idx.tolist()}"
        )
    return logits.gather(1, idx[:, None]).sum()


def _input_for_grad(x: torch.Tensor) -> torch.Tensor:
    # a fresh tensor outside inference mode, so that autograd records the forward pass even when
    # the caller is in torch.inference_mode() and the weights do not require gradients
    return x.detach().clone().requires_grad_(True)


def grad_cam(model: nn.Module, x: torch.Tensor, class_index: ClassIndex) -> torch.Tensor:
    """Grad-CAM of ``class_index`` by autograd, [N, h, w]: ReLU(sum_k alpha_k A_k) with
    alpha_k the spatial mean of d logit / d A_k and A layer4's output (hooked in the forward)."""
    net = _evaluating(model)
    captured: list[torch.Tensor] = []
    handle = net.layer4.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.inference_mode(False), torch.enable_grad():
            logits = net(_input_for_grad(x))
            (maps,) = captured
            (grad,) = torch.autograd.grad(_class_logits(logits, class_index), maps)
    finally:
        handle.remove()
    alpha = grad.mean(dim=(2, 3), keepdim=True)
    return torch.relu((alpha * maps.detach()).sum(dim=1))


class _GuidedReLUFunction(torch.autograd.Function):
    """ReLU forward; backward passes a gradient only where it is positive and the input was."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clamp(min=0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad.clamp(min=0) * (y > 0).to(grad.dtype)


class _GuidedReLU(nn.Module):
    # never in place: the ResNet calls one ReLU module (inplace=True) several times per block,
    # and an in-place op would overwrite the tensors the guided backward needs
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = _GuidedReLUFunction.apply(x)
        return out


def _guided_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s modules with every nn.ReLU guided; weights and buffers are shared,
    not copied, and ``model`` itself is left as it is (it may be serving meanwhile)."""
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    guided = copy.deepcopy(model, memo=shared)
    for module in list(guided.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, name, _GuidedReLU())
    return guided


def guided_backprop(model: nn.Module, x: torch.Tensor, class_index: ClassIndex) -> torch.Tensor:
    """Guided backpropagation of ``class_index``'s logit to the input, [N, C, H, W] like ``x``."""
    _evaluating(model)
    guided = _guided_copy(model)
    with torch.inference_mode(False), torch.enable_grad():
        xg = _input_for_grad(x)
        (grad,) = torch.autograd.grad(_class_logits(guided(xg), class_index), xg)
    return grad


def guided_grad_cam(model: nn.Module, x: torch.Tensor, class_index: ClassIndex) -> torch.Tensor:
    """Guided Grad-CAM of ``class_index``, [N, H, W] on the input grid, non-negative: the guided
    gradient's largest absolute value over the channels times Grad-CAM upsampled bilinearly."""
    cam = grad_cam(model, x, class_index)
    up = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return guided_backprop(model, x, class_index).abs().amax(dim=1) * up
