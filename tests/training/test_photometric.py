"""Photometric normalisation in the graph (issue 12f): ``photometric: equalize`` equalises each
frame's grey-level histogram before the resize, in torch and in the exported ONNX graph alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from vinspect.errors import ConfigError

pytestmark = pytest.mark.train


@pytest.mark.parametrize("shape", [(289, 240), (123, 286), (17, 5)])
def test_equalize_matches_opencv(shape: tuple[int, int]) -> None:
    import torch

    from training.data import EqualizeHist

    rng = np.random.default_rng(sum(shape))
    image = np.clip(rng.normal(90, 25, size=shape), 0, 255).astype(np.uint8)
    out = EqualizeHist()(torch.from_numpy(image)[None, None].float())[0, 0].numpy()
    np.testing.assert_array_equal(out, cv2.equalizeHist(image))


def test_equalized_preprocess_ignores_the_lighting() -> None:
    """A darker, lower-contrast capture of the same part reaches the trunk unchanged (the gain and
    offset keep the grey levels' order); without equalisation it does not."""
    import torch

    from training.data import Preprocess

    rng = np.random.default_rng(1)
    dark = rng.integers(30, 95, size=(120, 100, 1)).astype(np.uint8)
    bright = dark * 2  # same part, twice the gain: the grey levels keep their order
    outs = {}
    for mode in ("none", "equalize"):
        pre = Preprocess(size_px=64, channels=1, photometric=mode)
        outs[mode] = [pre(torch.from_numpy(x)) for x in (bright, dark)]
    assert torch.equal(outs["equalize"][0], outs["equalize"][1])
    assert float((outs["none"][0] - outs["none"][1]).abs().max()) > 0.5


def test_unknown_photometric_mode_is_refused(tmp_path: Path) -> None:
    from training import load_config
    from training.data import Preprocess

    path = tmp_path / "c.yaml"
    path.write_text("photometric: clahe\n")
    with pytest.raises(ConfigError, match="photometric"):
        load_config(path)
    with pytest.raises(ValueError, match="photometric"):
        Preprocess(size_px=64, channels=1, photometric="clahe")


def test_equalized_good_only_bundle_scores_a_relit_part_alike(
    tiny_dataset: Path, small_config: Any, tmp_path: Path
) -> None:
    """The exported graph equalises too: parity holds, and a good frame captured with more gain
    and a darker offset scores as the original in the equalising bundle but not in the raw-grey one
    (the exposure guard is off here: it would fail the relit frame if it left the goods' range,
    see test_exposure_guard.py)."""
    from training import train_bundle
    from training.data import to_hwc
    from training.export import ort_session
    from vinspect.dataset import read_image

    image = to_hwc(read_image(sorted((tiny_dataset / "good").iterdir())[0]), channels=1)
    relit = np.clip(np.rint(image.astype(np.float64) * 1.25 - 45), 0, 255).astype(np.uint8)
    assert len(np.unique(relit)) == len(np.unique(image))  # no two grey levels merged
    scores = {}
    for mode in ("none", "equalize"):
        config = small_config.model_copy(update={"photometric": mode, "exposure_guard": False})
        manifest = train_bundle(tiny_dataset, tmp_path / mode, good_only=True, config=config, progress=False)
        assert manifest.training.config["photometric"] == mode
        assert 0.0 <= manifest.training.metrics["parity_max_abs_diff_score"] <= 1e-3
        assert 0.0 <= manifest.training.metrics["parity_max_abs_diff_anomaly_map"] <= 1e-3
        session = ort_session(tmp_path / mode / "model.onnx")
        scores[mode] = [float(session.run(None, {"image": x})[0][0]) for x in (image, relit)]
        if mode == "none":  # why the exposure guard is on for raw grey levels too: they pass a wholly darker part
            golden = next(g for g in manifest.golden_samples if g.expect == "PASS")
            frame = to_hwc(read_image(tmp_path / mode / golden.file), channels=1)
            darker = (frame.astype(np.int16) - 55).clip(0, 255).astype(np.uint8)
            assert frame.min() >= 55
            assert darker.mean() < min(read_image(p).mean() for p in (tiny_dataset / "good").iterdir())
            assert float(session.run(None, {"image": darker})[0][0]) < manifest.thresholds.review_at
        for h, w in ((40, 50), (301, 157)):
            score, amap, _ = session.run(None, {"image": np.full((h, w, 1), 120, np.uint8)})
            assert np.isfinite(score).all() and np.isfinite(amap).all()
    a, b = scores["equalize"]
    assert abs(a - b) < 1e-3, scores
    n_a, n_b = scores["none"]
    assert abs(n_a - n_b) > 0.05, scores
