"""train_bundle: ONNX export with parity, calibration, golden samples, manifest (issue 2, model part)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from PIL import Image

from tests.training.conftest import make_dataset
from vinspect.errors import DatasetError, ModelError
from vinspect.models.manifest import ModelManifest, read_manifest

pytestmark = pytest.mark.train


def _session(bundle: Path) -> Any:
    from training.export import ort_session

    return ort_session(bundle / "model.onnx")


def test_train_bundle_manifest_round_trip(labelled_bundle: tuple[Path, ModelManifest]) -> None:
    out, manifest = labelled_bundle
    assert read_manifest(out) == manifest
    assert manifest.sha256 == hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    assert manifest.task == "anomaly+classifier"
    assert manifest.labels == ("spot",)
    assert manifest.input.channels == 1
    assert manifest.thresholds.review_at <= manifest.thresholds.fail_at
    assert manifest.training.n_train_good == 30
    assert manifest.training.n_train_defect == 6
    assert len(manifest.training.dataset_sha256) == 64
    assert manifest.training.config["image_size_px"] == 64
    point = manifest.thresholds.evidence.operating_point
    assert point is not None and point.frr_ceiling == 0.05
    assert point.escape is not None and point.escape.n == manifest.thresholds.evidence.n_defect
    assert point.false_reject.low <= point.false_reject.rate <= point.false_reject.high
    assert len(manifest.thresholds.evidence.scores_good) == manifest.thresholds.evidence.n_good


def test_train_bundle_parity_is_recorded_within_tolerance(labelled_bundle: tuple[Path, ModelManifest]) -> None:
    _, manifest = labelled_bundle
    for name in ("score", "anomaly_map", "defect_probs"):
        assert 0.0 <= manifest.training.metrics[f"parity_max_abs_diff_{name}"] <= 1e-3


def test_exported_graph_follows_the_contract(labelled_bundle: tuple[Path, ModelManifest]) -> None:
    out, manifest = labelled_bundle
    model = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    session = _session(out)
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type) == ("image", "tensor(uint8)")
    maps = set()
    for h, w in ((40, 50), (96, 96), (301, 157)):
        score, amap, probs = session.run(None, {"image": np.full((h, w, 1), 120, np.uint8)})
        assert score.shape == (1,) and score.dtype == np.float32
        assert probs.shape == (len(manifest.labels),) and probs.dtype == np.float32
        assert np.isfinite(score).all() and np.isfinite(amap).all()
        maps.add(amap.shape)
    assert len(maps) == 1  # the map is on the model grid, whatever the frame size


def test_golden_samples_reproduce_their_verdicts(labelled_bundle: tuple[Path, ModelManifest]) -> None:
    out, manifest = labelled_bundle
    assert {g.expect for g in manifest.golden_samples} == {"PASS", "FAIL"}
    session = _session(out)
    for golden in manifest.golden_samples:
        pixels = np.asarray(Image.open(out / golden.file))
        score = float(session.run(None, {"image": pixels[:, :, None]})[0][0])
        assert score == pytest.approx(golden.score, abs=1e-5)
        if golden.expect == "PASS":
            assert score < manifest.thresholds.review_at
        else:
            assert score >= manifest.thresholds.fail_at


def test_good_only_bundle_has_no_classifier(tiny_dataset: Path, small_config: Any, tmp_path: Path) -> None:
    from training import train_bundle

    manifest = train_bundle(tiny_dataset, tmp_path / "b", good_only=True, config=small_config, progress=False)
    assert manifest.task == "anomaly"
    assert manifest.labels == ()
    assert manifest.training.n_train_defect == 0
    assert "no validation defects" in manifest.thresholds.evidence.target
    point = manifest.thresholds.evidence.operating_point
    assert point is not None and point.escape is None  # unknown, never 0 %
    assert point.warnings[0].startswith("escape rate unknown")
    _, _, probs = _session(tmp_path / "b").run(None, {"image": np.zeros((64, 80, 1), np.uint8)})
    assert probs.shape == (0,)


def test_bundle_refused_when_parity_breaks(
    tiny_dataset: Path, small_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graph that drifts from torch (here: one weight perturbed after export) is never written."""
    import training.bundle
    from training import train_bundle
    from training.export import export_onnx

    def perturbed_export(graph: Any, path: Path, **kwargs: Any) -> None:
        export_onnx(graph, path, **kwargs)
        model = onnx.load(str(path))
        weight = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        values = onnx.numpy_helper.to_array(weight) * 1.5
        weight.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), weight.name))
        onnx.save(model, str(path))

    monkeypatch.setattr(training.bundle, "export_onnx", perturbed_export)
    out = tmp_path / "bundle"
    with pytest.raises(ModelError, match="disagree beyond"):
        train_bundle(tiny_dataset, out, good_only=True, config=small_config, progress=False)
    assert not out.exists()
    assert not list(tmp_path.glob(".bundle.partial-*"))


