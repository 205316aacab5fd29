"""The reference task's limit search and region codes, learnt on template/test pairs (no torch).

Limits are learnt on the dataset's **train** pairs only, each inspected twice after a line-like
change (:mod:`vinspect.dataset.linechange`): the changed template against the template (a good
part) and the changed test image against the template (its boxes moved along). Every candidate
setting of (edge tolerance, pixel contrast, opening) runs through the runtime's own
:class:`~vinspect.models.reference.ReferenceModel`; for each, the blob-mass limit is the lowest
that keeps false boxes per image and the good-part false-reject rate within their targets, and
the setting with the best box recall wins. Region codes (kNN over blob features) learn from the
train blobs that match a labelled box.

Export parity: the bundle is written, loaded back through ``vinspect.models.runtime.load_bundle``
(sha256 checks included) and its golden samples (a changed reference: PASS; the reference with a
drawn defect: FAIL) are judged through ``judge_image``; their scores go in the manifest and the
station re-judges them at every start-up. No torch here: registration and comparison are numpy +
OpenCV in the runtime, and this trainer calls exactly that code.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.dataset.images import read_image
from vinspect.dataset.layouts import Sample
from vinspect.dataset.linechange import apply_change, move_box, random_change
from vinspect.errors import FrameRejected
from vinspect.models.reference import PreparedReference, ReferenceModel
from vinspect.models.reference_spec import (
    CompareLimits,
    PartReference,
    PinnedFile,
    ReferenceSpec,
    RegionCodes,
)
from vinspect.models.region_codes import region_features
from vinspect.report.boxes import match_boxes

__all__ = ["ReferenceTrainConfig", "cases_of", "learn_codes", "search_limits"]

logger = logging.getLogger(__name__)
U8 = npt.NDArray[np.uint8]
Blob = tuple[tuple[int, int, int, int], float]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceTrainConfig:
    """Targets and search space of the limit search."""

    max_false_boxes_per_image: float = 0.3
    max_false_reject_rate: float = 0.02
    jitter_px: tuple[int, ...] = (1, 2)
    contrast_at: tuple[float, ...] = (0.3, 0.5)
    open_px: tuple[int, ...] = (1,)
    group_px: tuple[int, ...] = (6,)
    box_pad_px: tuple[int, ...] = (8, 12, 16)
    local_grid: tuple[int, ...] = (0, 4)
    min_area_px: int = 3
    seed: int = 0


@dataclass(frozen=True, slots=True)
class _Case:
    template: U8
    image: U8
    boxes: list[tuple[int, int, int, int]]
    labels: list[str]


def cases_of(samples: list[Sample], *, seed: int) -> list[_Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for s in samples:
        assert s.reference_path is not None
        template = _grey(read_image(s.reference_path))
        test = _grey(read_image(s.path))
        good = random_change(rng)
        cases.append(_Case(template, apply_change(template, good), [], []))
        if s.boxes:
            ch = random_change(rng)
            cases.append(
                _Case(
                    template,
                    apply_change(test, ch),
                    [move_box(b.box_xyxy, ch, test.shape) for b in s.boxes],
                    [b.label for b in s.boxes],
                )
            )
    return cases


def _grey(image: U8) -> U8:
    return image if image.ndim == 2 else np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), dtype=np.uint8)


def _spec(limits: CompareLimits) -> ReferenceSpec:
    dummy = PartReference(part_number="train", image=PinnedFile(file="reference/train.png", sha256="0" * 64))
    return ReferenceSpec(parts=(dummy,), limits=limits)


def _measure(cases: list[_Case], limits: CompareLimits) -> list[list[Blob] | None]:
    spec = _spec(limits)
    out: list[list[Blob] | None] = []
    for c in cases:
        model = ReferenceModel(spec, PreparedReference("train", c.template, limits=limits))
        try:
            out.append(model.measure(c.image))
        except FrameRejected:
            out.append(None)  # counts as a reject: false for a good part, a catch for a defective one
    return out


def _operating_point(
    cases: list[_Case], blobs: list[list[Blob] | None], cfg: ReferenceTrainConfig
) -> tuple[float, dict[str, float]]:
    every = [m for bl in blobs if bl for _, m in bl]
    masses = sorted(set(np.quantile(every, np.linspace(0.0, 1.0, 256)).tolist())) if every else []
    n_boxes = sum(len(c.boxes) for c in cases)
    best: tuple[float, dict[str, float]] | None = None
    for m in reversed([*masses, masses[-1] * 2 if masses else 1.0]):
        stats = _stats_at(cases, blobs, m)
        if (
            stats["false_boxes_per_image"] > cfg.max_false_boxes_per_image
            or stats["false_reject_rate"] > cfg.max_false_reject_rate
        ):
            break
        best = (m, stats)
    if best is None:
        m = (masses[-1] * 2) if masses else 1.0
        best = (m, _stats_at(cases, blobs, m))
    best[1]["n_boxes"] = float(n_boxes)
    return best


def _stats_at(cases: list[_Case], blobs: list[list[Blob] | None], mass_at: float) -> dict[str, float]:
    hit = total = false = good_rej = n_good = escaped = 0
    for c, bl in zip(cases, blobs, strict=True):
        found = [b for b, m in bl if m >= mass_at] if bl is not None else []
        recalled, genuine = match_boxes(found, c.boxes)
        hit += sum(recalled)  # a refused frame fails the part but localises no box
        escaped += bool(c.boxes) and bl is not None and not found
        total += len(c.boxes)
        false += genuine.count(False)
        if not c.boxes:
            n_good += 1
            good_rej += bl is None or bool(found)
    n_defect = len(cases) - n_good
    return {
        "box_recall": hit / max(total, 1),
        "false_boxes_per_image": false / max(len(cases), 1),
        "false_reject_rate": good_rej / max(n_good, 1),
        "escape_rate": escaped / max(n_defect, 1),
        "mass_at": mass_at,
        "good_parts": float(n_good),
        "good_rejected": float(good_rej),
        "defect_parts": float(n_defect),
        "defects_escaped": float(escaped),
    }


def _padded(blobs: list[list[Blob] | None], pad: int, shape: tuple[int, int]) -> list[list[Blob] | None]:
    h, w = shape
    return [
        None
        if bl is None
        else [((max(b[0] - pad, 0), max(b[1] - pad, 0), min(b[2] + pad, w), min(b[3] + pad, h)), m) for b, m in bl]
        for bl in blobs
    ]


def search_limits(cases: list[_Case], cfg: ReferenceTrainConfig) -> tuple[CompareLimits, dict[str, float]]:
    """The comparison limits with the best train box recall within the false-box and FRR targets."""
    best: tuple[CompareLimits, dict[str, float]] | None = None
    shape = cases[0].template.shape
    for jitter, contrast, opening, group, grid in itertools.product(
        cfg.jitter_px, cfg.contrast_at, cfg.open_px, cfg.group_px, cfg.local_grid
    ):
        probe = CompareLimits(
            jitter_px=jitter,
            contrast_at=contrast,
            open_px=opening,
            min_area_px=cfg.min_area_px,
            group_px=group,
            local_grid=grid,
            mass_at=1e-9,
        )
        measured = _measure(cases, probe)
        for pad in cfg.box_pad_px:
            mass_at, stats = _operating_point(cases, _padded(measured, pad, (shape[0], shape[1])), cfg)
            logger.info(
                "limits jitter=%d contrast=%.2f open=%d group=%d grid=%d pad=%d: mass_at %.3g recall %.3f "
                "false/img %.3f frr %.3f",
                jitter,
                contrast,
                opening,
                group,
                grid,
                pad,
                mass_at,
                stats["box_recall"],
                stats["false_boxes_per_image"],
                stats["false_reject_rate"],
            )
            key = (stats["box_recall"], -stats["false_boxes_per_image"])
            if best is None or key > (best[1]["box_recall"], -best[1]["false_boxes_per_image"]):
                best = (probe.model_copy(update={"mass_at": mass_at, "box_pad_px": pad}), stats)
    assert best is not None
    return best


def learn_codes(cases: list[_Case], limits: CompareLimits) -> RegionCodes | None:
    feats, labels = [], []
    spec = _spec(limits)
    for c in cases:
        if not c.boxes:
            continue
        model = ReferenceModel(spec, PreparedReference("train", c.template, limits=limits))
        try:
            comp = model.compare(c.image)
        except FrameRejected:
            continue
        blobs = model.find_blobs(comp.excess)
        ref = model.reference
        test_bright = (comp.warped >= (ref.dark + ref.bright) / 2).astype(np.uint8)
        for i in np.flatnonzero(blobs.mass >= limits.mass_at):
            box = (int(blobs.boxes[i][0]), int(blobs.boxes[i][1]), int(blobs.boxes[i][2]), int(blobs.boxes[i][3]))
            for t, label in zip(c.boxes, c.labels, strict=True):
                if match_boxes([model.frame_box(blobs.boxes[i], comp.matrix)], [t])[1][0]:
                    feats.append(
                        region_features(
                            box=box,
                            blob=blobs.mask(int(i)),
                            pos=comp.pos,
                            neg=comp.neg,
                            ref_bright=ref.bright_map,
                            test_bright=test_bright,
                        )
                    )
                    labels.append(label)
                    break
    names = tuple(sorted(set(labels)))
    if len(names) < 2:
        return None
    x = np.asarray(feats, dtype=np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    pts = (x - mean) / scale
    return RegionCodes(
        labels=names,
        feature_mean=tuple(mean.tolist()),
        feature_scale=tuple(scale.tolist()),
        points=tuple(tuple(round(v, 4) for v in p) for p in pts.tolist()),
        point_labels=tuple(names.index(lb) for lb in labels),
    )
