"""How a phantom was scanned: field of view, scan range, slice thickness, kernel, noise, streaks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from covidet.phantom._anatomy import Anatomy
from covidet.phantom._geometry import Grid

__all__ = ["Acquisition", "finish", "sample_acquisition", "streak_images"]

THICKNESSES = (0.625, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)


@dataclass(frozen=True)
class Acquisition:
    fov: float  # mm, square
    y0: float  # row coordinate (mm) of the image centre
    thickness: float  # reconstructed slice thickness (mm), a gaussian z profile of this FWHM
    kernel: str  # "smooth" or "sharp"
    blur_mm: float  # in-plane gaussian sigma (point spread + smooth kernel)
    sharpen: tuple[float, float]  # unsharp mask (amount, radius mm); amount 0 for smooth kernels
    noise: float  # nominal image noise (HU, standard deviation after the kernel)
    circle: bool  # pixels outside the reconstruction circle set to -1024


def sample_acquisition(
    rng: np.random.Generator,
    an_size: tuple[float, float, float, float],
    *,
    fov_mm: float | None,
    noise_hu: float | None,
    thickness_mm: float | None,
    kernel: str | None,
) -> Acquisition:
    """``an_size``: body half-width (arms included when down), AP extent with the table, body
    centre y, habitus."""
    u = rng.uniform
    half_w, ap, cy, habitus = an_size
    fov = float(np.clip(max(2 * half_w, ap) * u(1.02, 1.25), 260, 500))
    y0 = cy + u(-10, 30)
    thick = float(rng.choice(THICKNESSES))
    kern = "sharp" if rng.random() < 0.45 else "smooth"
    blur = u(0.5, 1.1)
    sharp = (u(0.5, 1.5), u(0.8, 1.6))
    noise = u(8, 28) * (1 + 0.6 * habitus)
    circle = bool(rng.random() < 0.5)
    kern = kern if kernel is None else kernel
    if kern not in ("smooth", "sharp"):
        raise ValueError(f"kernel must be 'smooth' or 'sharp', got {kern!r}")
    if kern == "sharp":
        blur = blur * 0.4
    else:
        sharp = (0.0, sharp[1])
    return Acquisition(
        fov=float(fov if fov_mm is None else fov_mm),
        y0=float(y0),
        thickness=float(thick if thickness_mm is None else thickness_mm),
        kernel=kern,
        blur_mm=blur,
        sharpen=sharp,
        noise=float(noise if noise_hu is None else noise_hu),
        circle=circle,
    )


def streak_images(an: Anatomy, g: Grid, rng: np.random.Generator) -> list[tuple[np.ndarray, float, float]]:
    """Streaks (thin bright/dark lines) radiating from dense contrast, and a dark band between the
    shoulders when the arms are down: (image, depth from, depth to) each."""
    out = []
    X, Y = g.xs[None, :], g.ys[:, None]
    sources = list(an.dense_points)
    if an.hu["blood_left"] > 200 and rng.random() < 0.5:  # arterial phase: the descending aorta
        t = an.vessels.items[4]
        sources.append((float(t.p0[0]), float(t.p0[1]), 0.25 * an.L, 0.6 * an.L))
    for x0, y0, a0, a1 in sources:
        img = np.zeros((g.ys.size, g.xs.size), np.float32)
        r = np.sqrt((X - x0) ** 2 + (Y - y0) ** 2)
        fade = np.exp(-r / rng.uniform(60, 150)) * (r > 8)
        for _ in range(int(rng.integers(6, 16))):
            th = rng.uniform(0, np.pi)
            d = np.abs((X - x0) * np.float32(np.sin(th)) - (Y - y0) * np.float32(np.cos(th)))
            w = rng.uniform(0.4, 1.2)
            img += np.float32(rng.uniform(40, 200) * rng.choice([-1.0, 1.0])) * np.exp(-((d / w) ** 2))
        out.append(((img * fade).astype(np.float32), a0, a1))
    if an.arms == "down":
        bcy, bax = an.body_at(-20)[:2]
        xs = bax + an.arm[2] + an.arm[0]
        band = np.exp(-(((Y - bcy) / rng.uniform(3, 8)) ** 2)) * (np.abs(X) < xs)
        out.append(((-rng.uniform(50, 150) * band).astype(np.float32), -45.0, 5.0))
    return out


def finish(
    hu: np.ndarray, acq: Acquisition, spacing: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """Noise, slice profile and reconstruction kernel applied to the rendered volume (in place)."""
    dz, dy, _ = spacing
    sz = acq.thickness / 2.355 / dz
    sxy = acq.blur_mm / dy
    att = (1 + 4 * np.pi * sxy**2) ** -0.5 * ((1 + 4 * np.pi * sz**2) ** -0.25 if sz >= 0.3 else 1.0)
    amount, radius = acq.sharpen
    gain = att * (1 + 0.6 * amount)
    scale = np.float32(acq.noise / gain)
    step = max(1, (1 << 22) // max(hu[0].size, 1))  # a few slices at a time: no volume-sized temporary
    for k in range(0, hu.shape[0], step):
        noise = rng.standard_normal(hu[k : k + step].shape, dtype=np.float32)
        noise *= scale
        hu[k : k + step] += noise
    if sz >= 0.3 and hu.shape[0] > 1:
        ndimage.gaussian_filter1d(hu, sz, axis=0, output=hu, mode="nearest")
    if sxy >= 0.2:
        for ax in (1, 2):
            ndimage.gaussian_filter1d(hu, sxy, axis=ax, output=hu, mode="nearest")
    if amount > 0:
        low = ndimage.gaussian_filter1d(hu, radius / dy, axis=1, mode="nearest")
        ndimage.gaussian_filter1d(low, radius / dy, axis=2, output=low, mode="nearest")
        low -= hu
        low *= np.float32(-amount)
        hu += low
    return hu
