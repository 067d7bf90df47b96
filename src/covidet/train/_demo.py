"""Train the demo checkpoints on synthetic phantoms (`covidet train-demo`).

The demo models have the papers' topologies at reduced width. They are trained here, on CPU, on
phantoms generated from a seed, with the SAME preprocessing functions the server runs, so that the
committed checkpoints are reproducible: `covidet train-demo --seed 0` rewrites them.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from covidet import __version__
from covidet import _contract as C
from covidet import ensemble as P
from covidet.models import CheckpointMeta, build_model, save_checkpoint
from covidet.phantom import Phantom, make_phantom
from covidet.preprocessing import (
    LesionRecord,
    LungRecord,
    PreprocessingRecord,
    SliceRecord,
    as_kind,
    default_records,
)

__all__ = ["DemoData", "main_train_demo", "make_demo_data", "train_all"]

VARIANT = "demo"
#: Independently trainable parts: lung U-Net, lesion DeepLabV3+, 4-class ResNet, encoder + GRU.
PARTS = ("lung", "lesion", "classifier", "stepwise")
#: Phantom in-plane sizes cycled through during training, so the models see several resolutions.
_SIZES = (256, 384, 512, 320)


def _provenance(seed: int) -> str:
    return (
        f"demo: trained on synthetic phantoms by `covidet train-demo --seed {seed}` "
        f"(covidet {__version__}); NOT a diagnostic model"
    )


@dataclass
class DemoData:
    phantoms: list[Phantom]


def make_demo_data(
    n_per_class: int,
    n_slices: int,
    seed: int,
    *,
    min_slices: int | None = None,
    sizes: Sequence[int] = _SIZES,
) -> DemoData:
    """Phantoms of every class with slice counts in [min_slices, n_slices] and cycling sizes."""
    rng = np.random.default_rng(seed)
    phantoms = []
    i = 0
    lo = max(8, n_slices // 2) if min_slices is None else min_slices
    for _ in range(n_per_class):
        for kind in C.CLASS_NAMES:
            size = sizes[i % len(sizes)]
            s = int(rng.integers(lo, n_slices + 1))
            phantoms.append(make_phantom(kind, n_slices=s, size=size, seed=seed * 100_003 + i))
            i += 1
    return DemoData(phantoms)


def _batches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i : i + size] for i in range(0, n, size)]


@dataclass(frozen=True)
class _Run:
    """What every part of one training run shares: where it reports, how long it trains."""

    log: Callable[[str], None] = print
    #: multiplies every model's epoch count (smoke runs use a small value)
    epoch_scale: float = 1.0

    def epochs(self, n: int) -> int:
        return max(1, round(n * self.epoch_scale))


def _fit(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, np.ndarray], torch.Tensor],
    n: int,
    *,
    epochs: int,
    batch: int,
    lr: float,
    seed: int,
    name: str,
    run: _Run,
) -> None:
    epochs = run.epochs(epochs)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((n + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        losses = []
        for idx in _batches(n, batch, rng):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, idx)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        run.log(
            f"{name}: epoch {epoch + 1}/{epochs} loss {np.mean(losses):.4f} "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    model.eval()


def _downsample_mask(mask: np.ndarray, size: Sequence[int]) -> np.ndarray:
    t = torch.from_numpy(mask.astype(np.float32))[:, None]
    return (F.interpolate(t, size=tuple(size), mode="area")[:, 0].numpy() > 0.5).astype(np.int64)


def _soft_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    return 1 - (2 * inter + 1) / (p.sum() + target.sum() + 1)


def train_lung(data: DemoData, rec: LungRecord, seed: int, run: _Run) -> nn.Module:
    xs, ys = [], []
    size = rec.input_size
    for ph in data.phantoms:
        xs.append(P.lung_input(ph.hu, rec))
        lung = _downsample_mask(ph.lung_mask, size)
        # Jin et al.'s U-Net has 3 classes (background, two lungs) merged to binary lung.
        side = np.zeros_like(lung)
        side[..., size[1] // 2 :] = 1
        ys.append(lung * (1 + side))
    x = torch.from_numpy(np.concatenate(xs))
    y = torch.from_numpy(np.concatenate(ys))
    torch.manual_seed(seed)
    model = build_model("lung_unet", VARIANT)

    def loss(m: nn.Module, idx: np.ndarray) -> torch.Tensor:
        return F.cross_entropy(m(x[idx]), y[idx])

    _fit(model, loss, len(x), epochs=4, batch=32, lr=1e-2, seed=seed, name="lung_seg", run=run)
    return model


def train_lesion(data: DemoData, rec: LesionRecord, seed: int, run: _Run) -> nn.Module:
    xs, ys = [], []
    size = rec.input_size
    for ph in data.phantoms:
        keep = ph.lung_mask.reshape(ph.lung_mask.shape[0], -1).any(axis=1)
        if not keep.any():
            continue
        xs.append(P.lesion_input(ph.hu[keep], rec))
        ys.append(_downsample_mask(ph.lesion_mask[keep], size).astype(np.float32))
    x = torch.from_numpy(np.concatenate(xs))
    y = torch.from_numpy(np.concatenate(ys))[:, None]
    torch.manual_seed(seed)
    model = build_model("deeplabv3plus_densenet121", VARIANT)

    def loss(m: nn.Module, idx: np.ndarray) -> torch.Tensor:
        logits = m(x[idx])
        return F.binary_cross_entropy_with_logits(logits, y[idx]) + _soft_dice(logits, y[idx])

    _fit(model, loss, len(x), epochs=10, batch=16, lr=5e-3, seed=seed, name="lesion_seg", run=run)
    return model


def _jin_slices(data: DemoData, rec: SliceRecord) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Per phantom: the classifier input of the selected slices, slice labels, scan label."""
    inputs, slice_labels, labels = [], [], []
    for ph in data.phantoms:
        sel = P.select_slices(ph.lung_mask, rec)
        inputs.append(P.classifier_input(ph.hu, ph.lung_mask[sel.indices], sel, rec).astype(np.float16))
        lesion_px = ph.lesion_mask[sel.indices].reshape(len(sel.indices), -1).sum(axis=1)
        lung_px = ph.lung_mask[sel.indices].reshape(len(sel.indices), -1).sum(axis=1)
        # A slice shows the scan's disease only where it has lesion; otherwise non-pneumonia.
        has = lesion_px > 0.002 * np.maximum(lung_px, 1)
        slice_labels.append(np.where(has, ph.label, 0).astype(np.int64))
        labels.append(ph.label)
    return inputs, slice_labels, labels


