"""The open-set fusion module: FAIL exactly when either signal passes its own threshold (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest

from vinspect.errors import ModelError

pytestmark = pytest.mark.train


def test_fused_score_fails_exactly_when_either_signal_passes_its_own_threshold() -> None:
    import torch

    from training.fusion import FUSED_FAIL_AT, OpenSetFusion

    fusion = OpenSetFusion()
    fusion.set_thresholds(anomaly_at=0.62, defect_at=0.9)
    grid = torch.linspace(0.0, 0.999, 181)
    a, d = torch.meshgrid(grid, grid, indexing="ij")
    fused = fusion(a.reshape(-1), d.reshape(-1))
    expected = (a.reshape(-1) >= 0.62) | (d.reshape(-1) >= 0.9)
    assert torch.equal(fused >= FUSED_FAIL_AT, expected)
    # increasing in each signal, and the defect signal never lowers the score the anomaly path gives
    assert (fused.reshape(181, 181).diff(dim=0) >= 0).all() and (fused.reshape(181, 181).diff(dim=1) >= 0).all()
    alone = fusion(a.reshape(-1), torch.zeros_like(a.reshape(-1)))
    assert (fused >= alone).all()
    assert float(fusion(torch.tensor([1.0]), torch.tensor([1.0]))[0]) == pytest.approx(1.0)


@pytest.mark.parametrize("value", [0.0, 1.0, float("nan"), -0.2])
def test_thresholds_outside_the_open_interval_are_refused(value: float) -> None:
    from training.fusion import OpenSetFusion

    with pytest.raises(ModelError, match="inside \\(0, 1\\)"):
        OpenSetFusion().set_thresholds(anomaly_at=value, defect_at=0.5)


def test_lift_maps_the_threshold_to_the_fail_point() -> None:
    import torch

    from training.fusion import lift

    at = torch.tensor([0.3])
    out = lift(torch.tensor([0.0, 0.15, 0.3, 0.65, 1.0]), at).numpy()
    assert np.allclose(out, [0.0, 0.25, 0.5, 0.75, 1.0])
