"""Explaining a slice diagnosis: CAM == Grad-CAM for the classifier, guided Grad-CAM, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from covidet import _contract as C
from covidet import ensemble as P
from covidet.errors import ArtifactError
from covidet.export._render import default_checkpoints
from covidet.models import (
    CheckpointError,
    build_model,
    class_activation_maps,
    fold_weight_standardization,
    grad_cam,
    guided_backprop,
    guided_grad_cam,
    list_models,
    load_checkpoint,
    require_cam,
    serving_module,
    supports_cam,
)
from covidet.models._explain import _GuidedReLUFunction
from covidet.models._resnet import ResNet
from covidet.phantom import make_phantom
from covidet.preprocessing import SliceRecord, as_kind

#: What the issue asks of CAM against autograd Grad-CAM (absolute, in logit units per cell).
CAM_ATOL = 1e-4


@pytest.fixture(scope="module")
def classifier() -> tuple[nn.Module, torch.Tensor]:
    """The shipped demo classifier and classifier inputs built from phantoms of every class, the
    pipeline's way (lung box crop, Jin et al.'s three channels) with their true lung masks."""
    model, meta = load_checkpoint(default_checkpoints() / C.SLICE_CLASSIFIER.name)
    record = as_kind(meta.preprocessing, SliceRecord)
    xs = []
    for i, kind in enumerate(C.CLASS_NAMES):
        ph = make_phantom(kind, n_slices=4, size=128, seed=70 + i)
        sel = P.select_slices(ph.lung_mask, record)
        xs.append(P.classifier_input(ph.hu, ph.lung_mask[sel.indices], sel, record)[:2])
    return model.eval(), torch.from_numpy(np.concatenate(xs))


def _random_tiny() -> ResNet:
    """A small random ResNet with non-trivial BatchNorm statistics (a non-square layer4 grid)."""
    torch.manual_seed(3)
    model = ResNet([1, 1, 1, 1], 4, n_classes=3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    nn.init.normal_(model.fc.weight, std=3.0)  # maps of order one, so that 1e-4 means something
    return model.eval()


def test_cam_is_declared_for_every_architecture() -> None:
    assert [a for a in list_models() if supports_cam(a)] == ["resnet152_cls"]
    require_cam("resnet152_cls")
    for arch in ("resnext50_ws_gn", "lung_unet", "deeplabv3plus_densenet121", "gru_fusion"):
        with pytest.raises(CheckpointError, match=f"{arch} cannot be explained.*resnet152_cls"):
            require_cam(arch)
    assert issubclass(CheckpointError, ArtifactError)
    with pytest.raises(KeyError, match="valid names: deeplabv3plus_densenet121, gru_fusion"):
        supports_cam("resnet50")


def test_serving_returns_class_maps_only_where_cam_holds() -> None:
    shapes = {
        "gru_fusion": (2, 5, 256),
        "lung_unet": (2, 1, 64, 64),
        "deeplabv3plus_densenet121": (2, 1, 64, 64),
    }
    for arch in list_models():
        module = serving_module(fold_weight_standardization(build_model(arch, "demo").eval()), arch)
        with torch.no_grad():
            out = module(torch.rand(*shapes.get(arch, (2, 3, 64, 64))))
        assert isinstance(out, tuple) == supports_cam(arch), arch
        if isinstance(out, tuple):
            probs, maps = out
            assert probs.shape == (2, 4) and maps.shape == (2, 4, 2, 2) and maps.dtype == torch.float32


def test_feature_maps_are_what_features_pool(classifier: tuple[nn.Module, torch.Tensor]) -> None:
    model, x = classifier
    with torch.no_grad():
        maps = model.feature_maps(x)
        assert maps.shape == (len(x), model.feature_dim, 7, 7)
        assert torch.equal(model.features(x), torch.flatten(model.avgpool(maps), 1))


def test_served_probabilities_are_unchanged_and_maps_are_cam(
    classifier: tuple[nn.Module, torch.Tensor],
) -> None:
    model, x = classifier
    module = serving_module(fold_weight_standardization(model), "resnet152_cls")
    with torch.no_grad():
        probs, maps = module(x)
        assert torch.equal(probs, torch.softmax(model(x), dim=1))  # what the head served before
    assert torch.equal(maps, class_activation_maps(model, x))


def test_cam_sums_to_the_logits(classifier: tuple[nn.Module, torch.Tensor]) -> None:
    model, x = classifier
    cam = class_activation_maps(model, x)
    with torch.no_grad():
        logits = model(x)
        torch.testing.assert_close(cam.sum(dim=(2, 3)) + model.fc.bias, logits, atol=1e-5, rtol=0)
    assert cam.shape == (len(x), 4, 7, 7) and bool((cam < 0).any())  # not rectified


def test_cam_equals_autograd_grad_cam_on_the_demo_classifier(
    classifier: tuple[nn.Module, torch.Tensor],
) -> None:
    model, x = classifier
    cam = class_activation_maps(model, x)
    for c in range(4):
        got = grad_cam(model, x, c)
        assert got.shape == (len(x), 7, 7)
        torch.testing.assert_close(got, torch.relu(cam[:, c]), atol=CAM_ATOL, rtol=0)
    with torch.no_grad():
        predicted = model(x).argmax(dim=1)
    want = torch.relu(cam[torch.arange(len(x)), predicted])
    got = grad_cam(model, x, predicted)  # one class per slice
    torch.testing.assert_close(got, want, atol=CAM_ATOL, rtol=0)
    assert float(want.amax()) > 100 * CAM_ATOL  # the maps are not all (near) zero


def test_cam_equals_autograd_grad_cam_on_a_random_tiny_resnet() -> None:
    model = _random_tiny()
    x = torch.rand(3, 3, 72, 40)
    cam = class_activation_maps(model, x)
    assert cam.shape == (3, 3, 3, 2) and float(cam.abs().amax()) > 0.1
    for c in range(3):
        torch.testing.assert_close(grad_cam(model, x, c), torch.relu(cam[:, c]), atol=CAM_ATOL, rtol=0)


def test_explaining_refuses_other_heads_training_mode_and_bad_classes() -> None:
    encoder = build_model("resnext50_ws_gn", "demo").eval()
    with pytest.raises(CheckpointError, match="global average pooling and one linear layer"):
        class_activation_maps(encoder, torch.rand(1, 3, 64, 64))
    model = _random_tiny()
    x = torch.rand(2, 3, 64, 64)
    with pytest.raises(ValueError, match="eval mode"):
        grad_cam(model.train(), x, 0)
    model.eval()
    for bad in (3, -1, torch.tensor([0, 1, 2])):
        with pytest.raises(ValueError, match="class_index"):
            grad_cam(model, x, bad)


def test_guided_relu_passes_positive_gradients_where_the_input_was_positive() -> None:
    x = torch.tensor([-1.0, 2.0, 3.0, 0.0], requires_grad=True)
    y = _GuidedReLUFunction.apply(x)
    (g,) = torch.autograd.grad(y, x, torch.tensor([5.0, -4.0, 6.0, 7.0]))
    assert torch.equal(y.detach(), torch.tensor([0.0, 2.0, 3.0, 0.0]))
    assert torch.equal(g, torch.tensor([0.0, 0.0, 6.0, 0.0]))


def test_guided_backprop_leaves_the_model_untouched(classifier: tuple[nn.Module, torch.Tensor]) -> None:
    model, x = classifier
    x = x[:3]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(x)
    grad = guided_backprop(model, x, 3)
    assert grad.shape == x.shape and bool(grad.abs().amax() > 0)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and all(m.inplace for m in relus)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        assert torch.equal(model(x), before)
    # not the plain gradient: the guided ReLUs drop the negative gradients
    xg = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(model(xg)[:, 3].sum(), xg)
    assert not torch.allclose(plain, grad)


def test_guided_grad_cam_is_non_negative_and_zero_where_grad_cam_is(
    classifier: tuple[nn.Module, torch.Tensor],
) -> None:
    model, x = classifier
    x = x[:4]
    with torch.inference_mode():  # as a torch runtime serves: autograd is switched back on inside
        predicted = model(x).argmax(dim=1)
        ggc = guided_grad_cam(model, x, predicted)
    assert ggc.shape == (4, 224, 224) and ggc.dtype == torch.float32
    assert bool((ggc >= 0).all()) and bool((ggc.flatten(1).amax(dim=1) > 0).all())
    cam = grad_cam(model, x, predicted)
    up = torch.nn.functional.interpolate(cam[:, None], size=(224, 224), mode="bilinear", align_corners=False)[
        :, 0
    ]
    zero = up == 0
    assert bool(zero.any()) and bool((ggc[zero] == 0).all())
