"""Sample one patient (`Anatomy`) from a random generator: sizes, positions and tissue values."""

from __future__ import annotations

import numpy as np

from covidet.phantom._anatomy import Anatomy, Tubes
from covidet.phantom._geometry import Grid

__all__ = ["sample_anatomy", "table_image"]


def _tissues(rng: np.random.Generator) -> tuple[str, dict[str, float]]:
    u = rng.uniform
    phase = str(rng.choice(["none", "venous", "arterial"], p=[0.4, 0.35, 0.25]))
    hu = {
        "fat": u(-118, -85),
        "vfat": u(-112, -80),
        "muscle": u(40, 60),
        "gland": u(10, 40),
        "wall": u(20, 60),
        "disc": u(70, 100),
        "csf": u(5, 25),
        "cortex": u(1000, 1500),
        "trabecular": u(200, 400),
        "marrow": u(0, 120),
        "scapula": u(700, 1100),
        "cartilage": u(80, 200),
        "stomach": u(5, 40),
        "stool": u(-80, 40),
        "lung": u(-880, -820),
        "lung_grad": u(15, 70),
        "emph": u(-995, -955),
    }
    hu["neck"] = hu["muscle"] - 10
    if phase == "none":
        blood = u(35, 50)
        hu |= {"blood_left": blood, "blood_right": blood, "svc": blood, "myo": u(38, 50)}
        hu |= {"liver": u(50, 65), "spleen": u(40, 50), "kidney": u(25, 35)}
    else:
        left = u(130, 190) if phase == "venous" else u(220, 380)
        right = u(130, 190) if phase == "venous" else u(150, 300)
        svc = u(700, 1500) if rng.random() < 0.4 else u(200, 400)
        hu |= {"blood_left": left, "blood_right": right, "svc": svc, "myo": u(80, 110)}
        hu |= {"liver": u(100, 130) if phase == "venous" else u(70, 90), "spleen": u(100, 140)}
        hu["kidney"] = u(130, 200)
    return phase, hu


