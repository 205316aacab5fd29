"""The issue 12i selection helpers in bench/: the position-conditioned kNN against a brute-force
search, its work count, and the fused two-input kNN scorer (raw + equalised banks)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.train


def _brute_local(query: np.ndarray, bank: np.ndarray, radius: int) -> np.ndarray:
    nq, _, h, w = query.shape
    out = np.empty((nq, h, w))
    for n in range(nq):
        for i in range(h):
            for j in range(w):
                window = bank[:, :, max(0, i - radius) : i + radius + 1, max(0, j - radius) : j + radius + 1]
                cand = window.transpose(0, 2, 3, 1).reshape(-1, bank.shape[1])
                out[n, i, j] = np.sqrt(((cand - query[n, :, i, j]) ** 2).sum(1)).min()
    return out


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_position_conditioned_knn_searches_only_the_cells_within_the_radius(radius: int) -> None:
    import torch

    from bench.anomaly_directions import local_knn

    rng = np.random.default_rng(radius)
    query = rng.normal(size=(3, 6, 5, 7)).astype(np.float32)
    bank = rng.normal(size=(4, 6, 5, 7)).astype(np.float32)
    got = local_knn(torch.from_numpy(query), torch.from_numpy(bank), radius).numpy()
    np.testing.assert_allclose(got, _brute_local(query, bank, radius), atol=1e-4)
    # a query equal to a bank image at every cell is at distance 0 everywhere
    same = local_knn(torch.from_numpy(bank[1:2]), torch.from_numpy(bank), radius)
    assert float(same.abs().max()) < 1e-2  # float32 |q|^2 - 2 q.b + |b|^2, then a square root
    # the global nearest neighbour is no farther than the position-conditioned one
    flat = bank.transpose(0, 2, 3, 1).reshape(-1, 6)
    glob = np.sqrt(((query.transpose(0, 2, 3, 1)[..., None, :] - flat) ** 2).sum(-1)).min(-1)
    assert (glob <= got + 1e-4).all()


def test_position_conditioned_work_counts_the_clipped_windows() -> None:
    from bench.anomaly_directions import local_knn_work

    assert local_knn_work(14, 14, 0, 10) == 196 * 10
    # r = 1 on a 14 x 14 grid: rows 2 + 12 * 3 + 2 = 40 per axis, 40 * 40 windows' cells
    assert local_knn_work(14, 14, 1, 1) == 40 * 40
    assert local_knn_work(3, 3, 5, 2) == 9 * 9 * 2  # the window covers the whole map


def test_fused_two_input_knn_divides_each_map_by_its_own_reference_level() -> None:
    import torch

    from bench.anomaly_selection import Fold, fused_knn_method, knn_part

    rng = np.random.default_rng(0)
    n, h, w = 60, 4, 4
    a = torch.from_numpy(rng.normal(size=(n, 5, h, w)).astype(np.float32))
    b = torch.from_numpy((50.0 * rng.normal(size=(n, 3, h, w))).astype(np.float32))  # another scale
    labels = np.array(["good"] * 50 + ["MT_Crack"] * 10)
    stems = np.array([f"img{i}" for i in range(n)])
    fold = Fold(0, labels, stems)
    parts = [(slice(0, 5), knn_part(a, fold, bank=64)), (slice(5, 8), knn_part(b, fold, bank=64))]
    stacked = torch.cat([a, b], dim=1)
    x = stacked[fold.test_goods]
    each = [fused_knn_method([p], "max")(x) for p in parts]
    # each signal alone is in its own reference units whatever its feature scale
    for scores, (_, (_, _, ref)) in zip(each, parts, strict=True):
        assert ref > 0
        assert 0.2 < float(np.median(scores)) < 5.0
    # max of the cell-wise max is the max of the two image scores; a cell-wise mean's maximum is at
    # most the mean of the two maxima; a geometric mean is at most the arithmetic mean, cell by cell
    np.testing.assert_allclose(fused_knn_method(parts, "max")(x), np.maximum(each[0], each[1]), rtol=1e-6)
    fused_mean = fused_knn_method(parts, "mean")(x)
    assert (fused_mean <= 0.5 * (each[0] + each[1]) + 1e-6).all()
    assert (fused_knn_method(parts, "geomean")(x) <= fused_mean + 1e-6).all()
