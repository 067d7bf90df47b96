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

__all__ = ["Phantom", "make_phantom", "make_phantom_set"]

AIR, FAT, SOFT, BONE, LUNG = -1000.0, -100.0, 40.0, 700.0, -860.0


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


@dataclass(frozen=True)
class _Blob:
    """An ellipsoidal lesion: centre (z, y, x) mm, semi-axes (z, y, x) mm, target HU."""

    center: tuple[float, float, float]
    axes: tuple[float, float, float]
    hu: float
    core_hu: float | None = None
    bronchograms: bool = False


def _lung_radius(zn: np.ndarray | float) -> np.ndarray:
    """Relative lung cross-section radius from apex (zn=0.05) to the diaphragm dome (zn=0.93)."""
    t = np.clip((np.asarray(zn, dtype=np.float64) - 0.05) / 0.88, 0.0, 1.0)
    return np.where((t > 0) & (t < 1), t**0.45 * np.sqrt(np.clip(1 - t**5, 0, 1)), 0.0)


@dataclass(frozen=True)
class _Anatomy:
    body_ax: float
    body_ay: float
    lung_cx: float
    lung_cy: float
    lung_ax: float
    lung_ay: float
    heart_shift: float
    z_extent: float

    def lung_geometry(self, side: int, zn: float) -> tuple[float, float, float, float]:
        """Centre x, y and semi-axes x, y (mm) of lung ``side`` (-1 right, +1 left) at ``zn``."""
        r = float(_lung_radius(zn))
        return side * self.lung_cx, self.lung_cy, self.lung_ax * r, self.lung_ay * r


def _anatomy(rng: np.random.Generator, z_extent: float) -> _Anatomy:
    return _Anatomy(
        body_ax=float(rng.uniform(150, 170)),
        body_ay=float(rng.uniform(105, 120)),
        lung_cx=float(rng.uniform(66, 74)),
        lung_cy=float(rng.uniform(0, 8)),
        lung_ax=float(rng.uniform(48, 56)),
        lung_ay=float(rng.uniform(72, 82)),
        heart_shift=float(rng.uniform(10, 20)),
        z_extent=z_extent,
    )


def _lesion_blobs(kind: str, rng: np.random.Generator, an: _Anatomy) -> list[_Blob]:
    """Lesions in the patterns of each class, placed in lung-relative coordinates."""
    blobs: list[_Blob] = []

    def place(side: int, zn: float, radial: float, angle: float) -> tuple[float, float, float]:
        cx, cy, ax, ay = an.lung_geometry(side, zn)
        z = (0.5 - zn) * an.z_extent
        return z, cy + radial * ay * np.sin(angle), cx + radial * ax * np.cos(angle)

    if kind == "COVID-19":  # bilateral, peripheral/subpleural GGO, posterior and lower predominance
        n = int(rng.integers(5, 11))
        for i in range(n):
            side = -1 if i % 2 == 0 else 1
            zn = float(rng.uniform(0.45, 0.85))
            angle = float(rng.normal(np.pi / 2, 0.9))  # posterior (rows increase posteriorly)
            if side == 1:
                angle = np.pi - angle if rng.random() < 0.5 else angle
            c = place(side, zn, float(rng.uniform(0.7, 0.9)), angle)
            axes = (
                float(rng.uniform(20, 36)),
                float(rng.uniform(18, 30)),
                float(rng.uniform(15, 26)),
            )
            core = float(rng.uniform(-250, -100)) if rng.random() < 0.3 else None
            blobs.append(_Blob(c, axes, float(rng.uniform(-680, -420)), core))
    elif kind == "CAP":  # unilateral lobar/segmental consolidation with air bronchograms
        side = -1 if rng.random() < 0.5 else 1
        zn = float(rng.uniform(0.6, 0.8))
        c = place(side, zn, float(rng.uniform(0.25, 0.45)), float(rng.uniform(0, 2 * np.pi)))
        axes = (float(rng.uniform(42, 60)), float(rng.uniform(36, 50)), float(rng.uniform(28, 38)))
        blobs.append(_Blob(c, axes, float(rng.uniform(-60, 30)), None, bronchograms=True))
    elif kind == "influenza":  # bilateral central/peribronchovascular patchy GGO, small nodules
        n = int(rng.integers(8, 15))
        for i in range(n):
            side = -1 if i % 2 == 0 else 1
            zn = float(rng.uniform(0.35, 0.8))
            c = place(side, zn, float(rng.uniform(0.0, 0.4)), float(rng.uniform(0, 2 * np.pi)))
            s = float(rng.uniform(10, 17))
            axes = (s * float(rng.uniform(0.8, 1.3)), s, s * float(rng.uniform(0.8, 1.2)))
            blobs.append(_Blob(c, axes, float(rng.uniform(-560, -380)), None))
    elif kind != "non-pneumonia":
        raise ValueError(f"unknown phantom kind {kind!r}; valid: {', '.join(C.CLASS_NAMES)}")
    return blobs


