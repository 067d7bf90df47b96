"""``keyimage_<k>.png`` (the top-K slices) and ``coronal.png``: lung window, lung and lesion overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from covidet.client._outputs_common import DISCLAIMER
from covidet.client._result import Diagnosis
from covidet.client._volume import Volume

__all__ = ["write_pngs"]

#: Display window for key images (lung window).
LUNG_WINDOW = (-600.0, 1500.0)  # centre, width


def _window(hu: np.ndarray) -> np.ndarray:
    centre, width = LUNG_WINDOW
    return np.clip((hu.astype(np.float32) - (centre - width / 2)) / width, 0.0, 1.0)


def _red(mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    rgba = np.zeros((*mask.shape, 4), dtype=np.float32)
    rgba[mask] = (1.0, 0.0, 0.0, alpha)
    return rgba


def _outline(ax: Any, mask: np.ndarray | None, color: str, width: float = 0.9) -> None:
    if mask is not None and mask.any() and min(mask.shape) > 1:
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=[color], linewidths=width)


def _figure(image_hw: tuple[int, int], aspect: float) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    h, w = image_hw
    height_in = 6.0
    width_in = float(np.clip(height_in * w / max(h * aspect, 1e-6), 3.0, 12.0))
    fig = Figure(figsize=(width_in, height_in + 0.6), dpi=100)
    ax = fig.add_axes((0.0, 0.0, 1.0, height_in / (height_in + 0.6)))
    ax.set_axis_off()
    return fig, ax


#: The standard axial orientation, as DICOM ImageOrientationPatient (LPS): along a row towards the
#: patient's left, down a column towards posterior; image left is then the patient's right.
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
#: (x, y, z) RAS <-> LPS
_RAS_LPS = np.array([-1.0, -1.0, 1.0])


def _orientation(volume: Volume) -> np.ndarray | None:
    """The volume's row and column directions in patient LPS (as ImageOrientationPatient: six
    direction cosines), or None where its reader recorded none.

    The DICOM reader stores ImageOrientationPatient itself; the NIfTI reader stores "RAS canonical"
    and the canonical image's affine, whose data axes (i, j, k) run opposite to the volume's
    (column, row, slice): so a row of the volume runs along -i, a column along -j.
    """
    orient = volume.meta.get("orientation")
    if isinstance(orient, str):
        affine = volume.meta.get("affine")
        if orient != "RAS canonical" or affine is None:
            return None
        a = np.asarray(affine, dtype=np.float64)
        if a.shape != (4, 4):
            return None
        axes = -a[:3, :2].T * _RAS_LPS  # [along a row (-i), down a column (-j)] in LPS
        norms = np.linalg.norm(axes, axis=1, keepdims=True)
        if not (np.isfinite(axes).all() and (norms > 0).all()):
            return None
        return (axes / norms).reshape(6)
    try:
        cosines = np.asarray(orient, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):  # None, or not six numbers
        return None
    return cosines if cosines.shape == (6,) and np.isfinite(cosines).all() else None


def _axial_ok(volume: Volume) -> bool:
    orient = _orientation(volume)
    return orient is not None and np.allclose(orient, AXIAL, atol=1e-3)


def write_pngs(
    diagnosis: Diagnosis,
    volume: Volume,
    lung: np.ndarray | None,
    lesion: np.ndarray | None,
    out_dir: Path,
) -> dict[str, Path]:
    dz, dy, dx = volume.spacing
    hu = volume.hu
    s, h, w = hu.shape
    label_lr = _axial_ok(volume)  # image left = patient right for the standard axial orientation
    headline = (
        f"{diagnosis.predicted_class} {diagnosis.class_probs.get(diagnosis.predicted_class, 0):.2f}"
        f" | P(COVID-19) stepwise {diagnosis.p_covid_stepwise:.2f}"
        f" | lesion/lung {diagnosis.lesion_ratio:.3f}"
    )
    written: dict[str, Path] = {}
    topk = [int(i) for i in diagnosis.topk_slices if 0 <= int(i) < s]
    for k, idx in enumerate(topk, start=1):
        fig, ax = _figure((h, w), dy / dx)
        ax.imshow(_window(hu[idx]), cmap="gray", vmin=0, vmax=1, aspect=dy / dx, interpolation="nearest")
        if lesion is not None:
            ax.imshow(_red(lesion[idx]), aspect=dy / dx, interpolation="nearest")
        _outline(ax, lung[idx] if lung is not None else None, "#00e5ff")
        if label_lr:
            ax.text(0.01, 0.97, "R", color="yellow", transform=ax.transAxes, va="top")
            ax.text(0.98, 0.97, "L", color="yellow", transform=ax.transAxes, va="top")
        fig.suptitle(f"key image {k}/{len(topk)}: slice {idx} of {s}\n{headline}", fontsize=9, y=0.995)
        fig.text(0.01, 0.005, DISCLAIMER, fontsize=6, color="gray")
        path = out_dir / f"keyimage_{k}.png"
        fig.savefig(path)
        written[path.stem] = path

    # coronal reformat through the lung's centre (row of the lung centroid)
    if lung is not None and lung.any():
        counts = lung.sum(axis=(0, 2), dtype=np.int64)
        row = round(float((counts * np.arange(h)).sum() / counts.sum()))
    else:
        row = h // 2
    top = "superior" if label_lr else "slice 0"
    fig, ax = _figure((s, w), dz / dx)
    ax.imshow(_window(hu[:, row, :]), cmap="gray", vmin=0, vmax=1, aspect=dz / dx, interpolation="nearest")
    _outline(ax, lung[:, row, :] if lung is not None else None, "#00e5ff")
    _outline(ax, lesion[:, row, :] if lesion is not None else None, "red", 1.1)
    for k, idx in enumerate(topk, start=1):
        ax.axhline(idx, xmin=0.0, xmax=0.04, color="yellow", linewidth=1.2)
        ax.text(0.045 * w, idx, str(k), color="yellow", fontsize=7, va="center")
    if label_lr:
        ax.text(0.01, 0.97, "R", color="yellow", transform=ax.transAxes, va="top")
        ax.text(0.98, 0.97, "L", color="yellow", transform=ax.transAxes, va="top")
    fig.suptitle(f"coronal through row {row} of {h} ({top} at top)\n{headline}", fontsize=9, y=0.995)
    fig.text(0.01, 0.005, DISCLAIMER + "; ticks: key slices", fontsize=6, color="gray")
    path = out_dir / "coronal.png"
    fig.savefig(path)
    written[path.stem] = path
    return written
