"""Write a golden-reference bundle: reference.json + reference/*.png + golden/*.png + manifest.json.

See :mod:`training.reference` for how the limits are learnt. The bundle is assembled in a
temporary sibling folder, loaded back through the runtime (every sha256 checked) and its golden
samples judged there (the export parity check) before it is renamed into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from training.reference import ReferenceTrainConfig, cases_of, learn_codes, search_limits
from vinspect.dataset.images import read_image
from vinspect.dataset.layouts import DatasetIndex, Sample, open_dataset
from vinspect.dataset.linechange import LineChange, apply_change
from vinspect.errors import DatasetError, ModelError
from vinspect.imaging import encode_png
from vinspect.models.calibration import operating_point
from vinspect.models.manifest import (
    MODEL_NAME,
    CalibrationEvidence,
    GoldenSample,
    InputSpec,
    ModelManifest,
    OperatingPoint,
    Thresholds,
    TrainingInfo,
    write_manifest,
)
from vinspect.models.reference_spec import (
    REFERENCE_NAME,
    AnomalyCompanion,
    CompareLimits,
    PartReference,
    PinnedFile,
    ReferenceSpec,
    RegionCodes,
)

__all__ = ["ReferenceBundleOptions", "train_reference_bundle"]

logger = logging.getLogger(__name__)
U8 = npt.NDArray[np.uint8]
_PN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FAIL_AT = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceBundleOptions:
    """What goes in the bundle besides the learnt limits."""

    name: str = "reference"
    version: str | None = None
    references: dict[str, Path] = field(default_factory=dict)
    ignore_masks: dict[str, Path] = field(default_factory=dict)
    tight_masks: dict[str, Path] = field(default_factory=dict)
    part_number: str = "part"
    anomaly_bundle: Path | None = None
    config: ReferenceTrainConfig = field(default_factory=ReferenceTrainConfig)


def _png(path: Path, image: U8) -> str:
    try:
        data = encode_png(image)
    except ValueError as exc:
        raise ModelError(f"{path}: PNG encoding failed") from exc
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _grey(image: U8) -> U8:
    return image if image.ndim == 2 else np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), dtype=np.uint8)


def _references(opts: ReferenceBundleOptions, templates: dict[str, Path]) -> dict[str, U8]:
    if opts.references:
        return {pn: _grey(read_image(p)) for pn, p in opts.references.items()}
    images = {pid: _grey(read_image(p)) for pid, p in templates.items()}
    digests = {hashlib.sha256(img.tobytes()).hexdigest() for img in images.values()}
    if len(digests) == 1:  # one product: every pair shares the golden image
        return {opts.part_number: next(iter(images.values()))}
    return images


def _pinned(folder: Path, name: str, image: U8) -> PinnedFile:
    return PinnedFile(file=f"reference/{name}.png", sha256=_png(folder / f"{name}.png", image))


def _parts(tmp: Path, refs: dict[str, U8], opts: ReferenceBundleOptions) -> tuple[PartReference, ...]:
    folder = tmp / "reference"
    folder.mkdir(parents=True)
    parts = []
    for pn, img in sorted(refs.items()):
        if not _PN.match(pn):
            raise ModelError(f"part number {pn!r}: use letters, digits, '_', '.', '-' (max 64)")
        ignore = opts.ignore_masks.get(pn)
        tight = opts.tight_masks.get(pn)
        parts.append(
            PartReference(
                part_number=pn,
                image=_pinned(folder, pn, img),
                ignore_mask=_pinned(folder, f"{pn}_ignore", _grey(read_image(ignore))) if ignore else None,
                tight_mask=_pinned(folder, f"{pn}_tight", _grey(read_image(tight))) if tight else None,
            )
        )
    return tuple(parts)


Expect = Literal["PASS", "FAIL"]


def _golden(tmp: Path, ref: U8, limits: CompareLimits) -> list[tuple[str, Expect]]:
    """A changed copy of the reference (PASS) and one with a drawn defect (FAIL)."""
    folder = tmp / "golden"
    folder.mkdir()
    changed = apply_change(
        ref,
        LineChange(
            dx_px=3.0, dy_px=-2.0, rotation_deg=0.3, gain=1.05, offset=-5.0, noise_sigma=1.0, jpeg_quality=95, seed=7
        ),
    )
    defect = changed.copy()
    h, w = ref.shape
    size = max(6, int(np.ceil(np.sqrt(limits.mass_at * 4))) + 4)
    centre = (w // 3, h // 3)
    dark, bright = int(np.percentile(ref, 2)), int(np.percentile(ref, 98))
    local = int(ref[centre[1], centre[0]])
    cv2.circle(defect, centre, size, bright if local - dark < bright - local else dark, -1)
    _png(folder / "00_good.png", changed)
    _png(folder / "01_defect.png", defect)
    return [("golden/00_good.png", "PASS"), ("golden/01_defect.png", "FAIL")]


def _dataset_sha256(train: list[Sample]) -> str:
    """sha256 over every train pair's template, test image and box file, in id order."""
    digest = hashlib.sha256()
    for s in sorted(train, key=lambda x: x.stem):
        for path in (s.reference_path, s.path, s.path.with_name(f"{s.stem}.txt")):
            if path is not None and path.is_file():
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _train_pairs(data: Path) -> tuple[DatasetIndex, list[Sample]]:
    index = open_dataset(data)
    if index.layout != "pairs":
        raise DatasetError(f"{data}: the reference task needs template/test pairs, found the {index.layout} layout")
    if index.issues:
        path, why = index.issues[0]
        raise DatasetError(
            f"{data}: {len(index.issues)} problem(s) in the pairs, first {path}: {why} "
            "(run `vinspect dataset validate`)"
        )
    train = index.train_samples()
    if not train:
        raise DatasetError(f"{data}: no train pairs")
    return index, train


