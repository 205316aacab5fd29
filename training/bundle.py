"""``train_bundle``: dataset folder -> model bundle (model.onnx + manifest.json + golden/*.png).

Steps: index the dataset (train split only for magnetic-tile / MVTec, every image for class
folders), hold out a deterministic validation part, fit the graph, export it to ONNX, check
ORT-vs-torch parity, score the validation part *through ONNX Runtime* (so thresholds are in the
exact units the station sees), calibrate, pick golden samples, write the manifest. The bundle is
assembled in a temporary sibling folder and renamed into place only when everything passed: a
failed run never leaves a half-written bundle at ``out``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image as PILImage
from tqdm import tqdm

from training.anomaly import bank_metrics
from training.config import TrainConfig
from training.data import Split, channels_of, dataset_sha256, holdout_split, load_images, to_hwc
from training.device import describe, resolve_device
from training.export import InspectionGraph, check_parity, export_onnx, ort_session, parity_images, run_ort
from training.fit import FitImages, fit_graph, resolve_photometric
from training.fusion import FUSED_FAIL_AT
from training.quantize import Int8Gate, Int8Refused, Int8Report, judge_int8, quantize_int8
from vinspect.dataset import DatasetIndex, Sample, open_dataset, read_image
from vinspect.dataset.from_reviews import DATASET_FILE
from vinspect.dataset.labels_manifest import read_labels_manifest
from vinspect.errors import DatasetError, ModelError
from vinspect.files import sha256_file
from vinspect.models.calibration import CalibrationTarget, anomaly_cap, calibrate, summarize
from vinspect.models.manifest import (
    MODEL_NAME,
    FusionSpec,
    GoldenSample,
    InputSpec,
    ModelManifest,
    Thresholds,
    TrainingInfo,
    write_manifest,
)

__all__ = ["ValidationScores", "train_bundle"]

logger = logging.getLogger(__name__)
Image = npt.NDArray[np.uint8]
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
GOLDEN_MARGIN = 0.05  # score units: golden goods sit this far below review_at, defects above fail_at


@dataclass(frozen=True, slots=True)
class ValidationScores:
    """ORT outputs on the validation part, aligned with ``samples``."""

    samples: list[Sample]
    images: list[Image]
    scores: npt.NDArray[np.float64]
    maps: list[npt.NDArray[np.float32]]
    probs: list[npt.NDArray[np.float32]]

    def good_mask(self) -> npt.NDArray[np.bool_]:
        return np.array([s.is_good for s in self.samples], dtype=bool)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelError(f"{out}: output exists and is not an empty folder; choose a new bundle folder")


def _training_samples(index: DatasetIndex, *, good_only: bool, min_good: int) -> list[Sample]:
    samples = [s for s in index.train_samples() if s.is_good or not good_only]
    n_good = sum(s.is_good for s in samples)
    if n_good < min_good:
        raise DatasetError(
            f"{index.root}: {n_good} good training images ({index.layout} layout); at least {min_good} needed"
        )
    return samples


def _defect_masks(samples: list[Sample], images: list[Image]) -> list[Image | None]:
    """Each defect sample's pixel mask (None where it has none).

    Raises:
        DatasetError: a mask is not the size of its image.
    """
    out: list[Image | None] = []
    for s, img in zip(samples, images, strict=True):
        if s.mask_path is None:
            out.append(None)
            continue
        mask = read_image(s.mask_path)
        if mask.shape[:2] != img.shape[:2]:
            raise DatasetError(
                f"{s.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {s.path.name} is "
                f"{img.shape[1]}x{img.shape[0]}"
            )
        out.append(mask)
    return out


def _fit_images(split: Split, *, progress: bool) -> tuple[FitImages, list[Image]]:
    good = load_images([s for s in split.fit if s.is_good], progress=progress, desc="good images")
    defect_samples = [s for s in split.fit if not s.is_good]
    defect = load_images(defect_samples, progress=progress, desc="defect images")
    masks = _defect_masks(defect_samples, defect)
    val = load_images(split.val, progress=progress, desc="validation images")
    labels = tuple(sorted({s.label for s in defect_samples}))
    channels = channels_of([*good, *defect, *val])
    data = FitImages(
        channels=channels,
        good=good,
        defect=defect,
        defect_targets=[labels.index(s.label) for s in defect_samples],
        labels=labels,
        defect_masks=masks,
        val_good=[img for img, s in zip(val, split.val, strict=True) if s.is_good],
    )
    return data, val


def _score_validation(
    model: Path, split: Split, *, val: list[Image], channels: int, progress: bool
) -> ValidationScores:
    session = ort_session(model)
    outs = [
        run_ort(session, to_hwc(img, channels=channels))
        for img in tqdm(val, desc="validation (ORT)", disable=not progress, leave=False)
    ]
    return ValidationScores(
        samples=list(split.val),
        images=val,
        scores=np.array([float(o[0][0]) for o in outs]),
        maps=[o[1] for o in outs],
        probs=[o[2] for o in outs],
    )


def _metrics(vs: ValidationScores, thresholds: Thresholds, *, labels: tuple[str, ...]) -> dict[str, float]:
    good = vs.good_mask()
    metrics = {"val_n_good": float(good.sum()), "val_n_defect": float((~good).sum())}
    if (~good).any():
        summary = summarize(vs.scores[good], vs.scores[~good], threshold=thresholds.fail_at)
        metrics.update({f"val_{k}": v for k, v in summary.items()})
        caught = [i for i in np.flatnonzero(~good) if vs.scores[i] >= thresholds.fail_at]
        if labels and caught:
            hits = [labels[int(np.argmax(vs.probs[i]))] == vs.samples[i].label for i in caught]
            metrics["val_defect_type_accuracy"] = float(np.mean(hits))
    return metrics


def _golden(
    vs: ValidationScores, thresholds: Thresholds, *, per_kind: int, channels: int, folder: Path
) -> tuple[GoldenSample, ...]:
    good = vs.good_mask()
    ok_good = [i for i in np.argsort(vs.scores) if good[i] and vs.scores[i] <= thresholds.review_at - GOLDEN_MARGIN]
    ok_def = [i for i in np.argsort(-vs.scores) if not good[i] and vs.scores[i] >= thresholds.fail_at + GOLDEN_MARGIN]
    picks = [ok_good[int(j)] for j in np.linspace(0, len(ok_good) - 1, min(per_kind, len(ok_good)))] if ok_good else []
    by_label: dict[str, int] = {}
    for i in ok_def:  # highest-scoring defect of each class first, so several kinds are represented
        by_label.setdefault(vs.samples[i].label, int(i))
    defects = (list(by_label.values()) + [int(i) for i in ok_def if int(i) not in by_label.values()])[:per_kind]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n, i in enumerate(sorted(set(picks)) + defects):
        s = vs.samples[i]
        fname = f"{n:02d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', s.label)}_{re.sub(r'[^A-Za-z0-9_.-]', '_', s.stem)}.png"
        pixels = to_hwc(vs.images[i], channels=channels)
        PILImage.fromarray(pixels[:, :, 0] if channels == 1 else pixels).save(folder / fname)
        out.append(
            GoldenSample(file=f"golden/{fname}", expect="PASS" if s.is_good else "FAIL", score=float(vs.scores[i]))
        )
    return tuple(out)


def _calibrate(vs: ValidationScores, cfg: TrainConfig, *, labelled: bool, fusion: FusionSpec | None) -> Thresholds:
    good = vs.good_mask()
    target = CalibrationTarget(
        frr_target=cfg.frr_target,
        margin_fraction=cfg.margin_fraction,
        margin_cap=cfg.margin_cap,
        review_rate=cfg.review_rate,
        frr_ceiling=cfg.frr_ceiling,
    )
    good_maps = np.concatenate([vs.maps[i].ravel() for i in np.flatnonzero(good)])
    # the anomaly image score is the map's maximum (MapHead); with labels fused by one threshold, cap
    # fail_at at the anomaly path's good-only threshold so labels never make an unlabelled kind harder
    # to catch (open-set fusion already FAILs at each signal's own threshold: fail_at stays there)
    cap = (
        anomaly_cap([float(vs.maps[i].max()) for i in np.flatnonzero(good)], target=target)
        if labelled and fusion is None
        else None
    )
    return calibrate(
        vs.scores[good],
        vs.scores[~good],
        target=target,
        good_map_values=good_maps,
        cap=cap,
        fixed_fail_at=fusion.fused_fail_at if fusion else None,
    )


def _quantize(
    model: Path,
    run: _Run,
    vs: ValidationScores,
    thresholds: Thresholds,
    *,
    checked: list[Image],
    labelled: bool,
    fusion: FusionSpec | None,
    progress: bool,
) -> tuple[ValidationScores, Thresholds, dict[str, float]]:
    """Replace ``model`` by its int8 form, judged against the float graph (training/quantize.py).

    Returns the int8 graph's validation scores, its own thresholds and the gate's figures.
    """
    cfg, channels = run.config, run.data.channels
    float_model = model.with_name("model.float.onnx")
    model.rename(float_model)
    try:
        calibration = [to_hwc(img, channels=channels) for img in run.data.good[: cfg.quantize_calibration_images]]
        nodes = quantize_int8(
            float_model, model, images=calibration, ops=cfg.quantize_ops, per_channel=cfg.quantize_per_channel
        )
        q_vs = _score_validation(model, run.split, val=run.val, channels=channels, progress=progress)
        q_thresholds = _calibrate(q_vs, cfg, labelled=labelled, fusion=fusion)
        report = _judge(float_model, model, run, vs, q_vs, (thresholds, q_thresholds), checked=checked, nodes=nodes)
    except BaseException:
        model.unlink(missing_ok=True)
        float_model.rename(model)  # the float graph stays in place: `auto` ships it, `int8` writes no bundle
        raise
    float_model.unlink()
    return q_vs, q_thresholds, report.metrics()


def _judge(
    float_model: Path,
    model: Path,
    run: _Run,
    vs: ValidationScores,
    q_vs: ValidationScores,
    thresholds: tuple[Thresholds, Thresholds],
    *,
    checked: list[Image],
    nodes: int,
) -> Int8Report:
    cfg = run.config
    return judge_int8(
        float_model,
        model,
        images=checked,
        val_float=(vs.scores, vs.maps),
        val_int8=(q_vs.scores, q_vs.maps),
        thresholds=thresholds,
        gate=Int8Gate(
            score_atol=cfg.int8_score_atol,
            max_verdict_flips=cfg.int8_max_verdict_flips,
            map_atol=cfg.int8_map_atol,
            map_peak_cells=cfg.int8_map_peak_cells,
        ),
        nodes=nodes,
        val_names=[str(s.path) for s in vs.samples],
    )


@dataclass(frozen=True, slots=True)
class _Shipped:
    """Which graph the bundle ships, and why (recorded in ``training.config``)."""

    graph: str  # "int8" or "none" (float)
    note: str | None


def _ship(
    mode: str,
    vs: ValidationScores,
    thresholds: Thresholds,
    *,
    labelled: bool,
    quantize: Callable[[], tuple[ValidationScores, Thresholds, dict[str, float]]],
) -> tuple[ValidationScores, Thresholds, dict[str, float], _Shipped]:
    """Apply ``config.quantize`` (``mode``): ``int8`` ships int8 or raises; ``auto`` tries int8 on
    labelled bundles only. ``quantize`` is :func:`_quantize` bound to the bundle being written."""
    if mode == "none":
        return vs, thresholds, {}, _Shipped("none", None)
    if mode == "auto" and not labelled:
        note = (
            "quantize: auto keeps good-only bundles float (the int8 graph of the magnetic-tile "
            "good-only model changed 10 of its 249 test verdicts)"
        )
        return vs, thresholds, {}, _Shipped("none", note)

    def int8() -> tuple[ValidationScores, Thresholds, dict[str, float], _Shipped]:
        started = time.perf_counter()
        try:
            q = quantize()
        finally:
            logger.info("int8 quantisation and gate: %.1f s", time.perf_counter() - started)
        return *q, _Shipped("int8", None)

    if mode == "int8":
        return int8()
    try:
        return int8()
    except Int8Refused as exc:
        note = f"int8 refused by the parity gate ({exc.reason}); shipped the float graph"
    except ModelError as exc:
        note = f"int8 quantisation failed ({exc}); shipped the float graph"
    logger.warning("quantize: auto: %s", note)
    return vs, thresholds, {}, _Shipped("none", note)


def _dataset_manifest_sha256(root: Path) -> str | None:
    """The ``dataset_sha256`` a built dataset states in its ``dataset.json`` (from-reviews), if any."""
    path = root / DATASET_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("dataset_sha256")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable dataset manifest ({exc})") from exc
    return str(value) if value else None


def _git_sha() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


@dataclass(frozen=True, slots=True)
class _Run:
    """What a training run knows when it writes the bundle."""

    index: DatasetIndex
    samples: list[Sample]
    split: Split
    data: FitImages
    val: list[Image]
    config: TrainConfig
    good_only: bool
    started: float
    parent: str | None = None
    trained_by: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    photometric_requested: str = "auto"  # the config's value before resolve_photometric
    input_text: str = ""  # what the input is and why (manifest and training summary)


def _write(graph: InspectionGraph, run: _Run, *, tmp: Path, name: str, version: str, progress: bool) -> ModelManifest:
    cfg, channels = run.config, run.data.channels
    model = tmp / MODEL_NAME
    export_onnx(graph, model, channels=channels, opset=cfg.opset)
    checked = parity_images(run.val, channels=channels, count=cfg.parity_images)
    parity = check_parity(graph, model, images=checked, atol=cfg.parity_atol)
    vs = _score_validation(model, run.split, val=run.val, channels=channels, progress=progress)
    labelled = graph.classifier is not None
    fusion = _fusion_spec(graph)
    thresholds = _calibrate(vs, cfg, labelled=labelled, fusion=fusion)
    vs, thresholds, int8, shipped = _ship(
        cfg.quantize,
        vs,
        thresholds,
        labelled=labelled,
        quantize=functools.partial(
            _quantize, model, run, vs, thresholds, checked=checked, labelled=labelled, fusion=fusion, progress=progress
        ),
    )
    metrics = _metrics(vs, thresholds, labels=run.data.labels)
    metrics.update({f"parity_max_abs_diff_{k}": v for k, v in parity.items()})
    metrics.update(int8)
    metrics.update(bank_metrics(graph.scorer))
    if graph.exposure is not None:
        metrics.update(graph.exposure.ranges())
    golden = _golden(vs, thresholds, per_kind=cfg.golden_per_kind, channels=channels, folder=tmp / "golden")
    info = TrainingInfo(
        dataset_root=str(run.index.root),
        dataset_layout=run.index.layout,
        dataset_sha256=dataset_sha256(run.index.root, run.samples),
        n_train_good=sum(s.is_good for s in run.samples),
        n_train_defect=sum(not s.is_good for s in run.samples),
        config={
            **cfg.model_dump(mode="json"),
            "good_only": run.good_only,
            "device": describe(run.device),
            "photometric_requested": run.photometric_requested,
            "input": run.input_text,
            "quantize_shipped": shipped.graph,
            "quantize_note": shipped.note,
        },
        metrics=metrics,
        duration_s=time.perf_counter() - run.started,
        git_sha=_git_sha(),
        labels_manifest_sha256=_labels_manifest_sha256(run.index.root),
        trained_by=run.trained_by,
        parent_version=run.parent,
        dataset_manifest_sha256=_dataset_manifest_sha256(run.index.root),
    )
    manifest = ModelManifest(
        name=name,
        version=version,
        sha256=sha256_file(model),
        task="anomaly+classifier" if graph.classifier is not None else "anomaly",
        input=InputSpec(channels=1 if channels == 1 else 3, model_size_px=(cfg.image_size_px, cfg.image_size_px)),
        labels=run.data.labels,
        thresholds=thresholds,
        fusion=fusion,
        golden_samples=golden,
        training=info,
    )
    write_manifest(tmp, manifest)
    return manifest


def _fusion_spec(graph: InspectionGraph) -> FusionSpec | None:
    """The open-set fusion's thresholds as the manifest states them (None: no labels, or one threshold)."""
    fusion = graph.open_set
    if fusion is None or graph.classifier is None:
        return None
    return FusionSpec(
        anomaly_at=float(fusion.anomaly_at[0]),  # type: ignore[index]
        defect_at=float(fusion.defect_at[0]),  # type: ignore[index]
        anomaly_frr=fusion.anomaly_frr,
        defect_frr=fusion.defect_frr,
        fused_fail_at=FUSED_FAIL_AT,
        mask_at=float(fusion.mask_at[0]) if graph.mask_head is not None else None,  # type: ignore[index]
        mask_frr=fusion.mask_frr if graph.mask_head is not None else None,
    )


