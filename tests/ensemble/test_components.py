"""Connected components in torch (the GPU profiles' lung clean-up) against scipy.ndimage.label."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from covidet.ensemble._components import component_labels, component_sizes

torch = pytest.importorskip("torch")

_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def _as_scipy(labels: torch.Tensor, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Torch labels renumbered as scipy numbers them (1.. in order of first voxel), and sizes."""
    firsts, sizes = (t.cpu() for t in component_sizes(labels, mask.size))
    lut = np.zeros(mask.size + 1, np.int64)
    lut[firsts.numpy()] = np.arange(1, firsts.numel() + 1)
    return lut[labels.numpy()], sizes.numpy()


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("in_plane", [False, True])
def test_components_equal_scipy(seed: int, in_plane: bool, device: str) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((6 + seed, 21, 17 + seed)) < rng.uniform(0.25, 0.7)
    want, n = ndimage.label(mask, structure=_IN_PLANE if in_plane else None)
    labels = component_labels(torch.from_numpy(mask).to(device), dims=(1, 2) if in_plane else (0, 1, 2))
    assert labels.device.type == device
    got, sizes = _as_scipy(labels.cpu(), mask)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(sizes, np.bincount(want.ravel())[1:])
    assert sizes.size == n


def test_a_long_winding_component_is_one() -> None:
    """A serpentine path thousands of voxels long: propagation alone would take that many rounds."""
    mask = np.zeros((1, 41, 41), bool)
    mask[0, ::2, :] = True  # rows joined at alternating ends
    mask[0, 1::4, -1] = True
    mask[0, 3::4, 0] = True
    labels = component_labels(torch.from_numpy(mask))
    got, sizes = _as_scipy(labels, mask)
    assert sizes.tolist() == [int(mask.sum())]
    np.testing.assert_array_equal(got, mask.astype(np.int64))


def test_empty_and_full_masks() -> None:
    empty = component_labels(torch.zeros((2, 3, 4), dtype=torch.bool))
    assert (empty == 24).all()
    full = component_labels(torch.ones((2, 3, 4), dtype=torch.bool))
    assert (full == 0).all()