@pytest.mark.parametrize("problem", ["non_empty_out", "bad_name"])
def test_train_bundle_refuses_bad_output(tiny_dataset: Path, small_config: Any, tmp_path: Path, problem: str) -> None:
    from training import train_bundle

    out = tmp_path / "b"
    name = "model"
    if problem == "non_empty_out":
        out.mkdir()
        (out / "keep.txt").write_text("x")
    else:
        name = "Bad Name!"
    with pytest.raises(ModelError):
        train_bundle(tiny_dataset, out, name=name, config=small_config, progress=False)


def test_train_bundle_needs_enough_good_images(tmp_path: Path, small_config: Any) -> None:
    from training import train_bundle

    data = make_dataset(tmp_path / "few", n_good=4, n_defect=2)
    with pytest.raises(DatasetError, match="4 good training images"):
        train_bundle(data, tmp_path / "b", config=small_config, progress=False)


def test_train_command_states_the_rates_and_unknown_escapes(
    tiny_dataset: Path, small_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from vinspect.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(small_config.model_dump(mode="json")))
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_dataset),
                "--out",
                str(tmp_path / "b"),
                "--good-only",
                "--config",
                str(config),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "good parts rejected" in out and "95% intervals" in out
    assert "defective parts passed: unknown (no defective validation parts)" in out
    assert "input: histogram-equalised (good-only default; labelled bundles keep raw grey levels)" in out
    assert "WARNING: escape rate unknown" in out
    assert "escape rate 0.0%" not in out


def _lifted(a: float, at: float) -> float:
    return a * 0.5 / at if a < at else 0.5 + (a - at) * 0.5 / (1.0 - at)


def _scratch(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A defect kind nobody labelled: a dark diagonal scratch (the labels only know bright spots)."""
    out = image.copy()
    y0, x0 = int(rng.integers(10, 40)), int(rng.integers(10, 40))
    for k in range(40):
        out[y0 + k // 2 : y0 + k // 2 + 3, x0 + k] = 10
    return out


def test_labelled_bundle_fails_every_part_its_anomaly_path_fails(
    labelled_bundle: tuple[Path, ModelManifest], tiny_dataset: Path, small_config: Any
) -> None:
    from tests.training.conftest import _texture
    from training.data import holdout_split, load_images, to_hwc
    from vinspect.dataset import open_dataset

    out, manifest = labelled_bundle
    assert manifest.schema_version == 2 and manifest.fusion is not None
    assert manifest.training.config["fusion"] == "open_set"
    assert manifest.thresholds.fail_at == manifest.fusion.fused_fail_at == 0.5
    assert manifest.thresholds.evidence.fixed_fail_at == 0.5
    assert manifest.fusion.anomaly_frr <= small_config.open_set_anomaly_frr
    assert manifest.fusion.defect_frr <= small_config.open_set_defect_frr
    rng = np.random.default_rng(11)
    unlabelled = [_scratch(_texture(rng, 96, 96), rng) for _ in range(8)]
    split = holdout_split(open_dataset(tiny_dataset).train_samples(), val_percent=small_config.val_percent)
    session = _session(out)
    anomaly_fails = 0
    for img in [*unlabelled, *load_images(split.val, progress=False)]:
        score, amap, _ = session.run(None, {"image": to_hwc(img, channels=1)})
        a = float(amap.max())
        assert float(score[0]) >= _lifted(a, manifest.fusion.anomaly_at) - 1e-5
        if a >= manifest.fusion.anomaly_at:
            anomaly_fails += 1
            assert float(score[0]) >= manifest.thresholds.fail_at
    assert anomaly_fails >= 4  # the check above is not vacuous: the anomaly path fails the scratches


def test_max_fusion_is_still_trained_on_request(tiny_dataset: Path, small_config: Any, tmp_path: Path) -> None:
    from training import train_bundle

    config = small_config.model_copy(update={"fusion": "max"})
    manifest = train_bundle(tiny_dataset, tmp_path / "m", name="m", version="1", config=config, progress=False)
    assert manifest.fusion is None and manifest.thresholds.evidence.fixed_fail_at is None


def test_train_command_states_each_signals_own_threshold(
    tiny_dataset: Path, small_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from vinspect.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(small_config.model_dump(mode="json")))
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_dataset),
                "--out",
                str(tmp_path / "b"),
                "--config",
                str(config),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "open-set fusion: the anomaly path fails a part at anomaly score" in out
    assert "labelled defects only add FAILs" in out
    assert "fail_at=0.5 " in out
    assert "input: raw grey levels (labelled default" in out