def sample_anatomy(
    rng: np.random.Generator, lung_height: float | None = None
) -> tuple[Anatomy, dict[str, object]]:
    """One patient, and a summary of it for ``Phantom.meta``."""
    u = rng.uniform
    habitus = float(rng.beta(2.0, 2.5))  # 0 slim .. 1 obese
    cax = u(118, 148) * (1 + 0.05 * habitus)
    cay = u(78, 106)
    L = u(210, 275) if lung_height is None else float(lung_height)
    fat = (
        4 + 55 * habitus**1.3 * u(0.7, 1.3),
        4 + 45 * habitus * u(0.7, 1.3),
        3 + 25 * habitus * u(0.7, 1.3),
    )
    muscle = (u(10, 22), u(10, 22), u(28, 45))
    d_r = L * u(0.62, 0.72)
    dome = (d_r, d_r + u(8, 22))
    arms = "down" if rng.random() < 0.35 else "up"
    arm = (u(38, 55) + 15 * habitus, u(4, 10) + 20 * habitus, u(-6, 25), u(10, 13))
    breasts = (
        (u(50, 75) * (1 + 0.4 * habitus), u(25, 55) * (1 + 0.5 * habitus), u(55, 75))
        if rng.random() < 0.35
        else None
    )
    r_vb = u(15, 21)
    yv = cay - 0.45 * r_vb
    period = u(23, 29)
    spine = (r_vb, yv, period, u(0, period))
    hsz = u(45, 58)
    hx, hy = u(8, 28), -cay * u(0.15, 0.3)
    hz = (dome[0] + dome[1]) / 2 + 12 - hsz
    heart = (hx, hy, hz, u(48, 64), u(38, 50), hsz, -u(0.4, 0.8))
    phase, hu = _tissues(rng)
    organs: dict[str, tuple[float, ...]] = {
        "liver": (
            -cax * 0.3,
            0.05 * cay,
            d_r + u(60, 85),
            cax * u(0.7, 0.8),
            cay * u(0.85, 1.0),
            u(90, 120),
            u(-0.2, 0.2),
        ),
        "spleen": (cax * 0.62, 0.5 * cay, dome[1] + u(40, 60), u(28, 38), u(50, 65), u(45, 60), u(0.4, 0.8)),
        "stomach": (
            cax * u(0.2, 0.35),
            -cay * u(0.2, 0.35),
            dome[1] + u(40, 60),
            u(50, 70),
            u(35, 50),
            u(50, 70),
            u(-0.6, -0.2),
        ),
        "gas": (u(0.1, 0.35),),
        "kidney_r": (-cax * 0.45, yv - 5, d_r + u(100, 130), u(28, 35), u(32, 40), u(50, 60), -0.4),
        "kidney_l": (cax * 0.45, yv - 5, dome[1] + u(100, 130), u(28, 35), u(32, 40), u(50, 60), 0.4),
        "scapula": (u(-45, -30), L * u(0.45, 0.58), u(0.55, 0.95)),
    }
    an = Anatomy(
        L=L,
        dome=dome,
        cage=(cax, cay, 0.0),
        fat=fat,
        muscle=muscle,
        arms=arms,
        arm=arm,
        breasts=breasts,
        spine=spine,
        heart=heart,
        organs=organs,
        hu=hu,
        bones=Tubes(),
        vessels=Tubes(),
        airways=Tubes(),
        lung_tubes=Tubes(),
        bowel=Tubes(),
        emphysema=np.zeros((0, 4)),
        table=(cay + muscle[2] + fat[2] + u(0, 10), u(0, 25), u(190, 240), u(3, 6), u(20, 45), u(250, 700)),
        dense_points=[],
    )
    _bones(an, rng)
    _mediastinum(an, rng)
    _lung_tree(an, rng)
    _bowel(an, rng)
    emph = "none"
    if rng.random() < 0.3:
        emph = "centrilobular" if rng.random() < 0.7 else "paraseptal"
        n = int(rng.integers(25, 160))
        t = 0.05 + 0.85 * rng.beta(1.5, 3.0, n)
        rad = np.sqrt(rng.uniform(0, 1, n)) * 0.85 if emph == "centrilobular" else rng.uniform(0.8, 0.97, n)
        ang = rng.uniform(0, 2 * np.pi, n)
        side = np.where(rng.random(n) < 0.5, -1, 1)
        size = rng.uniform(2, 8, n)
        rows = []
        for i in range(n):
            cx, cy, ax, ay = an.lung_geometry(int(side[i]), float(t[i]))
            rows.append(
                (cx + rad[i] * ax * np.cos(ang[i]), cy + rad[i] * ay * np.sin(ang[i]), t[i] * L, size[i])
            )
        an.emphysema = np.array(rows)
    if hu["svc"] > 600:
        x, y = an.vessels.items[-1].p0[:2]
        an.dense_points.append((float(x), float(y), -80.0, float(hz - 0.7 * hsz)))
    for tubes in (an.bones, an.vessels, an.airways, an.lung_tubes, an.bowel):
        tubes.freeze()
    meta = {
        "habitus": round(habitus, 3),
        "arms": arms,
        "contrast": phase,
        "emphysema": emph,
        "breasts": breasts is not None,
        "lung_height_mm": round(L, 1),
        "dome_mm": (round(dome[0], 1), round(dome[1], 1)),
        "carina_mm": round(an.organs["carina"][0], 1),
    }
    return an, meta