def _labels_manifest_sha256(root: Path) -> str | None:
    """The hash of the dataset's labels manifest, so the bundle names its training labels."""
    manifest = read_labels_manifest(root)
    return manifest.sha256 if manifest is not None else None


def train_bundle(
    data: Path,
    out: Path,
    *,
    name: str = "model",
    version: str | None = None,
    good_only: bool = False,
    config: TrainConfig | None = None,
    progress: bool = True,
    parent: str | None = None,
    trained_by: str | None = None,
    device: str = "auto",
) -> ModelManifest:
    """Train a model on the dataset folder ``data`` and write its bundle to ``out``.

    Args:
        data: dataset folder (MVTec AD, magnetic-tile or class folders; see vinspect.dataset).
        out: bundle folder to create (must not exist, or be empty).
        name: model name (lower-case letters, digits, ``_.-``).
        version: bundle version; default a UTC timestamp ``YYYYMMDD-HHMMSS``.
        good_only: ignore labelled defects (anomaly model only).
        config: training configuration; default :class:`TrainConfig()`.
        progress: show tqdm progress bars.
        parent: the version this one is retrained from (recorded as ``training.parent_version``).
        trained_by: who trains it (recorded; that person may not sign its promotion).
        device: ``auto`` (a CUDA GPU when PyTorch sees one, else the CPU), ``cpu`` or ``cuda``
            (:mod:`training.device`); export and the parity check always run on the CPU.

    Returns:
        The manifest written to ``out/manifest.json``.

    Raises:
        DatasetError: unreadable dataset, too few good images, undecodable image.
        ModelError: bad name or output folder, weights missing, export or parity failure, or
            ``cuda`` requested without a CUDA device.
    """
    started = time.perf_counter()
    chosen = resolve_device(device)  # before any data is read: a missing GPU is named at once
    config = config or TrainConfig()
    if not _NAME.match(name):
        raise ModelError(f"model name {name!r}: use 1-64 lower-case letters, digits, '_', '.', '-'")
    version = version or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    _check_out(out)
    index = open_dataset(data)
    samples = _training_samples(index, good_only=good_only, min_good=config.min_good_images)
    split = holdout_split(samples, val_percent=config.val_percent)
    fit_data, val = _fit_images(split, progress=progress)
    requested = config.photometric
    config, input_text = resolve_photometric(config, labelled=bool(fit_data.labels))
    run = _Run(
        index,
        samples,
        split,
        fit_data,
        val,
        config,
        good_only,
        started,
        parent,
        trained_by,
        chosen,
        photometric_requested=requested,
        input_text=input_text,
    )
    manifest = _fit_and_write(run, out, name=name, version=version, progress=progress)
    logger.info(
        "bundle written", extra={"out": str(out), "task": manifest.task, "fail_at": manifest.thresholds.fail_at}
    )
    return manifest


def _fit_and_write(run: _Run, out: Path, *, name: str, version: str, progress: bool) -> ModelManifest:
    """Fit, then assemble the bundle in a temporary sibling folder and rename it to ``out``."""
    config = run.config
    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        graph = fit_graph(run.data, config=config, progress=progress, device=run.device)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        manifest = _write(graph, run, tmp=tmp, name=name, version=version, progress=progress)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest
