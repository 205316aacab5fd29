"""Issue 12g: ``photometric: auto`` (equalised input for good-only bundles, raw grey levels with
labels) and the exposure guard that keeps a wholly darker or flatter part from passing once the
input's grey level and contrast are equalised away."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.train


def _texture_frame(tiny_dataset: Path, manifest: Any, bundle: Path) -> np.ndarray:
    """A validation good the bundle passes: its golden PASS sample, as the graph's [H, W, 1] input."""
    from training.data import to_hwc
    from vinspect.dataset import read_image

    golden = next(g for g in manifest.golden_samples if g.expect == "PASS")
    return to_hwc(read_image(bundle / golden.file), channels=1)


@pytest.fixture(scope="module")
def good_only_pair(tiny_dataset: Path, small_config: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The same good-only bundle trained twice from the default (auto) config: with the exposure
    guard (the default) and without it."""
    from training import train_bundle

    root = tmp_path_factory.mktemp("guard")
    out = {}
    for guard in (True, False):
        config = small_config.model_copy(update={"exposure_guard": guard})
        path = root / ("guarded" if guard else "unguarded")
        manifest = train_bundle(
            tiny_dataset, path, name="g", version="1", good_only=True, config=config, progress=False
        )
        out[guard] = (path, manifest)
    return out


def test_auto_resolves_by_whether_labels_are_trained() -> None:
    from training import TrainConfig
    from training.fit import resolve_photometric

    assert TrainConfig().photometric == "auto"
    good_only, text = resolve_photometric(TrainConfig(), labelled=False)
    assert good_only.photometric == "equalize"
    assert text.startswith("histogram-equalised (good-only default") and "exposure guard on" in text
    labelled, text = resolve_photometric(TrainConfig(), labelled=True)
    assert labelled.photometric == "none" and text.startswith("raw grey levels (labelled default")
    for mode in ("none", "equalize"):  # an explicit choice is kept, labels or not
        for has_labels in (False, True):
            kept, text = resolve_photometric(TrainConfig(photometric=mode), labelled=has_labels)
            assert kept.photometric == mode and "set in the training config" in text


def test_good_only_manifest_records_the_equalised_input_and_the_guard(good_only_pair: Any) -> None:
    _, manifest = good_only_pair[True]
    config, metrics = manifest.training.config, manifest.training.metrics
    assert config["photometric"] == "equalize" and config["photometric_requested"] == "auto"
    assert config["input"].startswith("histogram-equalised (good-only default; labelled bundles keep raw grey levels)")
    assert config["exposure_guard"] is True
    # the learnt ranges, in grey levels, hold every training good of the tiny set (mean 120 +- 15)
    assert 60 < metrics["exposure_mean_grey_min"] < 105 < 135 < metrics["exposure_mean_grey_max"] < 200
    assert 0 < metrics["exposure_std_grey_min"] < metrics["exposure_std_grey_max"]
    assert 0 < metrics["exposure_relative_contrast_min"] < metrics["exposure_relative_contrast_max"]
    for key in ("score", "anomaly_map"):
        assert 0.0 <= metrics[f"parity_max_abs_diff_{key}"] <= 1e-3
    assert "exposure_mean_grey_min" not in good_only_pair[False][1].training.metrics
    assert good_only_pair[False][1].training.config["input"].endswith("exposure guard off")


def test_labelled_bundle_keeps_raw_grey_levels_and_the_guard(tiny_dataset: Path, labelled_bundle: Any) -> None:
    """With labels, auto keeps raw grey levels; the guard is on too (raw grey levels do not fail a
    wholly darker part by themselves) and lifts the fused score of a darker good to 1.0."""
    from training.export import ort_session

    path, manifest = labelled_bundle
    config = manifest.training.config
    assert manifest.task == "anomaly+classifier"
    assert config["photometric"] == "none" and config["photometric_requested"] == "auto"
    assert config["input"].startswith("raw grey levels (labelled default") and "exposure guard on" in config["input"]
    assert manifest.training.metrics["exposure_mean_grey_min"] < manifest.training.metrics["exposure_mean_grey_max"]
    frame = _texture_frame(tiny_dataset, manifest, path)
    session = ort_session(path / "model.onnx")
    assert float(session.run(None, {"image": frame})[0][0]) < manifest.thresholds.review_at
    darker = (frame.astype(np.int16) - 55).clip(0, 255).astype(np.uint8)
    score, amap, _ = session.run(None, {"image": darker})
    assert float(score[0]) == 1.0 and np.all(amap == 1.0)
    # the station names the guard, not the defect-type head's most probable class
    from vinspect.models.runtime import load_bundle
    from vinspect.pipeline.gating import policy_for
    from vinspect.pipeline.judge import judge_image
    from vinspect.types import Verdict

    bundle = load_bundle(path)
    judged = judge_image(darker[:, :, 0], bundle=bundle, policy=policy_for(bundle))
    assert judged.decision.verdict is Verdict.FAIL and judged.prediction is not None
    assert judged.prediction.defect_code == "exposure_out_of_range"
    assert judge_image(frame[:, :, 0], bundle=bundle, policy=policy_for(bundle)).decision.verdict is Verdict.PASS


def test_guard_leaves_the_calibration_unchanged(good_only_pair: Any) -> None:
    """The guard is 0 on every validation good, so the thresholds and the validation scores are
    those of the same graph without it."""
    (_, guarded), (_, plain) = good_only_pair[True], good_only_pair[False]
    assert guarded.thresholds.fail_at == plain.thresholds.fail_at
    assert guarded.thresholds.review_at == plain.thresholds.review_at
    assert guarded.thresholds.evidence.scores_good == plain.thresholds.evidence.scores_good


def test_darker_or_flatter_part_fails_only_with_the_guard(tiny_dataset: Path, good_only_pair: Any) -> None:
    """The same texture, globally darker (an offset that keeps every grey level distinct, so the
    equalised frame is the original's) or with half the contrast, lies outside every training
    good: the guarded graph scores it 1.0 with a flat map (ORT and torch agree), the same graph
    without the guard passes it."""
    import onnxruntime as ort

    from training.export import ort_session

    path, manifest = good_only_pair[True]
    plain_path, plain = good_only_pair[False]
    frame = _texture_frame(tiny_dataset, manifest, path)
    mean = float(frame.mean())
    darker = (frame.astype(np.int16) - 55).clip(0, 255).astype(np.uint8)
    assert frame.min() >= 55 and len(np.unique(darker)) == len(np.unique(frame))
    flatter = np.clip(np.rint(mean + 0.5 * (frame - mean)), 0, 255).astype(np.uint8)
    guarded, unguarded = ort_session(path / "model.onnx"), ort_session(plain_path / "model.onnx")
    assert isinstance(guarded, ort.InferenceSession)
    original = float(unguarded.run(None, {"image": frame})[0][0])
    assert original < plain.thresholds.review_at  # a PASS
    assert float(guarded.run(None, {"image": frame})[0][0]) == pytest.approx(original, abs=1e-6)
    for changed in (darker, flatter):
        score, amap, _ = guarded.run(None, {"image": changed})
        assert float(score[0]) == 1.0 >= manifest.thresholds.fail_at
        assert np.all(amap == 1.0)  # no local defect: the whole frame is unlike the goods
        assert float(unguarded.run(None, {"image": changed})[0][0]) < plain.thresholds.review_at  # PASS without it
    assert float(unguarded.run(None, {"image": darker})[0][0]) == pytest.approx(original, abs=1e-6)


def test_station_fails_the_darker_part_with_a_whole_frame_region(tiny_dataset: Path, good_only_pair: Any) -> None:
    """Through the runtime (load_bundle, judge_image): FAIL on the score, one region covering the
    whole frame at 1.0 and the defect code exposure_out_of_range, the NCR's evidence of a part
    unlike the good ones everywhere."""
    from vinspect.models.runtime import load_bundle
    from vinspect.pipeline.decide import DecisionPolicy
    from vinspect.pipeline.judge import judge_image
    from vinspect.types import Verdict

    path, manifest = good_only_pair[True]
    frame = _texture_frame(tiny_dataset, manifest, path)[:, :, 0]
    darker = (frame.astype(np.int16) - 55).clip(0, 255).astype(np.uint8)
    bundle = load_bundle(path)
    t = manifest.thresholds
    policy = DecisionPolicy(fail_at=t.fail_at, review_at=t.review_at)
    assert judge_image(frame, bundle=bundle, policy=policy).decision.verdict is Verdict.PASS
    judged = judge_image(darker, bundle=bundle, policy=policy)
    assert judged.decision.verdict is Verdict.FAIL and judged.decision.reasons == ("score",)
    assert judged.prediction is not None
    (region,) = judged.prediction.regions
    assert region.score == 1.0 and region.box_xyxy == (0, 0, frame.shape[1], frame.shape[0])
    assert judged.prediction.defect_code == "exposure_out_of_range" == region.label


def test_guard_module_matches_its_ranges_and_refuses_bad_input() -> None:
    import torch

    from training.exposure import fit_exposure_guard
    from vinspect.errors import ModelError

    rng = np.random.default_rng(3)
    goods = [np.clip(rng.normal(100 + 5 * i, 20, (40, 50)), 0, 255).astype(np.uint8) for i in range(8)]
    guard = fit_exposure_guard(goods, margin=1.0)
    assert all(float(guard(torch.from_numpy(g))) == 0.0 for g in goods)
    ranges = guard.ranges()
    assert ranges["exposure_mean_grey_min"] < min(float(g.mean()) for g in goods)
    assert float(guard(torch.from_numpy(np.full((40, 50), 100, np.uint8)))) == 1.0  # flat: no contrast
    assert float(guard(torch.from_numpy((goods[0] // 3).astype(np.uint8)))) == 1.0  # a third of the light
    with pytest.raises(ModelError, match="good images"):
        fit_exposure_guard([], margin=1.0)
    with pytest.raises(ModelError, match="margin"):
        fit_exposure_guard(goods, margin=-1.0)


@pytest.mark.filterwarnings("ignore:.*legacy TorchScript.*:DeprecationWarning")  # as training.export does
@pytest.mark.parametrize(("height", "width", "mean", "sd"), [(240, 289, 250, 0.7), (2048, 2448, 230, 3.0)])
def test_guard_statistics_in_onnx_runtime_match_float64_on_bright_flat_frames(
    height: int, width: int, mean: float, sd: float, tmp_path: Path
) -> None:
    """Issue 12m: ONNX Runtime's whole-frame float32 sums drift on large frames and E[x^2] - mean^2 loses a
    low-contrast frame's std; the exported statistics must match float64 on both."""
    import io

    import torch
    from torch import nn

    from training.exposure import frame_statistics
    from vinspect.models.runtime import create_session

    class Statistics(nn.Module):
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return frame_statistics(image)

    rng = np.random.default_rng(12)
    frame = np.clip(rng.normal(mean, sd, (height, width, 1)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    torch.onnx.export(
        Statistics(),
        (torch.from_numpy(frame),),
        buf,
        input_names=["image"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"image": {0: "h", 1: "w"}},
    )
    model = tmp_path / "statistics.onnx"
    model.write_bytes(buf.getvalue())
    got = create_session(model).run(None, {"image": frame})[0]
    pixels = frame.astype(np.float64)
    assert float(np.expm1(got[0])) == pytest.approx(pixels.mean(), abs=0.01)
    assert float(np.expm1(got[1])) == pytest.approx(pixels.std(), rel=0.01)
