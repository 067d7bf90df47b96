"""Files of an explained diagnosis (``explain=True``): what the classifier looked at.

- ``attention_<k>.png`` for the k-th (1-based) of the top-K slices: the CT in the lung window,
  the predicted class's attention as a heat map, the lesion's contour (with masks), and
  Jin et al.'s attention regions boxed;
- ``attention.dcm``: a DICOM Parametric Map of the attention on the top-K source slices (only for
  a DICOM input). A parametric map, rather than a second SEG of the binarised regions, because
  what a reader checks is the graded map: viewers (OHIF, 3D Slicer) lay it over the CT with a
  colour table, and the regions are a threshold of it that the SR already lists with their
  areas and lesion overlaps. Its value is the attention as a fraction of the slice's peak (0-1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from covidet.client._outputs_common import DISCLAIMER, lo
from covidet.client._png import _figure, _outline, _window
from covidet.client._result import Diagnosis
from covidet.client._volume import Volume

__all__ = ["write_attention_map", "write_attention_pngs"]

#: Series number of the parametric map (SEG and SR use the numbers before it).
_SERIES_NUMBER_PM = 9003


def write_attention_pngs(
    diagnosis: Diagnosis, volume: Volume, lesion: np.ndarray | None, out_dir: Path
) -> dict[str, Path]:
    """``attention_<k>.png`` for each explained slice; returns ``{stem: path}``."""
    if diagnosis.attention is None:
        return {}
    _, dy, dx = volume.spacing
    attention = np.asarray(diagnosis.attention)
    written: dict[str, Path] = {}
    label = diagnosis.predicted_class
    method = _method(diagnosis)
    for k, idx in enumerate(diagnosis.topk_slices, start=1):
        if not 0 <= idx < volume.n_slices or k > len(attention):
            continue
        heat = attention[k - 1].astype(np.float32) / 255.0
        fig, ax = _figure(heat.shape, dy / dx)
        ax.imshow(
            _window(volume.hu[idx]), cmap="gray", vmin=0, vmax=1, aspect=dy / dx, interpolation="nearest"
        )
        rgba = _heat(heat)
        ax.imshow(rgba, aspect=dy / dx, interpolation="bilinear")
        _outline(ax, lesion[idx] if lesion is not None else None, "red", 1.2)
        for region in diagnosis.attention_regions:
            if region.rank == k - 1:
                r0, r1, c0, c1 = region.bbox
                ax.add_patch(_box(c0, r0, c1 - c0, r1 - r0))
        score = next((s for s in diagnosis.slice_scores if s.slice == idx), None)
        extra = f" | P(pneumonia) {score.p_pneumonia:.2f}, lesion {score.lesion_mm2:.0f} mm²" if score else ""
        fig.suptitle(
            f"attention for {label}: key slice {k}/{len(diagnosis.topk_slices)} (slice {idx}){extra}\n"
            f"heat: {method}; red: lesion contour; white: attention regions",
            fontsize=8,
            y=0.995,
        )
        fig.text(0.01, 0.005, DISCLAIMER, fontsize=6, color="gray")
        path = out_dir / f"attention_{k}.png"
        fig.savefig(path)
        written[path.stem] = path
    return written


def _method(diagnosis: Diagnosis) -> str:
    """How the attention was computed (the explanation's method; "attention" if not said)."""
    return diagnosis.explanation.method if diagnosis.explanation is not None else "attention"


def _heat(heat: np.ndarray) -> np.ndarray:
    """RGBA of a 0-1 heat map: the 'jet' colours, transparent where there is no attention."""
    from matplotlib import colormaps

    rgba = colormaps["jet"](heat).astype(np.float32)
    rgba[..., 3] = 0.55 * np.clip(heat * 1.5, 0.0, 1.0)
    return rgba


def _box(x: float, y: float, width: float, height: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), width, height, fill=False, edgecolor="white", linestyle="--")


def write_attention_map(diagnosis: Diagnosis, sources: list[Any], path: Path) -> Any | None:
    """``attention.dcm``: the attention of the top-K slices as a DICOM Parametric Map on their
    source instances (``sources``: the CT datasets in the volume's slice order). None (nothing
    written) without attention, or for an enhanced CT (its frames share one instance)."""
    if diagnosis.attention is None or len(sources) < max(diagnosis.topk_slices, default=0) + 1:
        return None
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from covidet import __version__

    # one frame per explained slice, each on its own source instance (a slice repeated in the
    # top-K, as with fewer slices than K, is written once)
    method = _method(diagnosis)
    ranks = {idx: k for k, idx in reversed(list(enumerate(diagnosis.topk_slices)))}
    order = sorted(ranks)
    frames = np.stack([np.asarray(diagnosis.attention)[ranks[i]] for i in order]).astype(np.uint16)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="attention",
        lut_explanation=lo(f"{diagnosis.predicted_class} attention, fraction of the slice's peak"),
        unit=codes.UCUM.NoUnits,
        value_range=(0, 255),
        slope=1.0 / 255.0,
        intercept=0.0,
    )
    pm = hd.pm.ParametricMap(
        source_images=[sources[i] for i in order],
        pixel_array=frames,
        series_instance_uid=generate_uid(),
        series_number=_SERIES_NUMBER_PM,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="covidet",
        manufacturer_model_name=lo(f"covidet {__version__}"),
        software_versions=lo(__version__),
        device_serial_number="0",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=128.0, window_width=256.0)],
        content_label="ATTENTION",
        content_description=lo(f"covidet {method} attention on the key slices"),
        series_description=lo("covidet attention map"),
    )
    pm.save_as(path)
    return pm