@dataclass(frozen=True, slots=True)
class _Learnt:
    index: DatasetIndex
    train: list[Sample]
    limits: CompareLimits
    stats: dict[str, float]
    codes: RegionCodes | None
    n_good: int
    n_defect: int
    started: float


def _stated_rates(stats: dict[str, float], cfg: ReferenceTrainConfig) -> OperatingPoint:
    """The rates a station can expect, with intervals, as an anomaly bundle states them.

    A reference verdict is pass/fail per part (no score band), so the operating point is built
    from the train parts' outcomes at the chosen limits: a rejected good part or a caught defect
    scores 1, the others 0, against the bundle's ``fail_at = review_at = FAIL_AT`` (0.5). The parts
    are the line-changed train pairs the limits were chosen on, so the rates are in-sample
    (optimistic); the source in the warnings says so. The false-reject ceiling is the search's own
    ``max_false_reject_rate``.
    """
    n_good, good_rej = int(stats["good_parts"]), int(stats["good_rejected"])
    n_defect, escaped = int(stats["defect_parts"]), int(stats["defects_escaped"])
    good = [1.0] * good_rej + [0.0] * (n_good - good_rej)
    defect = [0.0] * escaped + [1.0] * (n_defect - escaped)
    return operating_point(
        good,
        defect,
        fail_at=FAIL_AT,
        review_at=FAIL_AT,
        frr_ceiling=cfg.max_false_reject_rate,
        source="train (line-changed)",
    )


def _manifest(
    learnt: _Learnt, *, text: str, refs: dict[str, U8], golden: list[tuple[str, Expect]], opts: ReferenceBundleOptions
) -> ModelManifest:
    cfg, stats, limits = opts.config, learnt.stats, learnt.limits
    evidence = CalibrationEvidence(
        target=f"train pairs after line-like changes: max box recall at <= {cfg.max_false_boxes_per_image} "
        f"false boxes/image, false-reject rate <= {cfg.max_false_reject_rate}",
        n_good=learnt.n_good,
        n_defect=learnt.n_defect,
        false_reject_rate=stats["false_reject_rate"],
        escape_rate=stats["escape_rate"],
        operating_point=_stated_rates(stats, cfg),
    )
    info = TrainingInfo(
        dataset_root=str(learnt.index.root),
        dataset_layout=learnt.index.layout,
        dataset_sha256=_dataset_sha256(learnt.train),
        n_train_good=learnt.n_good,
        n_train_defect=learnt.n_defect,
        config={"task": "reference", "search": dataclasses.asdict(cfg)},
        metrics={f"train_{k}": float(v) for k, v in stats.items()},
        duration_s=time.perf_counter() - learnt.started,
    )
    h, w = next(iter(refs.values())).shape
    return ModelManifest(
        name=opts.name,
        version=opts.version or time.strftime("%Y%m%d-%H%M%S", time.gmtime()),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        task="reference",
        input=InputSpec(channels=1, model_size_px=(h, w)),
        labels=learnt.codes.labels if learnt.codes else (),
        thresholds=Thresholds(fail_at=FAIL_AT, review_at=FAIL_AT, map_at=limits.contrast_at, evidence=evidence),
        golden_samples=tuple(GoldenSample(file=f, expect=e, score=0.0) for f, e in golden),
        training=info,
    )


