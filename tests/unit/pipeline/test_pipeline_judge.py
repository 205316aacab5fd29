"""judge_image: preprocess, ORT, postprocess, decide; failures become FAIL (issue 2)."""

from __future__ import annotations

import numpy as np
import pytest

from vinspect.errors import ModelError
from vinspect.models.manifest import InputSpec
from vinspect.models.runtime import load_bundle
from vinspect.pipeline.gating import PolicyOverrides, policy_for
from vinspect.pipeline.judge import judge_image
from vinspect.pipeline.preprocess import to_model_input
from vinspect.types import Verdict


@pytest.mark.parametrize(("level", "verdict"), [(50, Verdict.PASS), (140, Verdict.REVIEW), (200, Verdict.FAIL)])
def test_judge_image_verdict_follows_score(tiny_bundle, level: int, verdict: Verdict) -> None:
    bundle = load_bundle(tiny_bundle)
    j = judge_image(np.full((20, 20), level, np.uint8), bundle=bundle, policy=policy_for(bundle))
    assert j.decision.verdict is verdict
    assert j.prediction is not None
    assert j.prediction.score == pytest.approx(level / 255, abs=1e-6)
    assert j.latency_ms > 0


def test_judge_image_region_and_defect_code(tiny_bundle_factory) -> None:
    bundle = load_bundle(tiny_bundle_factory(labels=("spot", "scratch"), fail_at=0.05, review_at=0.04))
    image = np.zeros((40, 40), np.uint8)
    image[10:20, 5:15] = 255
    j = judge_image(image, bundle=bundle, policy=policy_for(bundle))
    assert j.decision.verdict is Verdict.FAIL
    assert j.prediction is not None
    assert j.prediction.defect_code == "scratch"
    assert j.prediction.regions[0].box_xyxy == (5, 10, 15, 20)


@pytest.mark.parametrize(
    ("review_at", "level", "verdict", "code"),
    [
        (0.9, 153, Verdict.PASS, None),  # the bundle's review_at (0.5) would name a defect on a PASS
        (0.3, 102, Verdict.REVIEW, "scratch"),  # ... and none on a part the station sends to review
    ],
)
def test_judge_image_defect_code_follows_the_station_review_at(
    tiny_bundle_factory, review_at: float, level: int, verdict: Verdict, code: str | None
) -> None:
    bundle = load_bundle(tiny_bundle_factory(labels=("spot", "scratch"), fail_at=0.95, review_at=0.5))
    policy = policy_for(bundle, PolicyOverrides(review_at=review_at))
    j = judge_image(np.full((20, 20), level, np.uint8), bundle=bundle, policy=policy)
    assert j.decision.verdict is verdict
    assert j.prediction is not None
    assert j.prediction.defect_code == code


def test_judge_image_nan_model_fails(tiny_bundle_factory) -> None:
    bundle = load_bundle(tiny_bundle_factory(poison="nan"))
    j = judge_image(np.zeros((8, 8), np.uint8), bundle=bundle, policy=policy_for(bundle))
    assert (j.decision.verdict, j.decision.reasons) == (Verdict.FAIL, ("non_finite",))


def test_judge_image_error_is_fail_with_reason(tiny_bundle) -> None:
    bundle = load_bundle(tiny_bundle)
    j = judge_image(np.zeros((0, 5), np.uint8), bundle=bundle, policy=policy_for(bundle))
    assert j.decision.verdict is Verdict.FAIL
    assert j.decision.reasons == ("error:ModelError",)
    assert j.prediction is None
    assert j.error


def test_judge_image_late_is_fail(tiny_bundle) -> None:
    bundle = load_bundle(tiny_bundle)
    ticks = iter(range(0, 10_000, 100))
    j = judge_image(
        np.zeros((8, 8), np.uint8), bundle=bundle, policy=policy_for(bundle), deadline_ns=150, clock=lambda: next(ticks)
    )
    assert j.decision.verdict is Verdict.FAIL
    assert "late" in j.decision.reasons


SPEC1 = InputSpec(channels=1, model_size_px=(32, 32), max_side_px=100)
SPEC3 = InputSpec(channels=3, model_size_px=(32, 32))


@pytest.mark.parametrize(
    ("image", "spec", "fmt", "shape", "first"),
    [
        (np.full((4, 5), 7, np.uint8), SPEC1, "Mono8", (4, 5, 1), 7),
        (np.full((4, 5), 7, np.uint8), SPEC3, "Mono8", (4, 5, 3), 7),
        (np.full((4, 5, 3), 9, np.uint8), SPEC1, "RGB8", (4, 5, 1), 9),
        (np.full((4, 5, 4), 9, np.uint8), SPEC3, "RGBa8", (4, 5, 3), 9),
        (np.full((4, 5), 4095, np.uint16), SPEC1, "Mono12", (4, 5, 1), 255),
        (np.full((4, 5), 256, np.uint16), SPEC1, "Mono16", (4, 5, 1), 1),
    ],
)
def test_to_model_input_adapts_channels_and_depth(image, spec, fmt, shape, first) -> None:
    out = to_model_input(image, spec=spec, pixel_format=fmt)
    assert out.shape == shape
    assert out.dtype == np.uint8
    assert out.flat[0] == first


@pytest.mark.parametrize(
    ("image", "needle"),
    [
        (np.zeros((200, 10), np.uint8), "exceeds"),
        (np.zeros((4, 4, 2), np.uint8), "channels"),
        (np.zeros((4,), np.uint8), "shape"),
        (np.zeros((4, 4), np.float32), "dtype"),
    ],
)
def test_to_model_input_refuses_bad_images(image, needle: str) -> None:
    with pytest.raises(ModelError, match=needle):
        to_model_input(image, spec=SPEC1)