def _bones(an: Anatomy, rng: np.random.Generator) -> None:
    u = rng.uniform
    hu = an.hu
    period = an.spine[2]
    rib0 = u(-22, -10)
    for side in (-1, 1):
        for k in range(12):
            a_k = rib0 + k * period
            drop = u(55, 95) if k else u(15, 30)
            b0, b1 = np.pi / 2 - 0.3, -np.pi / 2 + (0.55 if k < 10 else (2.0 if k == 10 else 2.6))
            pts = []
            for t in np.linspace(0, 1, 10):
                a = a_k + drop * t**1.4
                cy, cax, cay = an.cage_at(a)
                b = b0 + (b1 - b0) * t
                pts.append((side * (cax + 6) * np.cos(b), cy + (cay + 6) * np.sin(b), a))
            r = u(4.5, 6)
            an.bones.add(pts, r, hu["cortex"], 1.5, hu["trabecular"])
            if k < 10:
                a = pts[-1][2]
                cy, cax, cay = an.cage_at(a + 8)
                an.bones.add([pts[-1], (side * 16, cy - cay - 4, a + 8)], r * 0.8, hu["cartilage"])
        cy, cax, cay = an.cage_at(-20)
        clav = [
            (side * 14, cy - cay - 2, -6),
            (side * cax * 0.9, cy - cay * 0.7, -18),
            (side * cax * 1.25, cy - cay * 0.1, -28),
        ]
        an.bones.add(clav, u(6, 8), hu["cortex"], 2.0, hu["trabecular"])


def _mediastinum(an: Anatomy, rng: np.random.Generator) -> None:
    u = rng.uniform
    hu = an.hu
    cax, cay, _ = an.cage
    L = an.L
    r_vb, yv = an.spine[:2]
    hx, hy, hz, _, sy, hsz, _ = an.heart
    bottom = L + 250
    x_es, y_es = u(2, 8), yv - 0.85 * r_vb - 10
    r_tr = u(8, 11)
    x_tr, y_tr = u(-4, 2), y_es - 8 - r_tr - 3
    a_car = L * u(0.27, 0.34)
    an.organs["carina"] = (a_car,)
    r_asc, r_desc = u(13, 17), u(10, 13)
    ant = y_tr - r_tr - r_asc
    aorta = [
        (hx * 0.3, hy - 0.1 * cay, hz - 0.4 * hsz),
        (-12, ant - 8, 0.3 * L),
        (-4, ant - 4, 0.2 * L),
        (r_tr + r_desc + 6, y_tr + 4, 0.17 * L),
        (r_vb * 0.8 + r_desc * 0.5, yv - r_vb * 0.85 - r_desc * 0.3, 0.28 * L),
        (r_vb * 0.7 + r_desc * 0.4, yv - r_vb * 0.9 - r_desc * 0.4, bottom),
    ]
    an.vessels.add(aorta[:3], r_asc, hu["blood_left"])
    an.vessels.add(aorta[2:], r_desc, hu["blood_left"])
    top = -90.0
    for pts, r in (
        ([(-4, ant, 0.2 * L), (-(r_tr + 10), y_tr - r_tr - 6, top)], 6.0),
        ([(4, ant + 4, 0.19 * L), (r_tr + 6, y_tr - 4, top)], 4.5),
        ([(r_tr + 12, y_tr + 2, 0.18 * L), (cax * 0.45, y_tr, -40)], 5.0),
    ):
        an.vessels.add(pts, r, hu["blood_left"])
    pa_trunk = (hx + 10, hy - 0.55 * sy, hz - 0.6 * hsz)
    bif = (12, y_tr - r_tr - 10, a_car + 8)
    an.vessels.add([pa_trunk, bif], u(12, 15), hu["blood_right"])
    r_pa = u(9, 11)
    an.vessels.add([bif, (cax * 0.33, y_tr + 10, a_car + 12)], r_pa, hu["blood_right"])
    an.vessels.add([bif, (-cax * 0.3, y_tr - 2, a_car + 20)], r_pa, hu["blood_right"])
    an.vessels.add(
        [(-cax * 0.15, yv - r_vb - 14, hz + 0.5 * hsz), (-cax * 0.12, yv - r_vb - 12, bottom)],
        u(10, 13),
        hu["blood_right"],
    )
    r_es = u(7, 9)
    eso = [(x_es, y_es, top), (x_es + 5, y_es, an.dome[1] - 10), (cax * 0.2, -cay * 0.1, an.dome[1] + 30)]
    an.vessels.add(eso, r_es, hu["wall"])
    if rng.random() < 0.4:
        an.airways.add(eso[:2], u(1.5, 3.0), 0.0)
    an.airways.add([(x_tr, y_tr, top - 20), (x_tr, y_tr + 3, a_car)], r_tr, 0.0, u(1.5, 2.5))
    wall = u(1.2, 2.0)
    ends = {}
    for side, dx, dy, da, r in ((-1, 0.28, 12, 22, u(6, 7.5)), (1, 0.28, 16, 42, u(5.5, 7.0))):
        end = (side * cax * dx, y_tr + dy, a_car + da)
        an.airways.add([(x_tr, y_tr + 3, a_car), end], r, 0.0, wall)
        ends[side] = end
        for tx, ty, ta in ((0.42, 6, -5), (0.40, 30, 70), (0.38, -15, 45)):
            an.lung_tubes.add([end, (side * cax * tx, y_tr + ty, a_car + ta)], u(3.0, 4.5), 0.0, 1.2)
    # the SVC last: a dense-contrast streak source refers to it
    an.vessels.add(
        [(-(r_tr + 18), y_tr - 12, top), (-(r_tr + 20), y_tr - 16, hz - 0.7 * hsz)], u(8, 11), hu["svc"]
    )


