"""Synthetic chest-CT phantoms with ground truth (lung mask, lesion mask, class).

Anatomy and lesions are defined in physical millimetres, so the same seed gives the same phantom
at any slice count and in-plane size. Array axes are (slice, row, column) in DICOM patient space
(LPS): slice 0 is the most superior, rows run anterior -> posterior, columns patient right -> left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from covidet import _contract as C
from covidet.phantom._acquisition import finish, sample_acquisition, streak_images
from covidet.phantom._anatomy import AIR, Anatomy
from covidet.phantom._geometry import Grid
from covidet.phantom._patient import sample_anatomy, table_image

__all__ = ["Phantom", "make_phantom", "make_phantom_set"]


@dataclass
class Phantom:
    """A CT volume in HU with its truth. ``spacing`` = (slice, row, column) in mm."""

    hu: np.ndarray
    lung_mask: np.ndarray
    lesion_mask: np.ndarray
    spacing: tuple[float, float, float]
    kind: str
    seed: int
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def label(self) -> int:
        return C.CLASS_NAMES.index(self.kind)

    @property
    def lesion_ratio(self) -> float:
        return float(self.lesion_mask.sum() / max(int(self.lung_mask.sum()), 1))


def _scaled(axes: tuple[float, float, float], scale: float) -> tuple[float, float, float]:
    return (axes[0] * scale, axes[1] * scale, axes[2] * scale)


@dataclass(frozen=True)
class _Blob:
    """An ellipsoidal lesion: centre (a, y, x) mm, semi-axes (a, y, x) mm, target HU."""

    center: tuple[float, float, float]
    axes: tuple[float, float, float]
    hu: float
    core_hu: float | None = None
    bronchograms: bool = False


def _lesion_blobs(kind: str, rng: np.random.Generator, an: Anatomy) -> list[_Blob]:
    """Lesions in the patterns of each class, placed in lung-relative coordinates."""
    blobs: list[_Blob] = []
    # lesion sizes follow the patient's lung size (the values below are for a ~52 mm lung semi-axis)
    scale = float(np.clip(an.cage[0] * 0.47 / 52.0, 0.9, 1.35))

    def place(side: int, t: float, radial: float, angle: float) -> tuple[float, float, float]:
        cx, cy, ax, ay = an.lung_geometry(side, t)
        return t * an.L, cy + radial * ay * np.sin(angle), cx + radial * ax * np.cos(angle)

    if kind == "COVID-19":  # bilateral, peripheral/subpleural GGO, posterior and lower predominance
        n = int(rng.integers(5, 11))
        for i in range(n):
            side = -1 if i % 2 == 0 else 1
            t = float(rng.uniform(0.45, 0.85))
            angle = float(rng.normal(np.pi / 2, 0.9))  # posterior (rows increase posteriorly)
            if side == 1:
                angle = np.pi - angle if rng.random() < 0.5 else angle
            c = place(side, t, float(rng.uniform(0.7, 0.9)), angle)
            axes = (
                float(rng.uniform(20, 36)),
                float(rng.uniform(18, 30)),
                float(rng.uniform(15, 26)),
            )
            core = float(rng.uniform(-250, -100)) if rng.random() < 0.3 else None
            blobs.append(_Blob(c, _scaled(axes, scale), float(rng.uniform(-680, -420)), core))
    elif kind == "CAP":  # unilateral lobar/segmental consolidation with air bronchograms
        side = -1 if rng.random() < 0.5 else 1
        t = float(rng.uniform(0.5, 0.75))
        c = place(side, t, float(rng.uniform(0.25, 0.45)), float(rng.uniform(0, 2 * np.pi)))
        axes = (float(rng.uniform(42, 60)), float(rng.uniform(36, 50)), float(rng.uniform(28, 38)))
        blobs.append(_Blob(c, _scaled(axes, scale), float(rng.uniform(-60, 30)), None, bronchograms=True))
    elif kind == "influenza":  # bilateral central/peribronchovascular patchy GGO, small nodules
        n = int(rng.integers(8, 15))
        for i in range(n):
            side = -1 if i % 2 == 0 else 1
            t = float(rng.uniform(0.35, 0.8))
            c = place(side, t, float(rng.uniform(0.0, 0.4)), float(rng.uniform(0, 2 * np.pi)))
            s = float(rng.uniform(10, 17))
            axes = (s * float(rng.uniform(0.8, 1.3)), s, s * float(rng.uniform(0.8, 1.2)))
            blobs.append(_Blob(c, _scaled(axes, scale), float(rng.uniform(-560, -380)), None))
    elif kind != "non-pneumonia":
        raise ValueError(f"unknown phantom kind {kind!r}; valid: {', '.join(C.CLASS_NAMES)}")
    return blobs


def _draw_lesions(
    sl: np.ndarray, lung: np.ndarray, a: float, g: Grid, blobs: list[_Blob], lung_hu: float
) -> np.ndarray:
    """Paint the lesions crossing slice ``a`` inside the lung; returns the lesion truth mask."""
    les = np.zeros(sl.shape, bool)
    for blob in blobs:
        dzn = (a - blob.center[0]) / blob.axes[0]
        if abs(dzn) >= 1:
            continue
        box = g.box(
            blob.center[1] - blob.axes[1],
            blob.center[1] + blob.axes[1],
            blob.center[2] - blob.axes[2],
            blob.center[2] + blob.axes[2],
        )
        if box is None:
            continue
        yy = (g.ys[box[0]][:, None] - np.float32(blob.center[1])) / np.float32(blob.axes[1])
        xx = (g.xs[box[1]][None, :] - np.float32(blob.center[2])) / np.float32(blob.axes[2])
        d = np.sqrt(np.float32(dzn**2) + yy**2 + xx**2)
        inside = (d < 1.0) & lung[box]
        if not inside.any():
            continue
        view = sl[box]
        wgt = np.clip((1.0 - d) / 0.25, 0.0, 1.0)
        target = np.float32(blob.hu) if blob.core_hu is None else np.where(d < 0.45, blob.core_hu, blob.hu)
        mix = lung_hu + (target - lung_hu) * wgt
        np.copyto(view, np.maximum(view, mix), where=inside)
        if blob.bronchograms:
            for j in range(3):
                ang = j * 2.1 + blob.center[0] * 0.01
                off = (np.cos(ang) * 0.5 * blob.axes[2], np.sin(ang) * 0.5 * blob.axes[1])
                tube = (
                    (g.xs[box[1]][None, :] - blob.center[2] - off[0] * dzn) ** 2
                    + (g.ys[box[0]][:, None] - blob.center[1] - off[1] * dzn) ** 2
                ) < 2.5**2
                view[tube & inside & (d < 0.8)] = AIR + 100
        les[box] |= inside & (d < 0.85)
    return les


def make_phantom(
    kind: str,
    *,
    n_slices: int = 64,
    size: int | Sequence[int] = 256,
    seed: int = 0,
    fov_mm: float | None = None,
    z_extent_mm: float | None = None,
    noise_hu: float | None = None,
    slice_thickness_mm: float | None = None,
    kernel: str | None = None,
    arms: str | None = None,
) -> Phantom:
    """Generate one phantom of class ``kind`` (one of CLASS_NAMES).

    Patient and acquisition are drawn from ``seed``; the keyword arguments left at None are drawn
    too (field of view 260-500 mm, scan length = lungs + 8-60 mm above the apex + 10-80 mm below
    the bases, nominal noise, slice thickness 0.625-5 mm, "smooth"/"sharp" kernel, arms
    "up"/"down"); given, they override the draw without changing anything else.
    """
    if kind not in C.CLASS_NAMES:
        raise ValueError(f"unknown phantom kind {kind!r}; valid: {', '.join(C.CLASS_NAMES)}")
    if arms not in (None, "up", "down"):
        raise ValueError(f"arms must be 'up' or 'down', got {arms!r}")
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if n_slices < 1 or min(h, w) < 16:
        raise ValueError(f"need >= 1 slice and >= 16x16 pixels, got {n_slices} x {h}x{w}")
    acq_rng = np.random.default_rng([seed, 1])
    margins = (float(acq_rng.uniform(8, 60)), float(acq_rng.uniform(10, 80)))
    lung_height = None if z_extent_mm is None else max(z_extent_mm - sum(margins), 60.0)
    an, meta = sample_anatomy(np.random.default_rng([seed, 2]), lung_height)
    if arms is not None:
        an.arms = arms
        meta["arms"] = arms
    blobs = _lesion_blobs(kind, np.random.default_rng([seed, 3]), an)
    bcy, bax, bay = an.body_at(0.5 * an.L)[:3]
    half_w = bax + (an.arm[2] + 2 * an.arm[0] if an.arms == "down" else 0.0)
    ap = 2 * bay + 2 * (an.table[0] + an.table[3] * 2 + an.table[4] - bcy - bay) + 20
    acq = sample_acquisition(
        acq_rng,
        (half_w, ap, bcy, float(meta["habitus"])),  # type: ignore[arg-type]
        fov_mm=fov_mm,
        noise_hu=noise_hu,
        thickness_mm=slice_thickness_mm,
        kernel=kernel,
    )
    top, bottom = -margins[0], an.L + margins[1]
    if z_extent_mm is not None:
        bottom = top + z_extent_mm
    dz, dy, dx = (bottom - top) / n_slices, acq.fov / h, acq.fov / w
    g = Grid.make(h, w, dy, dx, acq.y0)
    base = table_image(an, g)
    streaks = streak_images(an, g, np.random.default_rng([seed, 4]))
    depths = top + (np.arange(n_slices) + 0.5) * dz  # superior first
    hu = np.empty((n_slices, h, w), np.float32)
    lung = np.zeros((n_slices, h, w), np.uint8)
    lesion = np.zeros((n_slices, h, w), np.uint8)
    for k, a in enumerate(depths):
        sl, lung_sl = an.render(float(a), g, base)
        lesion[k] = _draw_lesions(sl, lung_sl, float(a), g, blobs, an.hu["lung"])
        for img, a0, a1 in streaks:
            if a0 <= a <= a1:
                sl += img
        hu[k] = sl
        lung[k] = lung_sl
    finish(hu, acq, (dz, dy, dx), np.random.default_rng([seed, 5]))
    if acq.circle:
        r2 = (g.ys[:, None] - acq.y0) ** 2 + g.xs[None, :] ** 2
        hu[:, r2 > (acq.fov / 2) ** 2] = -1024
    np.clip(hu, -1024, 3071, out=hu)
    meta |= {
        "n_lesions": len(blobs),
        "fov_mm": round(acq.fov, 1),
        "z_extent_mm": round(bottom - top, 1),
        "margins_mm": (round(margins[0], 1), round(margins[1], 1)),
        "slice_thickness_mm": acq.thickness,
        "kernel": acq.kernel,
        "noise_hu": round(acq.noise, 1),
        "streaks": len(streaks),
        "apex_slice": int(np.searchsorted(depths, 0.0)),
    }
    return Phantom(
        hu=np.rint(hu, out=hu).astype(np.int16),
        lung_mask=lung,
        lesion_mask=lesion,
        spacing=(float(dz), float(dy), float(dx)),
        kind=kind,
        seed=seed,
        meta=meta,
    )


def make_phantom_set(n_per_class: int, seed: int = 0, **kwargs: object) -> list[Phantom]:
    """``n_per_class`` phantoms of every class, seeds derived from ``seed``."""
    return [
        make_phantom(kind, seed=seed + 1000 * i + j, **kwargs)  # type: ignore[arg-type]
        for i in range(n_per_class)
        for j, kind in enumerate(C.CLASS_NAMES)
    ]
