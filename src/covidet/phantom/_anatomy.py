"""The patient of a phantom: body habitus, chest wall, bones, mediastinum, lungs, upper abdomen.

Everything is sampled once per phantom (from its seed) in millimetres, then drawn slice by slice
by `Anatomy.render`. Depth ``a`` is measured from the lung apex (0) down to the posterior lung
base (``L``); the diaphragm domes lie higher (``dome``), so the lowest lung slices show only the
posterior and lateral recesses, beside liver, spleen and stomach (with gas).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from covidet.phantom._geometry import Grid, capsule, ellipse, ellipse_q, mark, paint

AIR = -1000.0


def _smooth(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)


@dataclass
class Tube:
    """A straight piece of a tubular structure, (x, y, a) end points in mm."""

    p0: np.ndarray
    p1: np.ndarray
    r: float
    hu: float
    inner: float = 0.0  # cortex / wall thickness (bones, airways); 0: solid
    inner_hu: float = 0.0


@dataclass
class Tubes:
    """Tubes indexed by their depth range, so a slice looks only at those that can reach it."""

    items: list[Tube] = field(default_factory=list)

    def add(
        self,
        pts: Sequence[tuple[float, float, float]],
        r: float,
        hu: float,
        inner: float = 0.0,
        inner_hu: float = 0.0,
    ) -> None:
        for p, q in pairwise(pts):
            self.items.append(Tube(np.array(p, float), np.array(q, float), r, hu, inner, inner_hu))

    def freeze(self) -> None:
        self.lo = np.array([min(t.p0[2], t.p1[2]) - t.r for t in self.items] or [0.0])
        self.hi = np.array([max(t.p0[2], t.p1[2]) + t.r for t in self.items] or [-1.0])

    def at(self, a: float) -> list[Tube]:
        return [self.items[i] for i in np.flatnonzero((self.lo <= a) & (self.hi >= a))]


@dataclass
class Anatomy:
    """One sampled patient (see module docstring); ``hu`` holds its tissue values."""

    L: float
    dome: tuple[float, float]  # right, left dome depth (mm)
    cage: tuple[float, float, float]  # semi-axes x, y and centre y of the thoracic cavity (widest)
    fat: tuple[float, float, float]  # subcutaneous fat thickness: lateral, anterior, posterior
    muscle: tuple[float, float, float]
    arms: str
    arm: tuple[float, float, float, float]  # arm radius, fat, gap to the body, humerus radius
    breasts: tuple[float, float, float] | None
    spine: tuple[float, float, float, float]  # vertebral body radius, centre y, level period, phase
    heart: tuple[float, float, float, float, float, float, float]  # x, y, a, semi-axes x y a, angle
    organs: dict[str, tuple[float, ...]]
    hu: dict[str, float]
    bones: Tubes
    vessels: Tubes  # mediastinal: carve the lung
    airways: Tubes  # trachea, main bronchi: air, carve the lung
    lung_tubes: Tubes  # intrapulmonary vessels and bronchi: stay in the lung mask
    bowel: Tubes
    emphysema: np.ndarray  # (n, 4): x, y, a, radius
    table: tuple[float, float, float, float, float, float]
    dense_points: list[tuple[float, float, float, float]]  # x, y, a0, a1 of streak sources

    # ---- geometry -------------------------------------------------------------------------
    def cage_scale(self, a: float) -> float:
        return 0.6 + 0.4 * _smooth((a / self.L + 0.05) / 0.6)

    def cage_at(self, a: float) -> tuple[float, float, float]:
        """Centre y and semi-axes x, y of the thoracic cavity at depth ``a`` (back wall fixed)."""
        s = self.cage_scale(a)
        cax, cay, ccy = self.cage
        return ccy + cay * (1 - s), cax * s, cay * s

    def body_at(self, a: float) -> tuple[float, float, float, float, float, float]:
        """Body centre y, semi-axes x, y; inner (fat/muscle boundary) centre y, semi-axes x, y."""
        cy, _, cay = self.cage_at(a)
        neck = min(max((-30 - a) / 60, 0.0), 1.0)
        mx, ma, mp = self.muscle
        fx, fa, fp = self.fat
        post = self.cage[2] + self.cage[1] + mp + fp
        ant = cy - cay - ma - fa - 25 * neck
        bax = (self.cage[0] + mx + fx) * (1 - 0.35 * neck)
        iax = bax - fx
        return (
            (post + ant) / 2,
            bax,
            (post - ant) / 2,
            (post - fp + ant + fa) / 2,
            iax,
            (post - fp - ant - fa) / 2,
        )

    def lung_geometry(self, side: int, t: float) -> tuple[float, float, float, float]:
        """Centre x, y and semi-axes x, y (mm) of lung ``side`` (-1 right, +1 left) at t = a / L."""
        a = t * self.L
        cy, cax, cay = self.cage_at(a)
        r = float(np.sqrt(min(max(t / 0.3, 0.0), 1.0)))
        return side * cax * 0.5, cy + cay * (0.02 + 0.3 * (1 - r)), cax * 0.47 * r, cay * 0.93 * r

    def dome_depth(self, side: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        cax, cay, ccy = self.cage
        d = self.dome[0 if side < 0 else 1]
        q = ((x - side * cax * 0.5) / (cax * 0.47)) ** 2 + ((y - (ccy - 0.2 * cay)) / (cay * 1.1)) ** 2
        return d + (self.L - d) * np.minimum(q, 1.0)

    # ---- drawing --------------------------------------------------------------------------
    def render(self, a: float, g: Grid, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """HU image (float32) and lung mask (bool) of the slice at depth ``a``; ``base`` = air + table."""
        hu = self.hu
        sl = base.copy()
        bcy, bax, bay, icy, iax, iay = self.body_at(a)
        paint(sl, ellipse(g, 0.0, bcy, bax, bay), hu["fat"])
        if self.breasts is not None and 0.15 * self.L < a < 0.8 * self.L:
            bx, by, bz = self.breasts
            ac = 0.45 * self.L
            k = 1 - ((a - ac) / bz) ** 2
            if k > 0:
                for side in (-1, 1):
                    q = ellipse_q(g, side * iax * 0.5, bcy - bay + 5, bx * np.sqrt(k), by * np.sqrt(k))
                    if q is not None:
                        paint(sl, (q[0], q[1] < 1), hu["fat"])
                        paint(sl, (q[0], q[1] < 0.3), hu["gland"])
        self._arms(a, g, sl, bcy, bax)
        paint(sl, ellipse(g, 0.0, icy, iax, iay), hu["muscle"])
        ccy, cax, cay = self.cage_at(a)
        cage_q = ellipse_q(g, 0.0, ccy, cax, cay)
        paint(sl, (cage_q[0], cage_q[1] < 1) if cage_q else None, hu["vfat"] if a > 0 else hu["neck"])
        lung = np.zeros(sl.shape, bool)
        solid = np.zeros(sl.shape, bool)  # mediastinal / abdominal structures that carve the lung
        if cage_q is not None:
            self._lungs_and_abdomen(a, g, sl, lung, cage_q)
        self._spine(a, g, sl, solid)
        self._heart(a, g, sl, solid)
        for t in self.vessels.at(a):
            hit = capsule(g, a, t.p0, t.p1, t.r)
            if hit is not None:
                paint(sl, (hit[0], hit[1] < t.r), t.hu)
                mark(solid, (hit[0], hit[1] < t.r + 1.5))
        for t in self.airways.at(a):
            hit = capsule(g, a, t.p0, t.p1, t.r + t.inner)
            if hit is not None:
                paint(sl, (hit[0], hit[1] < t.r + t.inner), hu["wall"])
                paint(sl, (hit[0], hit[1] < t.r), AIR)
                mark(solid, (hit[0], hit[1] < t.r + t.inner + 1.0))
        for t in self.bones.at(a):
            hit = capsule(g, a, t.p0, t.p1, t.r)
            if hit is not None:
                paint(sl, (hit[0], hit[1] < t.r), t.hu)
                if t.inner:
                    paint(sl, (hit[0], hit[1] < t.r - t.inner), t.inner_hu)
                mark(solid, (hit[0], hit[1] < t.r + 1.0))
        self._sternum_scapulae(a, g, sl, solid)
        lung &= ~solid
        # the lung parenchyma: denser towards the dependent (posterior) side
        rows = (hu["lung"] + hu["lung_grad"] * (g.ys - ccy) / max(cay, 1.0)).astype(np.float32)
        np.copyto(sl, np.broadcast_to(rows[:, None], sl.shape), where=lung)
        em = self.emphysema
        if len(em):
            near = np.flatnonzero(np.abs(em[:, 2] - a) < em[:, 3])
            for x, y, z, r in em[near]:
                rr = float(np.sqrt(r * r - (z - a) ** 2))
                hit = ellipse(g, x, y, rr, rr)
                if hit is not None:
                    paint(sl, (hit[0], hit[1] & lung[hit[0]]), hu["emph"])
        for t in self.lung_tubes.at(a):
            hit = capsule(g, a, t.p0, t.p1, t.r + t.inner)
            if hit is None:
                continue
            inside = lung[hit[0]]
            if t.inner:  # a bronchus: wall and air
                paint(sl, (hit[0], (hit[1] < t.r + t.inner) & inside), hu["wall"])
                paint(sl, (hit[0], (hit[1] < t.r) & inside), AIR)
            else:
                paint(sl, (hit[0], (hit[1] < t.r) & inside), t.hu)
        return sl, lung

    def _arms(self, a: float, g: Grid, sl: np.ndarray, bcy: float, bax: float) -> None:
        r, fat, gap, hr = self.arm
        hu = self.hu
        if self.arms == "down" and a > -45:
            xs = bax + gap + r
            cy = bcy + 0.1 * r
        elif self.arms == "up" and a < -15:
            xs = 0.6 * bax + r + 5
            cy = bcy - 0.3 * r
        else:
            return
        head = a < 5 and self.arms == "down"
        for side in (-1, 1):
            cx = side * (xs + 0.03 * max(a, 0))
            paint(sl, ellipse(g, cx, cy, r, r * 0.9), hu["fat"])
            paint(sl, ellipse(g, cx, cy, r - fat, (r - fat) * 0.9), hu["muscle"])
            bx = cx - side * (0.25 * r if head else 0.0)
            br = hr * (1.8 if head else 1.0)
            paint(sl, ellipse(g, bx, cy, br, br), hu["cortex"])
            paint(sl, ellipse(g, bx, cy, br - 2.5, br - 2.5), hu["marrow"])

    def _lungs_and_abdomen(self, a: float, g: Grid, sl: np.ndarray, lung: np.ndarray, cage_q: tuple) -> None:
        hu = self.hu
        box, q = cage_q
        inside = q < 0.97
        X = g.xs[box[1]][None, :]
        Y = g.ys[box[0]][:, None]
        view_l = lung[box]
        t = a / self.L
        for side in (-1, 1):
            cx, cy, ax, ay = self.lung_geometry(side, t)
            if ax < 1 or ay < 1 or t <= 0:
                continue
            e = ((X - cx) / ax) ** 2 + ((Y - cy) / ay) ** 2 < 1
            if a > self.dome[0 if side < 0 else 1] - 1:
                e &= self.dome_depth(side, X, Y) > a
            view_l |= e & inside
        if a < min(self.dome) + 5:
            return
        below = np.zeros(q.shape, bool)
        for side in (-1, 1):
            half = (X < 0) if side < 0 else (X >= 0)
            below |= half & (self.dome_depth(side, X, Y) + 8 < a)
        below &= inside
        if not below.any():
            return
        view = sl[box]
        view[below] = hu["vfat"]
        o = self.organs

        def organ(name: str, value: float) -> np.ndarray | None:
            x, y, z, sx, sy, sz, ang = o[name]
            k = 1 - ((a - z) / sz) ** 2
            if k <= 0:
                return None
            hit = ellipse(g, x, y, sx * np.sqrt(k), sy * np.sqrt(k), ang)
            if hit is None:
                return None
            m = np.zeros(q.shape, bool)
            m[_rel(hit[0], box)] = hit[1][_clip(hit[0], box)]
            m &= below
            view[m] = value
            return m

        organ("liver", hu["liver"])
        organ("kidney_r", hu["kidney"])
        organ("kidney_l", hu["kidney"])
        organ("spleen", hu["spleen"])
        st = organ("stomach", hu["stomach"])
        if st is not None:
            y, z, sy, sz = o["stomach"][1], o["stomach"][2], o["stomach"][4], o["stomach"][5]
            k = np.sqrt(max(1 - ((a - z) / sz) ** 2, 0.0))
            gas = st & (Y < y + (2 * o["gas"][0] - 1) * sy * k)
            view[gas] = AIR
        for tb in self.bowel.at(a):
            hit = capsule(g, a, tb.p0, tb.p1, tb.r)
            if hit is None:
                continue
            m = np.zeros(q.shape, bool)
            m[_rel(hit[0], box)] = (hit[1] < tb.r)[_clip(hit[0], box)]
            m &= below
            view[m] = tb.hu
            cy = (tb.p0[1] + tb.p1[1]) / 2
            view[m & (Y < cy + tb.inner * tb.r)] = AIR  # gas rises anteriorly (patient supine)

    def _spine(self, a: float, g: Grid, sl: np.ndarray, solid: np.ndarray) -> None:
        hu = self.hu
        r, yv, period, phase = self.spine
        level = (a - phase) % period
        canal_y = yv + 0.85 * r + 9
        if level < 0.2 * period:  # intervertebral disc
            paint(sl, ellipse(g, 0.0, yv, r, 0.85 * r), hu["disc"])
        else:
            q = ellipse_q(g, 0.0, yv, r, 0.85 * r)
            if q is not None:
                paint(sl, (q[0], q[1] < 1), hu["cortex"])
                paint(sl, (q[0], q[1] < (1 - 2.0 / r) ** 2), hu["trabecular"])
            paint(sl, ellipse(g, 0.0, canal_y, 14, 12), hu["cortex"] * 0.8)
            for side in (-1, 1):  # transverse processes
                paint(sl, ellipse(g, side * 22, canal_y, 14, 5, side * 0.3), hu["cortex"] * 0.8)
            paint(sl, ellipse(g, 0.0, canal_y + 20, 4, 14), hu["cortex"] * 0.8)
        paint(sl, ellipse(g, 0.0, canal_y, 9, 8), hu["csf"])
        mark(solid, ellipse(g, 0.0, yv, r + 2, 0.85 * r + 2))

    def _heart(self, a: float, g: Grid, sl: np.ndarray, solid: np.ndarray) -> None:
        x, y, z, sx, sy, sz, ang = self.heart
        k = 1 - ((a - z) / sz) ** 2
        if k <= 0:
            return
        k = float(np.sqrt(k))
        hu = self.hu
        peri = ellipse(g, x, y, sx * k + 5, sy * k + 5, ang)
        paint(sl, peri, hu["vfat"])
        mark(solid, peri)
        paint(sl, ellipse(g, x, y, sx * k, sy * k, ang), hu["myo"])
        c, s = np.cos(ang), np.sin(ang)
        for off, f, key in ((0.3, 0.55, "blood_left"), (-0.45, 0.5, "blood_right")):
            paint(
                sl,
                ellipse(g, x + off * sx * c * k, y + off * sx * s * k, f * sx * k, 0.6 * sy * k, ang),
                hu[key],
            )

    def _sternum_scapulae(self, a: float, g: Grid, sl: np.ndarray, solid: np.ndarray) -> None:
        hu = self.hu
        ccy, cax, cay = self.cage_at(a)
        if -10 < a < 0.68 * self.L:
            w = 24.0 if a < 0.2 * self.L else 15.0
            q = ellipse_q(g, 0.0, ccy - cay - 6, w, 7)
            if q is not None:
                paint(sl, (q[0], q[1] < 1), hu["cortex"])
                paint(sl, (q[0], q[1] < 0.45), hu["trabecular"])
                mark(solid, (q[0], q[1] < 1))
        a0, a1, beta = self.organs["scapula"][:3]
        if a0 < a < a1:
            u = (a - a0) / (a1 - a0)
            half = 45 * (1 - u) ** 0.7 + 6
            th = 7.0 if u < 0.15 else 2.5
            for side in (-1, 1):
                px, py = side * (cax + 16) * np.cos(beta), ccy + (cay + 16) * np.sin(beta)
                ang = np.arctan2((cay + 16) * np.cos(beta), -side * (cax + 16) * np.sin(beta))
                paint(sl, ellipse(g, px, py, half, th, ang), hu["scapula"])


def _rel(box: tuple[slice, slice], outer: tuple[slice, slice]) -> tuple[slice, slice]:
    """``box`` clipped to ``outer``, relative to ``outer``'s origin."""
    r0, r1 = max(box[0].start, outer[0].start), min(box[0].stop, outer[0].stop)
    c0, c1 = max(box[1].start, outer[1].start), min(box[1].stop, outer[1].stop)
    r1, c1 = max(r0, r1), max(c0, c1)
    return slice(r0 - outer[0].start, r1 - outer[0].start), slice(c0 - outer[1].start, c1 - outer[1].start)


def _clip(box: tuple[slice, slice], outer: tuple[slice, slice]) -> tuple[slice, slice]:
    """The part of ``box`` inside ``outer``, relative to ``box``'s origin."""
    r0, r1 = max(box[0].start, outer[0].start), min(box[0].stop, outer[0].stop)
    c0, c1 = max(box[1].start, outer[1].start), min(box[1].stop, outer[1].stop)
    r1, c1 = max(r0, r1), max(c0, c1)
    return slice(r0 - box[0].start, r1 - box[0].start), slice(c0 - box[1].start, c1 - box[1].start)
