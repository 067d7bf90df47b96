"""Drawing primitives on one axial slice, each evaluated only inside its bounding box.

Coordinates are millimetres: ``x`` = columns (patient right -> left), ``y`` = rows (anterior ->
posterior), ``a`` = depth below the lung apex (superior -> inferior). A primitive returns the
bounding box (row slice, column slice) and a boolean mask or a distance array over that box, or
None when it misses the slice; ``paint`` writes a value through such a box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[slice, slice]


@dataclass(frozen=True)
class Grid:
    """Pixel-centre coordinates (mm) of one slice: ``ys`` rows, ``xs`` columns."""

    ys: np.ndarray
    xs: np.ndarray

    @classmethod
    def make(cls, h: int, w: int, dy: float, dx: float, y0: float = 0.0) -> Grid:
        ys = ((np.arange(h) - (h - 1) / 2) * dy + y0).astype(np.float32)
        xs = ((np.arange(w) - (w - 1) / 2) * dx).astype(np.float32)
        return cls(ys, xs)

    def box(self, y0: float, y1: float, x0: float, x1: float) -> Box | None:
        r = slice(int(np.searchsorted(self.ys, y0)), int(np.searchsorted(self.ys, y1, "right")))
        c = slice(int(np.searchsorted(self.xs, x0)), int(np.searchsorted(self.xs, x1, "right")))
        if r.start >= r.stop or c.start >= c.stop:
            return None
        return r, c


def ellipse_q(
    g: Grid, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0
) -> tuple[Box, np.ndarray] | None:
    """Squared normalised radius of an (optionally rotated) ellipse over its box (< 1 inside)."""
    if ax <= 0 or ay <= 0:
        return None
    if angle:
        c, s = float(np.cos(angle)), float(np.sin(angle))
        rx = float(np.hypot(ax * c, ay * s))
        ry = float(np.hypot(ax * s, ay * c))
    else:
        rx, ry = ax, ay
    box = g.box(cy - ry, cy + ry, cx - rx, cx + rx)
    if box is None:
        return None
    X = g.xs[box[1]][None, :] - np.float32(cx)
    Y = g.ys[box[0]][:, None] - np.float32(cy)
    if angle:
        u = X * np.float32(c) + Y * np.float32(s)
        v = Y * np.float32(c) - X * np.float32(s)
    else:
        u, v = X, Y
    return box, (u * np.float32(1 / ax)) ** 2 + (v * np.float32(1 / ay)) ** 2


def ellipse(
    g: Grid, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0
) -> tuple[Box, np.ndarray] | None:
    """Boolean mask of an ellipse over its box."""
    r = ellipse_q(g, cx, cy, ax, ay, angle)
    return None if r is None else (r[0], r[1] < 1)


def capsule(
    g: Grid, a: float, p0: np.ndarray, p1: np.ndarray, radius: float
) -> tuple[Box, np.ndarray] | None:
    """Distance (mm) to the 3D segment p0-p1 ((x, y, a) each) over the box where it meets slice ``a``."""
    v = p1 - p0
    t0, t1 = 0.0, 1.0
    if abs(v[2]) > 1e-6:
        ta, tb = sorted(((a - radius - p0[2]) / v[2], (a + radius - p0[2]) / v[2]))
        t0, t1 = max(t0, ta), min(t1, tb)
        if t0 > t1:
            return None
    elif abs(a - p0[2]) > radius:
        return None
    q0, q1 = p0 + t0 * v, p0 + t1 * v
    box = g.box(
        min(q0[1], q1[1]) - radius,
        max(q0[1], q1[1]) + radius,
        min(q0[0], q1[0]) - radius,
        max(q0[0], q1[0]) + radius,
    )
    if box is None:
        return None
    X = g.xs[box[1]][None, :] - np.float32(p0[0])
    Y = g.ys[box[0]][:, None] - np.float32(p0[1])
    Z = np.float32(a - p0[2])
    vv = float(v @ v) or 1.0
    t = np.clip((X * np.float32(v[0]) + Y * np.float32(v[1]) + Z * np.float32(v[2])) / np.float32(vv), 0, 1)
    d2 = (X - t * np.float32(v[0])) ** 2 + (Y - t * np.float32(v[1])) ** 2 + (Z - t * np.float32(v[2])) ** 2
    return box, np.sqrt(d2)


def paint(img: np.ndarray, hit: tuple[Box, np.ndarray] | None, value: float | np.ndarray) -> None:
    """Write ``value`` where the boolean ``hit`` mask is set."""
    if hit is not None:
        box, m = hit
        view = img[box]
        view[m] = value if np.isscalar(value) else value[m]  # type: ignore[index]


def mark(mask: np.ndarray, hit: tuple[Box, np.ndarray] | None, on: bool = True) -> None:
    """Set (or clear) a boolean slice mask where ``hit`` is set."""
    if hit is not None:
        box, m = hit
        if on:
            mask[box] |= m
        else:
            mask[box] &= ~m