def _self_check(tmp: Path, manifest: ModelManifest, *, part_number: str) -> ModelManifest:
    """Judge the golden samples through the runtime path (load_bundle + judge_image); record scores."""
    from vinspect.models.runtime import load_bundle
    from vinspect.pipeline.gating import policy_for
    from vinspect.pipeline.judge import judge_image

    bundle = load_bundle(tmp, part_number=part_number)
    scored = []
    for sample in manifest.golden_samples:
        j = judge_image(read_image(tmp / sample.file), bundle=bundle, policy=policy_for(bundle))
        if j.prediction is None or j.decision.verdict.value != sample.expect:
            raise ModelError(
                f"golden self-check: {sample.file} expected {sample.expect}, got "
                f"{j.decision.verdict.value} {j.decision.reasons} ({j.error})"
            )
        scored.append(sample.model_copy(update={"score": j.prediction.score}))
    return manifest.model_copy(update={"golden_samples": tuple(scored)})


def _companion(tmp: Path, bundle_dir: Path) -> AnomalyCompanion:
    """Copy a verified anomaly bundle's graph into ``tmp/anomaly`` with its own limits."""
    from vinspect.models.runtime import load_bundle

    anomaly = load_bundle(bundle_dir)  # refuses edited or incompatible bundles
    m = anomaly.manifest
    if m.task == "reference":
        raise ModelError(f"{bundle_dir}: --with-anomaly takes an anomaly bundle, not a reference bundle")
    (tmp / "anomaly").mkdir()
    shutil.copyfile(bundle_dir / MODEL_NAME, tmp / "anomaly" / MODEL_NAME)
    return AnomalyCompanion(
        file=f"anomaly/{MODEL_NAME}",
        sha256=m.sha256,
        channels=m.input.channels,
        fail_at=m.thresholds.fail_at,
        map_at=m.thresholds.map_at,
        source=f"{m.name}@{m.version}",
    )


def _write(learnt: _Learnt, tmp: Path, opts: ReferenceBundleOptions) -> ModelManifest:
    refs = _references(opts, {s.stem: s.reference_path for s in learnt.train if s.reference_path is not None})
    companion = _companion(tmp, opts.anomaly_bundle) if opts.anomaly_bundle else None
    spec = ReferenceSpec(parts=_parts(tmp, refs, opts), limits=learnt.limits, codes=learnt.codes, anomaly=companion)
    text = json.dumps(spec.model_dump(mode="json"), indent=1, sort_keys=True) + "\n"
    (tmp / REFERENCE_NAME).write_text(text, encoding="utf-8")
    golden = _golden(tmp, next(iter(refs.values())), learnt.limits) if len(refs) == 1 else []
    manifest = _manifest(learnt, text=text, refs=refs, golden=golden, opts=opts)
    write_manifest(tmp, manifest)
    manifest = _self_check(tmp, manifest, part_number=spec.parts[0].part_number)
    write_manifest(tmp, manifest)
    return manifest


def train_reference_bundle(data: Path, out: Path, *, opts: ReferenceBundleOptions | None = None) -> ModelManifest:
    """Learn limits on ``data``'s train pairs and write a reference bundle to ``out``.

    Raises:
        DatasetError: not a pairs dataset, problems in it, no train pairs.
        ModelError: bad output folder or part number, or the bundle fails its own golden check.
    """
    opts = opts or ReferenceBundleOptions()
    started = time.perf_counter()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelError(f"{out}: output exists and is not an empty folder; choose a new bundle folder")
    index, train = _train_pairs(data)
    cases = cases_of(train, seed=opts.config.seed)
    limits, stats = search_limits(cases, opts.config)
    n_good = sum(1 for c in cases if not c.boxes)
    learnt = _Learnt(index, train, limits, stats, learn_codes(cases, limits), n_good, len(cases) - n_good, started)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        manifest = _write(learnt, tmp, opts)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("reference bundle written", extra={"out": str(out), "mass_at": limits.mass_at})
    return manifest
