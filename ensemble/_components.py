"""Connected components of a bool volume in torch, on whatever device it lives (the GPU profiles).

`scipy.ndimage.label` runs on the host only: on a 300x512x512 lung grid (the full-size lung
U-Net's output) the lung clean-up's two labellings would cost more host CPU than the rest of a GPU
node's host work. Here the same components come from label propagation with hooking and
pointer jumping (the Shiloach-Vishkin scheme), in whole-tensor operations:

- every foreground voxel starts with its own flat index as its label;
- each round, every voxel takes the smallest label among itself and its neighbours, the voxel its
  label points at (its root) takes that smallest label too (hooking: whole trees merge in one
  step), and labels follow their roots' labels a few steps (pointer jumping);
- a round that changes nothing ends it. A label is always the index of a voxel of the same
  component and only decreases, so it ends with every component labelled by its first voxel in
  raster order, as scipy numbers them (label k = the k-th such first voxel).

Rounds grow with the log of a component's extent, not with the extent itself (tens of rounds for
a pair of lungs, each a few passes over the volume).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["component_labels", "component_sizes"]

#: pointer-jumping steps per round: each halves the depth of the label trees
_JUMPS = 3


def component_labels(mask: Any, dims: Sequence[int] = (0, 1, 2)) -> Any:
    """Label the connected components of bool tensor ``mask``: neighbours are the voxels one step
    along each axis in ``dims`` (``(0, 1, 2)``: 6-connectivity, as scipy's default structure;
    ``(1, 2)``: 4-connectivity within each slice, none across). Returns int64 labels of the shape
    of ``mask``: the flat index of the component's first voxel, ``mask.numel()`` on background."""
    import torch

    n = mask.numel()
    flat_mask = mask.reshape(-1)
    voxels = torch.nonzero(flat_mask).reshape(-1)  # flat indices of the foreground, ascending
    labels = torch.full((n,), n, dtype=torch.int64, device=mask.device)
    labels[voxels] = voxels
    grid = labels.view(mask.shape)
    while True:
        before = labels[voxels]
        low = grid.clone()  # the smallest label among each voxel and its neighbours
        for d in dims:
            size = grid.shape[d]
            if size < 2:
                continue
            head, tail = low.narrow(d, 0, size - 1), low.narrow(d, 1, size - 1)
            head.copy_(torch.minimum(head, grid.narrow(d, 1, size - 1)))
            tail.copy_(torch.minimum(tail, grid.narrow(d, 0, size - 1)))
        smallest = low.reshape(-1)[voxels]  # background neighbours hold n: never the smallest
        labels.scatter_reduce_(0, before, smallest, reduce="amin")  # hooking: roots take it too
        labels[voxels] = torch.minimum(labels[voxels], smallest)
        for _ in range(_JUMPS):
            labels[voxels] = labels[labels[voxels]]
        if torch.equal(labels[voxels], before):
            return grid


def component_sizes(labels: Any, n_background: int) -> tuple[Any, Any]:
    """``(first voxels, sizes)`` of the components of `component_labels` output, in scipy's label
    order (ascending first voxel); ``n_background`` is the background label (the mask's size)."""
    import torch

    fg = labels.reshape(-1)
    fg = fg[fg != n_background]
    firsts, sizes = torch.unique(fg, sorted=True, return_counts=True)
    return firsts, sizes
