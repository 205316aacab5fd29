"""Training shows progress for its slow silent step, the memory-bank coreset (issue 12, item 4)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.train


def test_coreset_selection_shows_a_progress_bar_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from training.anomaly import greedy_coreset

    points = torch.randn(400, 16, generator=torch.Generator().manual_seed(0))
    quiet = greedy_coreset(points, size=50, projection_dim=8, seed=0)
    assert "memory bank (coreset)" not in capsys.readouterr().err
    shown = greedy_coreset(points, size=50, projection_dim=8, seed=0, progress=True)
    assert "memory bank (coreset)" in capsys.readouterr().err
    assert torch.equal(quiet, shown)
