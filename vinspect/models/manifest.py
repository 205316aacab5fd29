"""The bundle manifest: one schema shared by the trainer (writer) and the runtime (reader).

A bundle is a directory::

    model.onnx        the whole model: raw uint8 pixels in, score / anomaly map / defect probs out
    manifest.json     this schema
    golden/*.png      golden samples the station self-tests with at start-up

A ``reference`` bundle (golden-reference inspection) carries ``reference.json`` and
``reference/*.png`` instead of ``model.onnx`` (see :mod:`vinspect.models.reference_spec`); its
``sha256`` pins ``reference.json``, which pins every golden image and mask.

The ONNX graph contract (checked at load by ``vinspect.models.runtime``):

* input ``image``: uint8, shape ``[H, W, C]`` with ``C = input.channels`` (1 or 3) and any H, W
  (resize, normalisation and scoring live inside the graph);
* output ``score``: float32 ``[1]``, higher means more anomalous, in the units of ``thresholds``;
* output ``anomaly_map``: float32 ``[h, w]`` in the same units, at the model's map resolution;
* output ``defect_probs``: float32 ``[K]`` over ``labels`` (K = 0 for a good-only model).

Schema version 2 added ``fusion`` (the open-set fusion's per-signal thresholds) and
``CalibrationEvidence.fixed_fail_at``; version-1 manifests still load unchanged.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from vinspect.errors import ModelError
from vinspect.files import write_atomically
from vinspect.strict import Strict

__all__ = [
    "MANIFEST_NAME",
    "MODEL_NAME",
    "SCHEMA_VERSION",
    "CalibrationEvidence",
    "FusionSpec",
    "GoldenSample",
    "InputSpec",
    "ModelManifest",
    "OperatingPoint",
    "RateEstimate",
    "Thresholds",
    "TrainingInfo",
    "model_file",
    "read_manifest",
    "write_manifest",
]

SCHEMA_VERSION: Literal[1, 2] = 2
MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.onnx"
REFERENCE_TASK_FILE = "reference.json"


class InputSpec(Strict):
    """What the graph's ``image`` input takes."""

    channels: Literal[1, 3]
    dtype: Literal["uint8"] = "uint8"
    layout: Literal["HWC"] = "HWC"
    model_size_px: tuple[int, int] = Field(description="(height, width) the graph resizes to")
    max_side_px: int = Field(default=4096, gt=0, description="larger frames are refused")


class RateEstimate(Strict):
    """A rate measured on validation parts: ``events`` of ``n``, with an exact confidence interval."""

    events: int = Field(ge=0)
    n: int = Field(ge=1)
    rate: float = Field(ge=0.0, le=1.0)
    low: float = Field(ge=0.0, le=1.0, description="Clopper-Pearson lower end")
    high: float = Field(ge=0.0, le=1.0, description="Clopper-Pearson upper end")


class OperatingPoint(Strict):
    """What the thresholds are expected to do on the line, as measured on the validation parts.

    ``escape`` (defects that PASS, i.e. score below ``review_at``) and ``defect_review`` are None
    when there were no defective validation parts: the escape rate is then *unknown*, not 0.
    ``warnings`` are plain-words statements of targets the bundle cannot meet; activating a
    bundle with warnings needs a signed acceptance of the stated rates.
    """

    confidence: float = Field(gt=0.0, lt=1.0)
    frr_ceiling: float | None = Field(ge=0.0, le=1.0, description="None: no ceiling (zero escapes at any cost)")
    false_reject: RateEstimate = Field(description="good parts that FAIL (score >= fail_at)")
    review: RateEstimate = Field(description="good parts sent to REVIEW (review_at <= score < fail_at)")
    escape: RateEstimate | None = Field(description="defective parts that PASS (score < review_at)")
    defect_review: RateEstimate | None = Field(description="defective parts sent to REVIEW")
    frr_at_zero_escape: RateEstimate | None = Field(
        description="good parts rejected at the lowest threshold that fails every validation defect"
    )
    warnings: tuple[str, ...] = ()


class CalibrationEvidence(Strict):
    """Why the thresholds are where they are (validation data the trainer held out).

    ``operating_point``, ``scores_good`` and ``scores_defect`` are absent in bundles trained before
    they were recorded; ``scores_*`` (the validation scores, ascending) let a station re-derive the
    operating point for its own false-reject ceiling.
    """

    target: str
    n_good: int = Field(ge=0)
    n_defect: int = Field(ge=0)
    false_reject_rate: float = Field(ge=0.0, le=1.0, description="validation goods that FAIL")
    escape_rate: float = Field(
        ge=0.0,
        le=1.0,
        description="validation defects that PASS (0 when there were none: "
        "read operating_point.escape, None = unknown)",
    )
    review_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    operating_point: OperatingPoint | None = None
    scores_good: tuple[float, ...] = ()
    scores_defect: tuple[float, ...] = ()
    fixed_fail_at: float | None = Field(
        default=None,
        description="open-set fusion: the fused score's FAIL point, where each signal's own threshold "
        "lands; a station's frr_ceiling re-derives review_at around it",
    )


