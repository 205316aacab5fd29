"""Open-set calibration: fail_at stays where each signal's own threshold lands (issue 12, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vinspect.errors import ModelError
from vinspect.models.calibration import (
    CalibrationTarget,
    calibrate,
    false_reject_rate,
    path_threshold,
    thresholds_for_ceiling,
)
from vinspect.models.manifest import read_manifest


def _scores(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    good = rng.uniform(0.05, 0.45, 100)
    defect = np.concatenate([rng.uniform(0.6, 0.99, 30), [0.30, 0.35]])  # two labelled defects look good
    return good, defect


def test_path_threshold_comes_from_goods_alone() -> None:
    good = np.linspace(0.0, 0.99, 100)
    t = path_threshold(good, frr=0.04)
    assert false_reject_rate(good, t) <= 0.04
    assert false_reject_rate(good, t) == pytest.approx(0.04)
    assert t > good[-5]  # strictly above the highest good that must pass
    with pytest.raises(ModelError, match="at least one validation good"):
        path_threshold([], frr=0.01)


def test_fixed_fail_at_is_kept_whatever_the_labelled_defects_say() -> None:
    good, defect = _scores()
    free = calibrate(good, defect)  # one threshold on the fused score: follows the labelled defects
    fixed = calibrate(good, defect, fixed_fail_at=0.5)
    assert free.fail_at != pytest.approx(0.5)
    assert fixed.fail_at == 0.5
    # two validation defects score below the FAIL point: REVIEW opens at the zero-escape point
    assert fixed.review_at <= 0.30
    point = fixed.evidence.operating_point
    assert point is not None and point.escape is not None and point.escape.events == 0
    assert fixed.evidence.fixed_fail_at == 0.5
    assert "open-set fusion" in fixed.evidence.target and "zero-escape point" in fixed.evidence.target


def test_fixed_fail_at_without_defects_uses_the_review_rate() -> None:
    good, _ = _scores()
    t = calibrate(good, [], target=CalibrationTarget(review_rate=0.05), fixed_fail_at=0.5)
    assert t.fail_at == 0.5
    assert float(np.mean(good >= t.review_at)) <= 0.05
    assert t.evidence.operating_point is not None and t.evidence.operating_point.escape is None


def test_fixed_fail_at_moves_up_only_past_the_false_reject_ceiling() -> None:
    good = np.linspace(0.3, 0.7, 100)  # 50 % of goods at or above 0.5
    t = calibrate(good, [0.9], target=CalibrationTarget(frr_ceiling=0.05), fixed_fail_at=0.5)
    assert t.fail_at > 0.5
    assert false_reject_rate(good, t.fail_at) <= 0.05
    assert "above the 5.0% ceiling" in t.evidence.target


def test_a_station_ceiling_keeps_the_open_set_fail_point() -> None:
    good, defect = _scores()
    stated = calibrate(good, defect, fixed_fail_at=0.5)
    wider = thresholds_for_ceiling(stated.evidence, frr_ceiling=0.20, config={"review_rate": 0.05})
    assert wider.fail_at == 0.5
    assert wider.evidence.fixed_fail_at == 0.5


def test_version_1_manifests_still_load(tmp_path: Path) -> None:
    good, defect = _scores()
    thresholds = calibrate(good, defect)
    manifest = {
        "schema_version": 1,
        "name": "old",
        "version": "1",
        "sha256": "0" * 64,
        "task": "anomaly+classifier",
        "input": {"channels": 1, "model_size_px": [224, 224]},
        "labels": ["spot"],
        "thresholds": json.loads(thresholds.model_dump_json(exclude={"evidence": {"fixed_fail_at"}})),
        "training": {
            "dataset_root": "d",
            "dataset_layout": "folders",
            "dataset_sha256": "0" * 64,
            "n_train_good": 1,
            "n_train_defect": 1,
            "config": {"fusion": "max"},
            "metrics": {},
            "duration_s": 1.0,
        },
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    loaded = read_manifest(tmp_path)
    assert loaded.schema_version == 1 and loaded.fusion is None
    assert loaded.thresholds.evidence.fixed_fail_at is None