def _lung_tree(an: Anatomy, rng: np.random.Generator) -> None:
    """Pulmonary vessels from each hilum: main branches, each splitting in two towards the pleura."""
    u = rng.uniform
    cax, cay, _ = an.cage
    a_car = an.organs["carina"][0]
    hu = an.hu["blood_right"]

    def point(side: int, t: float, radial: float, ang: float) -> tuple[float, float, float]:
        cx, cy, ax, ay = an.lung_geometry(side, t)
        return cx + radial * ax * np.cos(ang), cy + radial * ay * np.sin(ang), t * an.L

    for side in (-1, 1):
        hilum = (side * cax * 0.3, 0.1 * cay, a_car + 30)
        for _ in range(12):
            t, ang = u(0.12, 0.95), u(0, 2 * np.pi)
            mid = point(side, t, u(0.45, 0.6), ang)
            an.lung_tubes.add([hilum, mid], u(2.5, 4.5), hu)
            for _ in range(2):
                tip = point(
                    side, float(np.clip(t + u(-0.06, 0.06), 0.05, 0.98)), u(0.8, 0.93), ang + u(-0.5, 0.5)
                )
                an.lung_tubes.add([mid, tip], u(1.2, 2.4), hu)


def _bowel(an: Anatomy, rng: np.random.Generator) -> None:
    u = rng.uniform
    cax, cay, _ = an.cage
    d_r, d_l = an.dome
    stool = an.hu["stool"]
    colon = [
        (cax * 0.75, -cay * 0.1, d_l + 60),
        (cax * 0.65, -cay * 0.5, d_l + 100),
        (-cax * 0.55, -cay * 0.6, d_l + 125),
    ]
    an.bowel.add(colon, u(14, 22), stool, u(-0.5, 1.0))
    if rng.random() < 0.5:
        an.bowel.add(
            [(-cax * 0.6, -cay * 0.45, d_r + 110), (-cax * 0.75, -cay * 0.1, d_r + 160)],
            u(14, 20),
            stool,
            u(-0.5, 1.0),
        )


def table_image(an: Anatomy, g: Grid) -> np.ndarray:
    """Air with the patient table (curved shells around a foam core) below the back."""
    y_top, curv, half_w, shell, core, dense = an.table
    img = np.full((g.ys.size, g.xs.size), -1000.0, np.float32)
    Y = g.ys[:, None]
    yt = y_top - curv * (g.xs[None, :] / half_w) ** 2
    inside = np.abs(g.xs)[None, :] < half_w
    d = Y - yt
    img[inside & (d >= 0) & (d < shell)] = dense
    img[inside & (d >= shell) & (d < shell + core)] = -700.0
    img[inside & (d >= shell + core) & (d < 2 * shell + core)] = dense
    return img