def _vessels(rng: np.random.Generator, an: _Anatomy) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Straight vessel segments from each hilum outwards: (start zyx mm, end zyx mm, radius mm)."""
    segs = []
    for side in (-1, 1):
        _, cy, _, _ = an.lung_geometry(side, 0.55)
        hilum = np.array([(0.5 - 0.5) * an.z_extent, cy, side * (an.lung_cx - 0.55 * an.lung_ax)])
        for _ in range(14):
            zn = float(rng.uniform(0.25, 0.85))
            ex, ey, eax, eay = an.lung_geometry(side, zn)
            ang = float(rng.uniform(0, 2 * np.pi))
            rad = float(rng.uniform(0.55, 0.85))
            end = np.array(
                [(0.5 - zn) * an.z_extent, ey + rad * eay * np.sin(ang), ex + rad * eax * np.cos(ang)]
            )
            segs.append((hilum, end, float(rng.uniform(1.5, 3.5))))
    return segs


def make_phantom(
    kind: str,
    *,
    n_slices: int = 64,
    size: int | Sequence[int] = 256,
    seed: int = 0,
    fov_mm: float = 360.0,
    z_extent_mm: float = 300.0,
    noise_hu: float = 18.0,
) -> Phantom:
    """Generate one phantom of class ``kind`` (one of CLASS_NAMES)."""
    if kind not in C.CLASS_NAMES:
        raise ValueError(f"unknown phantom kind {kind!r}; valid: {', '.join(C.CLASS_NAMES)}")
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if n_slices < 1 or min(h, w) < 16:
        raise ValueError(f"need >= 1 slice and >= 16x16 pixels, got {n_slices} x {h}x{w}")
    rng = np.random.default_rng(seed)
    an = _anatomy(rng, z_extent_mm)
    blobs = _lesion_blobs(kind, rng, an)
    vessels = _vessels(rng, an)
    dz, dy, dx = z_extent_mm / n_slices, fov_mm / h, fov_mm / w
    ys = (np.arange(h) - (h - 1) / 2) * dy
    xs = (np.arange(w) - (w - 1) / 2) * dx
    zs = (0.5 - (np.arange(n_slices) + 0.5) / n_slices) * z_extent_mm  # superior first
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    yy32, xx32 = yy.astype(np.float32), xx.astype(np.float32)

    hu = np.empty((n_slices, h, w), np.float32)
    lung = np.zeros((n_slices, h, w), np.uint8)
    lesion = np.zeros((n_slices, h, w), np.uint8)
    body_e = (xx32 / an.body_ax) ** 2 + ((yy32 - 5) / an.body_ay) ** 2
    inner_e = (xx32 / (an.body_ax - 12)) ** 2 + ((yy32 - 5) / (an.body_ay - 12)) ** 2
    spine = (xx32**2 + (yy32 - (an.body_ay - 30)) ** 2) < 18**2
    rib_shell = (inner_e > 0.80) & (inner_e < 0.86)
    noise_rng = np.random.default_rng(seed + 7919)

    for k, z in enumerate(zs):
        zn = 0.5 - z / z_extent_mm
        sl = np.full((h, w), AIR, np.float32)
        sl[body_e < 1] = FAT
        sl[inner_e < 1] = SOFT
        sl[spine] = BONE
        if (z % 25.0) < 9.0:  # ribs every 25 mm
            sl[rib_shell] = BONE * 0.7
        lung_sl = np.zeros((h, w), bool)
        for side in (-1, 1):
            cx, cy, ax, ay = an.lung_geometry(side, zn)
            if ax > 1 and ay > 1:
                lung_sl |= ((xx32 - cx) / ax) ** 2 + ((yy32 - cy) / ay) ** 2 < 1
        if 0.45 < zn < 0.88:  # heart displaces the left lung
            hr = np.sin(np.pi * (zn - 0.45) / 0.43)
            heart = ((xx32 - an.heart_shift) / (55 * hr + 1)) ** 2 + ((yy32 + 25) / (45 * hr + 1)) ** 2 < 1
            lung_sl &= ~heart
            sl[heart] = SOFT + 10
        sl[lung_sl] = LUNG
        if zn < 0.36:  # trachea above the carina (air, not lung)
            sl[(xx32**2 + (yy32 + 15) ** 2) < 9**2] = AIR
        elif zn < 0.46:  # main bronchi
            t = (zn - 0.36) / 0.10
            for side in (-1, 1):
                sl[((xx32 - side * 45 * t) ** 2 + (yy32 + 15) ** 2) < 6**2] = AIR
        # vessels: discs where the segments cross this slice
        for a, b, r in vessels:
            if (z - a[0]) * (z - b[0]) > 0 or a[0] == b[0]:
                continue
            t = (z - a[0]) / (b[0] - a[0])
            py, px = a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2])
            rr = r * (1.0 - 0.6 * t)
            disc = ((yy32 - py) ** 2 + (xx32 - px) ** 2) < rr**2
            sl[disc & lung_sl] = SOFT
        # lesions
        les_sl = np.zeros((h, w), bool)
        for blob in blobs:
            dzn = (z - blob.center[0]) / blob.axes[0]
            if abs(dzn) >= 1:
                continue
            d = np.sqrt(
                dzn**2
                + ((yy32 - blob.center[1]) / blob.axes[1]) ** 2
                + ((xx32 - blob.center[2]) / blob.axes[2]) ** 2
            )
            inside = (d < 1.0) & lung_sl
            if not inside.any():
                continue
            wgt = np.clip((1.0 - d) / 0.25, 0.0, 1.0)
            target = np.full((h, w), blob.hu, np.float32)
            if blob.core_hu is not None:
                target = np.where(d < 0.45, blob.core_hu, target)
            mix = LUNG + (target - LUNG) * wgt
            sl = np.where(inside, np.maximum(sl, mix), sl)
            if blob.bronchograms:
                for j in range(3):
                    ang = j * 2.1 + blob.center[0] * 0.01
                    off = (np.cos(ang) * 0.5 * blob.axes[2], np.sin(ang) * 0.5 * blob.axes[1])
                    tube = (
                        (xx32 - blob.center[2] - off[0] * dzn) ** 2
                        + (yy32 - blob.center[1] - off[1] * dzn) ** 2
                    ) < 2.5**2
                    sl[tube & inside & (d < 0.8)] = AIR + 100
            les_sl |= inside & (d < 0.85)
        hu[k] = sl
        lung[k] = lung_sl
        lesion[k] = les_sl
    hu += noise_rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(noise_hu)
    np.clip(hu, -1024, 3071, out=hu)
    meta: dict[str, object] = {"n_lesions": len(blobs), "fov_mm": fov_mm, "z_extent_mm": z_extent_mm}
    return Phantom(
        hu=np.rint(hu).astype(np.int16),
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