class Thresholds(Strict):
    """Operating thresholds in score units: FAIL at ``fail_at``, REVIEW from ``review_at``."""

    fail_at: float
    review_at: float
    map_at: float = Field(description="anomaly-map level that outlines defect regions")
    evidence: CalibrationEvidence

    @field_validator("review_at")
    @classmethod
    def _review_not_above_fail(cls, value: float, info: Any) -> float:
        fail_at = info.data.get("fail_at")
        if fail_at is not None and value > fail_at:
            raise ValueError(f"review_at ({value}) must not exceed fail_at ({fail_at})")
        return value


class FusionSpec(Strict):
    """How a labelled graph fuses its two signals (``open_set``: each FAILs above its own threshold).

    The graph maps the anomaly score so that ``anomaly_at`` lands on ``fused_fail_at`` and P(not good)
    so that ``defect_at`` does, then takes the maximum; the manifest states the thresholds so the
    summary, ``eval`` and a reviewer can see what each path alone would fail.
    """

    rule: Literal["open_set"] = "open_set"
    anomaly_at: float = Field(gt=0.0, lt=1.0, description="anomaly image score at which the anomaly path FAILs")
    defect_at: float = Field(gt=0.0, lt=1.0, description="P(not good) at which the defect signal FAILs")
    anomaly_frr: float = Field(ge=0.0, le=1.0, description="validation goods the anomaly path fails at anomaly_at")
    defect_frr: float = Field(ge=0.0, le=1.0, description="validation goods the defect signal fails at defect_at")
    fused_fail_at: float = Field(gt=0.0, lt=1.0)
    mask_at: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="mask head's map maximum at which it FAILs (None: no mask head)"
    )
    mask_frr: float | None = Field(default=None, ge=0.0, le=1.0, description="validation goods the mask head fails")


class GoldenSample(Strict):
    """A bundle-carried image with the verdict the model must give it at every start-up."""

    file: str = Field(pattern=r"^golden/[A-Za-z0-9_.-]+\.png$")
    expect: Literal["PASS", "FAIL"]
    score: float


class TrainingInfo(Strict):
    """Provenance: what data and configuration produced the model, and how it scored."""

    dataset_root: str
    dataset_layout: str
    dataset_sha256: str
    n_train_good: int
    n_train_defect: int
    config: dict[str, Any]
    metrics: dict[str, float]
    duration_s: float
    git_sha: str | None = None
    # SHA-256 of the dataset's labels manifest (labels.json of `vinspect dataset export-labels`), if it has one.
    labels_manifest_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    trained_by: str | None = Field(default=None, description="who trained it (login); may not sign its promotion")
    parent_version: str | None = Field(default=None, description="the version it was retrained from")
    dataset_manifest_sha256: str | None = Field(
        default=None, description="dataset_sha256 of the dataset.json a built dataset carries (dataset from-reviews)"
    )


class ModelManifest(Strict):
    """Everything the runtime, the registry and the UI need to know about a bundle."""

    schema_version: Literal[1, 2] = SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of model.onnx")
    task: Literal["anomaly", "anomaly+classifier", "reference"]
    input: InputSpec
    labels: tuple[str, ...] = Field(description="defect classes, in defect_probs order")
    thresholds: Thresholds
    fusion: FusionSpec | None = Field(default=None, description="None: good-only, or fused by one threshold (v1)")
    golden_samples: tuple[GoldenSample, ...] = ()
    training: TrainingInfo
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def model_file(manifest: ModelManifest) -> str:
    """The bundle file ``manifest.sha256`` pins: ``reference.json`` or ``model.onnx``."""
    return REFERENCE_TASK_FILE if manifest.task == "reference" else MODEL_NAME


def read_manifest(bundle_dir: Path) -> ModelManifest:
    """Read and validate ``bundle_dir/manifest.json``.

    Raises:
        ModelError: the file is missing, not JSON, or does not match the schema (the message
            names the file and every field that is wrong).
    """
    path = bundle_dir / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: manifest missing (is {bundle_dir} a model bundle?)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read manifest ({exc})") from exc
    try:
        return ModelManifest.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise ModelError(f"{path}: invalid manifest: {problems}") from exc


def write_manifest(bundle_dir: Path, manifest: ModelManifest) -> Path:
    """Write ``manifest.json`` atomically (:func:`vinspect.files.write_atomically`, not fsynced: a
    bundle is installed, and made durable, by the registry) and return its path."""
    path = bundle_dir / MANIFEST_NAME
    write_atomically(path, json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n", durable=False)
    return path
