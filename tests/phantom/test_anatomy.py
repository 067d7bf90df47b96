"""Phantom anatomy and acquisition: what a real chest CT has (fat, bone, airways, bowel gas, table,
arms, varied scanning), and where each class puts its lesions."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from covidet import _contract as C
from covidet.phantom import Phantom, make_phantom


def _slice_at(ph: Phantom, depth_mm: float) -> int:
    """Index of the slice ``depth_mm`` below the lung apex."""
    k = (float(ph.meta["margins_mm"][0]) + depth_mm) / ph.spacing[0]  # type: ignore[index]
    return int(np.clip(k, 0, ph.hu.shape[0] - 1))


def _body(sl: np.ndarray) -> np.ndarray:
    """The patient in one slice: the largest tissue component above the table, holes filled."""
    lab, n = ndimage.label(ndimage.median_filter(sl, 3) > -400)
    sizes = ndimage.sum(np.ones_like(lab), lab, range(1, n + 1))
    return ndimage.binary_fill_holes(lab == 1 + int(np.argmax(sizes)))


@pytest.mark.parametrize("seed", range(6))
def test_subcutaneous_fat_in_the_body_wall(seed: int) -> None:
    ph = make_phantom("non-pneumonia", n_slices=48, size=256, seed=seed)
    sl = ph.hu[_slice_at(ph, 0.5 * float(ph.meta["lung_height_mm"]))].astype(np.float32)  # type: ignore[arg-type]
    body = _body(sl)
    band = body & ~ndimage.binary_erosion(body, iterations=max(2, round(15 / ph.spacing[1])))
    anterior = band.copy()
    anterior[int(np.flatnonzero(body.any(axis=1)).mean()) :] = False  # front half: not the table
    vals = ndimage.uniform_filter(sl, 3)[anterior]
    assert np.mean((vals > -120) & (vals < -80)) > 0.15, np.percentile(vals, [10, 50, 90])


def test_bone_cortical_and_trabecular() -> None:
    for seed in range(4):
        ph = make_phantom("CAP", n_slices=48, size=256, seed=seed)
        k = _slice_at(ph, 0.5 * float(ph.meta["lung_height_mm"]))  # type: ignore[arg-type]
        sl = ph.hu[k]
        assert (ph.hu > 300).mean() > 0.002
        assert ph.hu.max() > 900  # cortical bone (or dense contrast)
        # the vertebral body: posterior, on the midline, bone over +200
        c = sl.shape[1] // 2
        spine = sl[:, c - 3 : c + 3]
        assert (spine > 200).sum() > 4


@pytest.mark.parametrize("seed", range(5))
def test_bowel_gas_below_the_lungs_outside_the_lung_mask(seed: int) -> None:
    ph = make_phantom("COVID-19", n_slices=64, size=192, seed=seed)
    k0 = _slice_at(ph, min(ph.meta["dome_mm"]))  # type: ignore[type-var, arg-type]
    lung_centre = np.flatnonzero(ph.lung_mask.any(axis=(1, 2))).mean()
    gas_found = 0
    for k in range(k0, ph.hu.shape[0]):
        sl = ph.hu[k]
        body = ndimage.binary_erosion(_body(sl), iterations=2)
        air = body & (ndimage.median_filter(sl, 3) < -900)
        lab, n = ndimage.label(air)
        for i in range(1, n + 1):
            comp = lab == i
            if comp.sum() >= 15 and not (comp & (ph.lung_mask[k] > 0)).any():
                gas_found += int(comp.sum())
                assert k > lung_centre
    assert gas_found > 100
    # the lungs' own truth never contains the gas: it stays aerated lung parenchyma
    assert np.median(ph.hu[ph.lung_mask > 0]) < -600


@pytest.mark.parametrize("seed", range(4))
def test_trachea_is_air_outside_the_lung_mask(seed: int) -> None:
    ph = make_phantom("influenza", n_slices=64, size=192, seed=seed)
    k_car = _slice_at(ph, float(ph.meta["carina_mm"]) - 8)  # type: ignore[arg-type]
    c = (ph.hu.shape[2] - 1) / 2
    found = 0
    for k in range(0, k_car):
        sl = ph.hu[k]
        air = ndimage.binary_erosion(_body(sl), iterations=3) & (ndimage.median_filter(sl, 3) < -850)
        lab, n = ndimage.label(air)
        for i in range(1, n + 1):
            comp = lab == i
            centre_mm = (np.nonzero(comp)[1].mean() - c) * ph.spacing[2]
            # an air tube on the midline that the lung truth leaves out: the trachea
            if comp.sum() >= 3 and abs(centre_mm) < 20 and not (comp & (ph.lung_mask[k] > 0)).any():
                found += 1
                break
    assert found >= 0.8 * k_car


@pytest.mark.parametrize("kind", C.CLASS_NAMES)
def test_lesions_inside_the_lung_mask(kind: str) -> None:
    for seed in range(3):
        ph = make_phantom(kind, n_slices=48, size=160, seed=seed)
        assert not (ph.lesion_mask & (1 - ph.lung_mask)).any()
        assert (ph.lesion_mask.any()) == (kind != "non-pneumonia")


def test_same_seed_same_phantom_other_seed_other() -> None:
    a = make_phantom("COVID-19", n_slices=24, size=96, seed=21)
    b = make_phantom("COVID-19", n_slices=24, size=96, seed=21)
    c = make_phantom("COVID-19", n_slices=24, size=96, seed=22)
    for x, y in ((a.hu, b.hu), (a.lung_mask, b.lung_mask), (a.lesion_mask, b.lesion_mask)):
        np.testing.assert_array_equal(x, y)
    assert a.meta == b.meta and a.spacing == b.spacing
    assert a.spacing != c.spacing and not np.array_equal(a.lung_mask, c.lung_mask)


def test_acquisition_and_body_vary_across_seeds() -> None:
    metas = [make_phantom("CAP", n_slices=8, size=64, seed=s) for s in range(16)]
    spacing = {round(p.spacing[1], 3) for p in metas}
    assert len(spacing) >= 12
    assert all(0.5 <= p.meta["fov_mm"] / 512 <= 1.0 for p in metas)  # type: ignore[operator]
    for key, least in (("arms", 2), ("kernel", 2), ("slice_thickness_mm", 3), ("contrast", 2)):
        assert len({p.meta[key] for p in metas}) >= least, key
    habitus = [float(p.meta["habitus"]) for p in metas]  # type: ignore[arg-type]
    assert max(habitus) - min(habitus) > 0.4


def test_arms_down_lie_beside_the_chest() -> None:
    def width_mm(ph: Phantom) -> float:
        sl = ph.hu[_slice_at(ph, 0.5 * float(ph.meta["lung_height_mm"]))]  # type: ignore[arg-type]
        front = sl[: sl.shape[0] // 2] > -400  # above the image centre: no table
        cols = np.flatnonzero(front.any(axis=0))
        return float((cols.max() - cols.min()) * ph.spacing[2])

    for seed in (0, 1):
        kw = {"n_slices": 32, "size": 192, "seed": seed, "fov_mm": 500.0}
        assert (
            width_mm(make_phantom("CAP", arms="down", **kw))
            > width_mm(make_phantom("CAP", arms="up", **kw)) + 60
        )


def test_covid_lesions_lower_and_posterior() -> None:
    lower = posterior = total = 0
    for seed in range(6):
        ph = make_phantom("COVID-19", n_slices=64, size=128, seed=seed)
        ks = np.flatnonzero(ph.lung_mask.any(axis=(1, 2)))
        mid_k = (ks.min() + ks.max()) / 2
        for k in np.flatnonzero(ph.lesion_mask.any(axis=(1, 2))):
            rows = np.nonzero(ph.lesion_mask[k])[0]
            lung_rows = np.nonzero(ph.lung_mask[k])[0]
            total += rows.size
            lower += rows.size if k > mid_k else 0
            posterior += int((rows > lung_rows.mean()).sum())
    assert lower / total > 0.6
    assert posterior / total > 0.6


def test_generation_speed() -> None:
    make_phantom("COVID-19", n_slices=8, size=64, seed=0)  # imports, caches
    t0 = time.perf_counter()
    make_phantom("COVID-19", n_slices=48, size=256, seed=1)
    assert time.perf_counter() - t0 < 3.0
