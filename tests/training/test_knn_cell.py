"""anomaly_method knn_cell: the position-conditioned kNN (issue 12j)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vinspect.errors import ConfigError

pytestmark = pytest.mark.train

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


def _brute_force(bank: Any, query: Any) -> Any:
    """Per-cell nearest neighbour by explicit Euclidean distances, cell by cell."""
    import torch

    _, _, h, w = bank.shape
    out = torch.empty(h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            out[i, j] = (bank[:, :, i, j].double() - query[0, :, i, j].double()).norm(dim=1).min()
    return out


def test_cell_scorer_equals_a_brute_force_per_cell_search() -> None:
    import torch

    from training.anomaly import KnnScorer, fit_cell_knn

    gen = torch.Generator().manual_seed(3)
    bank = torch.randn(25, 12, 4, 5, generator=gen)
    query = torch.randn(1, 12, 4, 5, generator=gen)
    scorer = fit_cell_knn(bank, bank_size=None, projection_dim=8, seed=0)
    assert tuple(scorer.bank_t.shape) == (20, 12, 25)
    got = scorer(query)
    torch.testing.assert_close(got.double(), _brute_force(bank, query), atol=1e-4, rtol=1e-5)
    # same units as the global kNN: with one cell the two searches are the same search
    one_cell = bank[:, :, :1, :1]
    glob = KnnScorer(one_cell.permute(0, 2, 3, 1).reshape(-1, 12))
    torch.testing.assert_close(
        fit_cell_knn(one_cell, bank_size=None, projection_dim=8, seed=0)(query[:, :, :1, :1]), glob(query[:, :, :1, :1])
    )
    # a fit good's own patch is at distance 0 from its own cell's bank, but not from another cell's
    assert float(scorer(bank[7:8]).max()) < 1e-2  # float32 cancellation in |x|^2 - 2xb + |b|^2, as KnnScorer
    shifted = torch.roll(bank[7:8], shifts=1, dims=3)
    assert float(scorer(shifted).max()) > 0.5


def test_cell_bank_size_keeps_a_coreset_per_cell() -> None:
    import torch

    from training.anomaly import bank_metrics, fit_cell_knn

    gen = torch.Generator().manual_seed(5)
    bank = torch.randn(40, 8, 3, 3, generator=gen)
    scorer = fit_cell_knn(bank, bank_size=6, projection_dim=8, seed=0)
    assert scorer.per_cell == 6 and scorer.cells == 9
    assert bank_metrics(scorer) == {"anomaly_bank_patches": 54.0, "anomaly_bank_per_cell": 6.0}
    by_cell = bank.permute(2, 3, 0, 1).reshape(9, 40, 8)
    for c in range(9):  # every kept patch is one of that cell's own goods
        kept = scorer.bank_t[c].t()
        assert bool(
            (torch.cdist(kept, by_cell[c], compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values < 1e-5).all()
        )
    query = torch.randn(1, 8, 3, 3, generator=gen)
    # a subset can only be farther than the full bank
    assert bool((scorer(query) >= fit_cell_knn(bank, bank_size=None, projection_dim=8, seed=0)(query) - 1e-5).all())


def test_knn_cell_config_is_accepted_and_documented(tmp_path: Path) -> None:
    from training import TrainConfig, load_config

    cfg = load_config(CONFIGS / "knn_cell.yaml")
    assert cfg.anomaly_method == "knn_cell" and cfg.cell_bank_size == 64
    assert cfg.model_copy(update={"anomaly_method": "knn", "cell_bank_size": None}) == TrainConfig()
    assert "knn_cell" in (CONFIGS / "default.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("anomaly_method: knn_cell\ncell_bank_size: 0\n")
    with pytest.raises(ConfigError, match="cell_bank_size"):
        load_config(bad)


def test_knn_cell_bundle_trains_exports_and_fails_a_defect(
    tiny_dataset: Path, small_config: Any, tmp_path: Path
) -> None:
    from tests.training.conftest import _spot, _texture
    from training import train_bundle
    from training.data import holdout_split, load_images, to_hwc
    from training.export import ort_session
    from vinspect.dataset import open_dataset

    config = small_config.model_copy(update={"anomaly_method": "knn_cell"})
    out = tmp_path / "b"
    manifest = train_bundle(tiny_dataset, out, good_only=True, config=config, progress=False)
    metrics = manifest.training.metrics
    assert manifest.training.config["anomaly_method"] == "knn_cell"
    for name in ("score", "anomaly_map"):
        assert 0.0 <= metrics[f"parity_max_abs_diff_{name}"] <= config.parity_atol
    split = holdout_split(open_dataset(tiny_dataset).train_samples(), val_percent=config.val_percent)
    n_fit = sum(s.is_good for s in split.fit)
    assert metrics["anomaly_bank_per_cell"] == n_fit * config.anomaly_views
    grid = 64 // 16  # block 10's stride at 64 px
    assert metrics["anomaly_bank_patches"] == grid * grid * n_fit
    session = ort_session(out / "model.onnx")
    rng = np.random.default_rng(21)
    defects = [_spot(rng, _texture(rng, 96, 96)) for _ in range(6)]
    fail_at = manifest.thresholds.fail_at
    defect_scores = [float(session.run(None, {"image": to_hwc(d, channels=1)})[0][0]) for d in defects]
    assert all(s >= fail_at for s in defect_scores), (defect_scores, fail_at)
    good_scores = [
        float(session.run(None, {"image": to_hwc(g, channels=1)})[0][0])
        for g in load_images([s for s in split.val if s.is_good], progress=False)
    ]
    assert max(good_scores) < min(defect_scores)


def test_knn_cell_bundle_quantises_its_batched_search_to_int8(
    tiny_dataset: Path, small_config: Any, tmp_path: Path
) -> None:
    """The per-cell search is one batched MatMul with a 3-D bank; ONNX Runtime's static int8
    quantiser takes it, and the int8 gate judges the result like any other graph."""
    from training import train_bundle

    config = small_config.model_copy(update={"anomaly_method": "knn_cell", "quantize": "int8"})
    manifest = train_bundle(tiny_dataset, tmp_path / "q", good_only=True, config=config, progress=False)
    metrics = manifest.training.metrics
    assert metrics["int8_nodes_quantized"] == 1.0
    assert metrics["int8_score_max_abs_diff"] <= config.int8_score_atol