def train_classifier(
    jin: tuple[list[np.ndarray], list[np.ndarray], list[int]],
    seed: int,
    run: _Run,
) -> nn.Module:
    x = torch.from_numpy(np.concatenate(jin[0]))
    y = torch.from_numpy(np.concatenate(jin[1]))
    torch.manual_seed(seed)
    model = build_model("resnet152_cls", VARIANT)

    def loss(m: nn.Module, idx: np.ndarray) -> torch.Tensor:
        return F.cross_entropy(m(x[idx].float()), y[idx])

    _fit(model, loss, len(x), epochs=6, batch=32, lr=3e-3, seed=seed, name="classifier", run=run)
    return model


def _feature_dim(encoder: nn.Module) -> int:
    return int(getattr(encoder, "feature_dim"))  # noqa: B009  (set by the architecture)


class _StepwiseNet(nn.Module):
    """Encoder + GRU trained together; an auxiliary slice head speeds up the encoder's training."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.encoder: nn.Module = build_model("resnext50_ws_gn", VARIANT)
        dim = _feature_dim(self.encoder)
        self.gru: nn.Module = build_model("gru_fusion", VARIANT, feature_dim=dim)
        self.aux = nn.Linear(dim, len(C.CLASS_NAMES))


def train_stepwise(
    jin: tuple[list[np.ndarray], list[np.ndarray], list[int]],
    seed: int,
    run: _Run,
) -> tuple[nn.Module, nn.Module]:
    """Encoder first (slice-level 4-class head, then dropped), then the GRU on its features."""
    seqs, slice_labels, labels = jin
    viral = {C.CLASS_NAMES.index("influenza"), C.CLASS_NAMES.index("COVID-19")}
    covid = C.CLASS_NAMES.index("COVID-19")
    net = _StepwiseNet(seed)
    x = torch.from_numpy(np.concatenate(seqs))
    y = torch.from_numpy(np.concatenate(slice_labels))

    def slice_loss(m: Any, idx: np.ndarray) -> torch.Tensor:
        return F.cross_entropy(m.aux(m.encoder(x[idx].float())), y[idx])

    _fit(net, slice_loss, len(x), epochs=6, batch=32, lr=3e-3, seed=seed, name="encoder", run=run)
    with torch.no_grad():  # GroupNorm: no batch statistics, features are the same in eval mode
        feats = [net.encoder(torch.from_numpy(s).float()) for s in seqs]
    dl1 = torch.tensor([float(lab in viral) for lab in labels])
    dl2 = torch.tensor([float(lab == covid) for lab in labels])
    is_viral = dl1 > 0

    def seq_loss(m: Any, idx: np.ndarray) -> torch.Tensor:
        total = torch.zeros(())
        for i in idx:
            probs = m(feats[i][None])[0]  # [2] probabilities (DL#1, DL#2)
            total = total + F.binary_cross_entropy(probs[0], dl1[i])
            if is_viral[i]:  # DL#2 is defined on viral pneumonia only
                total = total + F.binary_cross_entropy(probs[1], dl2[i])
        return total / len(idx)

    _fit(net.gru, seq_loss, len(seqs), epochs=60, batch=8, lr=1e-2, seed=seed, name="gru", run=run)
    return net.encoder, net.gru


def checkpoint_meta(
    model_name: str,
    rec: PreprocessingRecord,
    extra: dict[str, Any],
    *,
    variant: str,
    provenance: str,
    trained: bool,
) -> CheckpointMeta:
    """The metadata of a covidet checkpoint of contract model ``model_name`` (sha256 set on save)."""
    spec = {s.name: s for s in C.all_models()}[model_name]
    names = {
        C.LUNG_SEG.name: ["background", "lung_a", "lung_b"],
        C.SLICE_CLASSIFIER.name: list(C.CLASS_NAMES),
        C.SLICE_ENCODER.name: [],
        C.GRU_FUSION.name: list(C.STEPWISE_NAMES),
        C.LESION_SEG.name: ["lesion"],
    }[model_name]
    return CheckpointMeta(
        architecture=str(spec.architecture),
        variant=variant,
        version="1",
        preprocessing=rec,
        class_names=names,
        ws_convention="biased_var_eps_in_sqrt" if model_name == C.SLICE_ENCODER.name else None,
        provenance=provenance,
        trained=trained,
        sha256="",
        extra=extra,
    )


def train_all(
    out: Path,
    *,
    seed: int = 0,
    n_per_class: int = 14,
    n_slices: int = 48,
    parts: Sequence[str] = PARTS,
    log: Callable[[str], None] = print,
    epoch_scale: float = 1.3,
) -> dict[str, Path]:
    """Train the demo models (``parts`` of PARTS) and write `<model>.pt` + `<model>.json` into `out`.

    Each part seeds itself, so training parts separately gives the same weights as all at once.
    """
    torch.set_num_threads(max(1, torch.get_num_threads()))
    run = _Run(log, epoch_scale)
    recs = default_records()
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def save(name: str, model: nn.Module, rec: PreprocessingRecord, extra: dict[str, Any]) -> None:
        stem = out / name
        meta = checkpoint_meta(name, rec, extra, variant=VARIANT, provenance=_provenance(seed), trained=True)
        save_checkpoint(model, meta, stem)
        written[name] = stem

    if "lung" in parts or "lesion" in parts:
        data = make_demo_data(n_per_class, n_slices, seed)
        log(f"{len(data.phantoms)} segmentation phantoms generated ({time.perf_counter() - t0:.0f} s)")
    if "lung" in parts:
        lung = train_lung(data, as_kind(recs[C.LUNG_SEG.name], LungRecord), seed, run)
        save(C.LUNG_SEG.name, lung, recs[C.LUNG_SEG.name], {})
    if "lesion" in parts:
        lesion = train_lesion(data, as_kind(recs[C.LESION_SEG.name], LesionRecord), seed + 1, run)
        save(C.LESION_SEG.name, lesion, recs[C.LESION_SEG.name], {})
    if "classifier" not in parts and "stepwise" not in parts:
        log(f"demo checkpoints written to {out} ({time.perf_counter() - t0:.0f} s)")
        return written
    # The classifiers see Jin et al.'s 35 slices taken by stride over the lung. Scans of 90+ slices
    # make that stride cover the whole lung (with fewer, only the upper 35 lung slices are taken).
    t1 = time.perf_counter()
    cls_data = make_demo_data(2 * n_per_class, 140, seed + 50_000, min_slices=90, sizes=(256, 320, 384))
    log(f"{len(cls_data.phantoms)} classifier phantoms generated ({time.perf_counter() - t1:.0f} s)")
    jin = _jin_slices(cls_data, as_kind(recs[C.SLICE_CLASSIFIER.name], SliceRecord))
    del cls_data
    if "classifier" in parts:
        cls = train_classifier(jin, seed + 2, run)
        save(C.SLICE_CLASSIFIER.name, cls, recs[C.SLICE_CLASSIFIER.name], {})
    if "stepwise" in parts:
        encoder, gru = train_stepwise(jin, seed + 3, run)
        dim = _feature_dim(encoder)
        save(C.SLICE_ENCODER.name, encoder, recs[C.SLICE_ENCODER.name], {"feature_dim": dim})
        save(C.GRU_FUSION.name, gru, recs[C.GRU_FUSION.name], {"feature_dim": dim})
    log(f"demo checkpoints written to {out} ({time.perf_counter() - t0:.0f} s)")
    return written


def main_train_demo(argv: Sequence[str] | None = None) -> int:
    from covidet.export._render import default_checkpoints

    parser = argparse.ArgumentParser(prog="covidet train-demo", description=__doc__)
    parser.add_argument(
        "--out",
        type=Path,
        default=default_checkpoints(),
        help="output folder (default: the package's demo checkpoints)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=14, help="phantoms per class")
    parser.add_argument("--slices", type=int, default=48, help="max slices per phantom")
    parser.add_argument("--epoch-scale", type=float, default=1.3, help="scale all epoch counts")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {PARTS}")
    args = parser.parse_args(argv)
    parts = [p for p in args.only.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    written = train_all(
        args.out,
        seed=args.seed,
        n_per_class=args.per_class,
        n_slices=args.slices,
        parts=parts,
        epoch_scale=args.epoch_scale,
    )
    print(json.dumps({k: str(v) for k, v in written.items()}, indent=2))
    return 0
