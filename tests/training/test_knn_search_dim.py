"""knn_search_dim: the kNN searched in the bank's top principal directions, plus the query's residual
outside them (issue 12m)."""

from __future__ import annotations

from typing import Any

import pytest

from vinspect.errors import ModelError

pytestmark = pytest.mark.train


def _brute_force(bank: Any, query: Any) -> Any:
    """Nearest-neighbour distance of every query patch ``[1, D, h, w]`` to the patches ``[M, D]``."""
    flat = query[0].permute(1, 2, 0).reshape(-1, query.shape[1]).double()
    return (flat[:, None, :] - bank.double()[None, :, :]).norm(dim=2).min(dim=1).values.reshape(query.shape[-2:])


def _subspace_bank(gen: Any, n: int, d: int, k: int) -> tuple[Any, Any]:
    """``n`` patches in a ``k``-dimensional affine subspace of R^d, and a unit vector orthogonal to it."""
    import torch

    frame, _ = torch.linalg.qr(torch.randn(d, d, generator=gen))
    inside, outside = frame[:, :k], frame[:, k]
    offset = torch.randn(d, generator=gen)
    return offset + torch.randn(n, k, generator=gen) * 3.0 @ inside.t(), outside


def test_a_bank_in_its_own_subspace_is_searched_exactly() -> None:
    import torch

    from training.anomaly import KnnScorer, pca_basis

    gen = torch.Generator().manual_seed(5)
    bank, _ = _subspace_bank(gen, 300, 24, 8)
    query = torch.randn(1, 24, 3, 4, generator=gen) * 2.0  # mostly outside the goods' subspace
    scorer = KnnScorer(bank, pca_basis(bank, 8))
    assert scorer.search_dim == 8
    torch.testing.assert_close(scorer(query).double(), _brute_force(bank, query), atol=2e-3, rtol=1e-4)


def test_a_patch_unlike_the_goods_only_off_their_subspace_still_scores_high() -> None:
    import torch

    from training.anomaly import KnnScorer, pca_basis

    gen = torch.Generator().manual_seed(6)
    bank, outside = _subspace_bank(gen, 200, 16, 6)
    query = (bank[17] + 5.0 * outside)[None, :, None, None]  # a good patch moved off the goods' subspace
    basis = pca_basis(bank, 6)
    searched_only = KnnScorer(bank @ basis)(torch.einsum("ndhw,dk->nkhw", query, basis))
    assert float(searched_only) < 1e-3  # the projection alone would call it a good patch
    assert float(KnnScorer(bank, basis)(query)) == pytest.approx(5.0, abs=1e-3)


def test_a_full_basis_scores_as_the_plain_search() -> None:
    import torch

    from training.anomaly import KnnScorer, pca_basis

    gen = torch.Generator().manual_seed(7)
    bank = torch.randn(120, 10, generator=gen)
    query = torch.randn(1, 10, 4, 4, generator=gen)
    basis = pca_basis(bank, 10)
    torch.testing.assert_close(basis.t() @ basis, torch.eye(10), atol=1e-5, rtol=0)
    torch.testing.assert_close(KnnScorer(bank, basis)(query), KnnScorer(bank)(query), atol=1e-4, rtol=1e-4)


def test_fit_knn_projects_only_below_the_feature_size_and_the_bank_size() -> None:
    import torch

    from training.anomaly import bank_metrics, fit_knn
    from vinspect.cli.model import describe_search

    gen = torch.Generator().manual_seed(8)
    emb = torch.randn(30, 12, 3, 3, generator=gen)  # 270 patches of 12 features
    projected = fit_knn(emb, coreset_size=100, projection_dim=8, seed=0, search_dim=5)
    assert projected.basis is not None and tuple(projected.basis.shape) == (12, 5)
    metrics = bank_metrics(projected)
    assert metrics == {"anomaly_bank_patches": 100.0, "anomaly_search_dim": 5.0, "anomaly_feature_dim": 12.0}
    assert describe_search(metrics) == (
        "anomaly search: 100 good patches, in 5 of their 12 feature directions plus each patch's residual "
        "outside them (knn_search_dim)"
    )
    for search_dim in (None, 12, 40):
        full = fit_knn(emb, coreset_size=100, projection_dim=8, seed=0, search_dim=search_dim)
        assert full.basis is None and full.search_dim == 12
        assert describe_search(bank_metrics(full)) == "anomaly search: 100 good patches, all 12 features"
    assert describe_search({"anomaly_bank_patches": 8192.0}) is None  # a bundle trained before issue 12m
    small_bank = fit_knn(emb, coreset_size=4, projection_dim=8, seed=0, search_dim=5)
    assert small_bank.basis is None  # 4 patches: no principal directions to search in


def test_pca_basis_refuses_a_dimension_outside_the_features() -> None:
    import torch

    from training.anomaly import pca_basis

    for dim in (0, 13):
        with pytest.raises(ModelError, match=f"pca dimension {dim} must lie in 1..12"):
            pca_basis(torch.zeros(20, 12), dim)


def test_default_bundle_searches_128_dimensions_and_passes_parity(labelled_bundle: Any) -> None:
    _out, manifest = labelled_bundle
    metrics = manifest.training.metrics
    assert manifest.training.config["knn_search_dim"] == 128
    assert metrics["anomaly_search_dim"] == 128.0
    for name in ("score", "anomaly_map", "defect_probs"):
        assert 0.0 <= metrics[f"parity_max_abs_diff_{name}"] <= 1e-3


def test_int8_quantises_the_search_and_keeps_the_projection_float(labelled_bundle: Any, tmp_path: Any) -> None:
    import onnx

    from tests.training.conftest import make_dataset
    from training.data import to_hwc
    from training.quantize import quantize_int8
    from vinspect.dataset import open_dataset, read_image

    out, _manifest = labelled_bundle
    goods = [
        to_hwc(read_image(s.path), channels=1) for s in open_dataset(make_dataset(tmp_path / "d")).samples if s.is_good
    ]
    int8 = tmp_path / "q.onnx"
    assert quantize_int8(out / "model.onnx", int8, images=goods[:8], ops=("MatMul",)) == 1
    nodes = onnx.load(str(int8)).graph.node
    assert [n.input[1] for n in nodes if n.op_type == "MatMul"] == ["scorer.basis"]  # the projection, float
    assert sum(n.op_type == "QLinearMatMul" for n in nodes) == 1  # the search over the projected bank
