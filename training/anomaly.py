"""Good-only anomaly models over patch features of the frozen trunk.

* :class:`PatchEmbedder` turns the trunk's tapped maps into one patch-feature map: each tap is
  averaged over a ``k x k`` neighbourhood (PatchCore's local aggregation), brought to the map grid
  (average-pooled down or bilinearly up) and concatenated along channels.
* :class:`KnnScorer` (PatchCore-like): distance of every patch to its nearest neighbour in a memory
  bank of good patches, reduced by a greedy k-center coreset (:func:`greedy_coreset`).
* :class:`CellKnnScorer` (position-conditioned, issue 12j): the patch at map cell (i, j) is compared
  only with the good patches from the same cell (a bank ``[cells, n, D]``), so the search is one
  batched ``[1, D] x [D, n]`` product per cell instead of ``[cells, D] x [D, M]``. Same distance
  units as :class:`KnnScorer`, so :class:`MapHead`, :func:`position_scale` and calibration apply
  unchanged (:func:`fit_cell_knn`).
* :class:`GaussianScorer`: Mahalanobis distance of every patch to one Gaussian fitted to all good
  patches (position-free, so it suits parts that are not aligned, such as magnetic tiles).
* :func:`position_scale`: the mean distance of *unseen* good patches at every map cell (2-fold
  cross-fit over the good images). Dividing the map by it removes the strong position effect of
  framed parts (corners and edges of a tile are rarer and always look "more anomalous"); on the
  magnetic-tile validation split it lifted image AUROC from 0.94 to 0.97.
* :class:`MapHead`: per-cell scale, blur, divide by the reference level of good parts, squash ``r / (1 + r)`` into
  [0, 1); the image score is the map's maximum. A score of 0.5 means "as anomalous as the
  reference good part" (the reference is the 99th percentile of validation-good raw scores).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vinspect.errors import ModelError

__all__ = [
    "CellKnnScorer",
    "GaussianScorer",
    "KnnScorer",
    "MapHead",
    "PatchEmbedder",
    "bank_metrics",
    "fit_cell_knn",
    "fit_gaussian",
    "fit_knn",
    "greedy_coreset",
    "position_scale",
]

logger = logging.getLogger(__name__)


class PatchEmbedder(nn.Module):
    """Tapped trunk maps -> ``[N, D, h, w]`` patch features on the grid ``tap_sizes[map_tap]``.

    The tap sizes are fixed (the graph resizes every image to one size), so how each tap reaches
    the grid is decided here once and the exported graph has no shape-dependent branches.
    """

    def __init__(self, *, pool_px: int, tap_sizes: list[tuple[int, int]], map_tap: int) -> None:
        super().__init__()
        self.pool_px = pool_px
        self.grid = tap_sizes[map_tap]
        # per tap: 0 = already on the grid, k > 1 = average-pool by k, -1 = bilinear upsample
        self.steps = [0 if s == self.grid else (s[0] // self.grid[0] if s[0] > self.grid[0] else -1) for s in tap_sizes]

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        parts = []
        for feat, step in zip(taps, self.steps, strict=True):
            if self.pool_px > 1:
                feat = F.avg_pool2d(feat, self.pool_px, stride=1, padding=self.pool_px // 2, count_include_pad=False)
            if step > 1:
                feat = F.avg_pool2d(feat, step)
            elif step < 0:
                feat = F.interpolate(feat, size=self.grid, mode="bilinear", align_corners=False)
            parts.append(feat)
        return torch.cat(parts, dim=1)


def _flat(embedding: torch.Tensor) -> torch.Tensor:
    """``[1, D, h, w]`` -> ``[h * w, D]``."""
    return embedding.flatten(2)[0].transpose(0, 1)


class KnnScorer(nn.Module):
    """Nearest-neighbour distance of every patch to a memory bank ``[M, D]`` of good patches.

    With ``basis [D, K]`` (issue 12m, ``knn_search_dim``) the search runs in the bank's top ``K``
    principal directions: the bank is stored projected and every query patch is projected the same
    way, a ``D / K`` times smaller search MatMul. The part of the query outside those directions
    (its squared distance from the bank's principal subspace through the bank's mean) is added to
    the nearest squared distance, so a patch that differs from every good one only in directions
    the goods barely vary in still scores high: the approximation drops only the goods' own small
    residuals, never the query's."""

    bank_t_m2: torch.Tensor  # buffers (register_buffer), typed for mypy
    bank_sq: torch.Tensor
    basis: torch.Tensor | None
    centre: torch.Tensor | None
    centre_in: torch.Tensor | None

    def __init__(self, bank: torch.Tensor, basis: torch.Tensor | None = None) -> None:
        super().__init__()
        centre = None if basis is None else bank.mean(dim=0, keepdim=True)
        self.register_buffer("basis", None if basis is None else basis.contiguous())
        self.register_buffer("centre", centre)
        self.register_buffer("centre_in", None if basis is None or centre is None else centre @ basis)
        if basis is not None:
            bank = bank @ basis
        # -2 B^T stored: the search MatMul and the + |b|^2 bias fuse into one Gemm in ONNX Runtime, and
        # the per-query |x|^2 is added after the minimum (196 values, not 196 x M)
        self.register_buffer("bank_t_m2", (-2.0 * bank).t().contiguous())
        self.register_buffer("bank_sq", (bank * bank).sum(dim=1)[None, :])

    @property
    def bank(self) -> torch.Tensor:
        """The bank ``[M, search_dim]`` as searched (projected when there is a basis)."""
        return self.bank_t_m2.t() * -0.5

    @property
    def bank_size(self) -> int:
        return int(self.bank_t_m2.shape[1])

    @property
    def search_dim(self) -> int:
        """Dimensions the search runs in (the patch feature size without a basis)."""
        return int(self.bank_t_m2.shape[0])

    @property
    def feature_dim(self) -> int:
        """The patch feature size the scorer takes."""
        return self.search_dim if self.basis is None else int(self.basis.shape[0])

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        x = _flat(embedding)
        residual = None
        if self.basis is not None:
            projected = x @ self.basis
            if self.centre is not None and self.centre_in is not None:
                centred = x - self.centre
                inside = projected - self.centre_in
                residual = ((centred * centred).sum(dim=1) - (inside * inside).sum(dim=1)).clamp_min(0.0)
            x = projected
        nearest = (x @ self.bank_t_m2 + self.bank_sq).min(dim=1).values + (x * x).sum(dim=1)
        if residual is not None:
            nearest = nearest + residual
        return nearest.clamp_min(0.0).sqrt().reshape(embedding.shape[-2], embedding.shape[-1])


class CellKnnScorer(nn.Module):
    """Nearest-neighbour distance of the patch at every map cell to the good patches of that same
    cell: bank ``[h * w, n, D]`` (cell-major, row by row), one batched MatMul in the graph."""

    bank_t: torch.Tensor  # buffers (register_buffer), typed for mypy
    bank_sq: torch.Tensor

    def __init__(self, bank: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("bank_t", bank.transpose(1, 2).contiguous())  # [cells, D, n]
        self.register_buffer("bank_sq", (bank * bank).sum(dim=2)[:, None, :])  # [cells, 1, n]

    @property
    def cells(self) -> int:
        return int(self.bank_t.shape[0])

    @property
    def per_cell(self) -> int:
        return int(self.bank_t.shape[2])

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        x = _flat(embedding)[:, None, :]  # [cells, 1, D]
        d2 = (x * x).sum(dim=2, keepdim=True) - 2.0 * torch.matmul(x, self.bank_t) + self.bank_sq
        nearest = d2.min(dim=2).values.clamp_min(0.0).sqrt()  # [cells, 1]
        return nearest.reshape(embedding.shape[-2], embedding.shape[-1])


class GaussianScorer(nn.Module):
    """Mahalanobis distance of every patch to one Gaussian (mean ``[D]``, precision ``[D, D]``)."""

    mean: torch.Tensor  # buffers (register_buffer), typed for mypy
    precision: torch.Tensor

    def __init__(self, mean: torch.Tensor, precision: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean[None, :])
        self.register_buffer("precision", precision)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        diff = _flat(embedding) - self.mean
        m2 = ((diff @ self.precision) * diff).sum(dim=1)
        return m2.clamp_min(0.0).sqrt().reshape(embedding.shape[-2], embedding.shape[-1])


def pca_basis(points: torch.Tensor, dim: int) -> torch.Tensor:
    """The top ``dim`` principal directions ``[D, dim]`` of ``points [N, D]`` (centred, orthonormal
    columns). Distances are translation invariant, so projecting both sides by the basis alone (no
    centring) gives the distances within that subspace.

    Raises:
        ModelError: ``dim`` outside 1..D.
    """
    if not 1 <= dim <= points.shape[1]:
        raise ModelError(f"pca dimension {dim} must lie in 1..{points.shape[1]} (the patch feature size)")
    centred = points.double() - points.double().mean(dim=0, keepdim=True)
    vh: torch.Tensor = torch.linalg.svd(centred, full_matrices=False).Vh
    return vh[:dim].t().to(points.dtype).contiguous()


def greedy_coreset(
    points: torch.Tensor, *, size: int, projection_dim: int, seed: int, progress: bool = False
) -> torch.Tensor:
    """Indices of a greedy k-center coreset of ``points [n, D]`` (PatchCore's approximation).

    Distances are measured after a fixed Gaussian random projection to ``projection_dim``
    dimensions (Johnson-Lindenstrauss), which keeps the search fast at a small cost in fidelity.
    """
    n = points.shape[0]
    if size >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    if projection_dim < points.shape[1]:
        proj = torch.randn(points.shape[1], projection_dim, generator=gen) / math.sqrt(projection_dim)
        points = points @ proj
    sq = (points * points).sum(dim=1)
    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = int(torch.randint(n, (1,), generator=gen))
    min_d = torch.full((n,), float("inf"))
    for i in tqdm(range(1, size + 1), desc="memory bank (coreset)", disable=not progress, leave=False, mininterval=0.5):
        c = points[chosen[i - 1]]
        d = (sq - 2.0 * (points @ c) + (c * c).sum()).clamp_min_(0.0)
        torch.minimum(min_d, d, out=min_d)
        if i < size:
            chosen[i] = int(torch.argmax(min_d))
    return chosen


@torch.no_grad()
def fit_knn(
    embeddings: torch.Tensor,
    *,
    coreset_size: int,
    projection_dim: int,
    seed: int,
    search_dim: int | None = None,
    progress: bool = False,
) -> KnnScorer:
    """Memory bank from good patch features ``[N, D, h, w]``.

    ``search_dim`` below ``D`` (and below the bank's patch count): the search runs in the coreset
    bank's top ``search_dim`` principal directions (:func:`pca_basis`), plus the query's residual
    outside them (:class:`KnnScorer`); ``None`` or otherwise: in all ``D`` features.

    Raises:
        ModelError: no embeddings.
    """
    if embeddings.numel() == 0:
        raise ModelError("cannot fit an anomaly model without good images")
    points = embeddings.permute(0, 2, 3, 1).reshape(-1, embeddings.shape[1]).contiguous()
    idx = greedy_coreset(points, size=coreset_size, projection_dim=projection_dim, seed=seed, progress=progress)
    bank = points[idx].clone()
    # a basis only with fewer dimensions than the bank has features and patches
    basis = pca_basis(bank, search_dim) if search_dim is not None and search_dim < min(bank.shape) else None
    scorer = KnnScorer(bank, basis)
    logger.info(
        "memory bank", extra={"patches": points.shape[0], "bank": int(idx.numel()), "search_dim": scorer.search_dim}
    )
    return scorer


@torch.no_grad()
def fit_cell_knn(
    embeddings: torch.Tensor, *, bank_size: int | None, projection_dim: int, seed: int, progress: bool = False
) -> CellKnnScorer:
    """Per-cell memory bank from good patch features ``[N, D, h, w]``: every row's patch at each cell.

    With ``bank_size`` set below ``N``, each cell keeps a greedy k-center coreset of its own ``N``
    patches (:func:`greedy_coreset`, the same projection and seed for every cell), so every cell
    holds exactly ``bank_size`` patches; ``None`` keeps all ``N``.

    Raises:
        ModelError: no embeddings.
    """
    if embeddings.numel() == 0:
        raise ModelError("cannot fit an anomaly model without good images")
    n, d, h, w = embeddings.shape
    by_cell = embeddings.permute(2, 3, 0, 1).reshape(h * w, n, d).contiguous()  # [cells, N, D]
    if bank_size is not None and bank_size < n:
        rows = [
            by_cell[c, greedy_coreset(by_cell[c], size=bank_size, projection_dim=projection_dim, seed=seed)]
            for c in tqdm(range(h * w), desc="per-cell bank (coreset)", disable=not progress, leave=False)
        ]
        by_cell = torch.stack(rows)
    logger.info("per-cell memory bank", extra={"patches": n * h * w, "cells": h * w, "per_cell": int(by_cell.shape[1])})
    return CellKnnScorer(by_cell.clone())


def bank_metrics(scorer: nn.Module) -> dict[str, float]:
    """The anomaly model's memory-bank size for the training metrics (empty for a Gaussian)."""
    if isinstance(scorer, CellKnnScorer):
        return {
            "anomaly_bank_patches": float(scorer.cells * scorer.per_cell),
            "anomaly_bank_per_cell": float(scorer.per_cell),
        }
    if isinstance(scorer, KnnScorer):
        return {
            "anomaly_bank_patches": float(scorer.bank_size),
            "anomaly_search_dim": float(scorer.search_dim),
            "anomaly_feature_dim": float(scorer.feature_dim),
        }
    return {}


@torch.no_grad()
def fit_gaussian(embeddings: torch.Tensor, *, shrinkage: float) -> GaussianScorer:
    """One Gaussian over all good patches, with the covariance shrunk towards its mean variance."""
    if embeddings.numel() == 0:
        raise ModelError("cannot fit an anomaly model without good images")
    points = embeddings.permute(0, 2, 3, 1).reshape(-1, embeddings.shape[1]).double()
    mean = points.mean(dim=0)
    centred = points - mean
    cov = centred.t() @ centred / max(points.shape[0] - 1, 1)
    target = torch.eye(cov.shape[0], dtype=cov.dtype) * cov.diagonal().mean()
    cov = (1.0 - shrinkage) * cov + shrinkage * target
    precision = torch.linalg.inv(cov)
    return GaussianScorer(mean.float(), precision.float())


@torch.no_grad()
def position_scale(
    embeddings: torch.Tensor, fit: Callable[[torch.Tensor], nn.Module], *, views: int = 1, folds: int = 2, seed: int = 0
) -> torch.Tensor:
    """Mean distance map ``[h, w]`` of good images scored by a model fitted without them.

    Args:
        embeddings: good patch features ``[N * views, D, h, w]``, image-major.
        fit: builds a scorer from embeddings (the same method as the final model).
        views: rows per image (all views of an image stay in one fold; view 0 is scored).
        folds: number of cross-fitting folds.
        seed: fold assignment seed.
    """
    n = embeddings.shape[0] // views
    if n < folds:
        return torch.ones(embeddings.shape[-2:])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    total = torch.zeros(embeddings.shape[-2:])
    for k in range(folds):
        kept = torch.cat([order[j::folds] for j in range(folds) if j != k])
        rows = (kept[:, None] * views + torch.arange(views)[None, :]).reshape(-1)
        scorer = fit(embeddings[rows])
        for i in order[k::folds].tolist():
            total += scorer(embeddings[i * views : i * views + 1])
    mean = total / n
    return mean.clamp_min(float(mean.mean()) * 1e-3)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(2.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    k = k / k.sum()
    return (k[:, None] * k[None, :])[None, None]


class MapHead(nn.Module):
    """Raw distance map ``[h, w]`` -> (squashed map ``[h, w]``, image score ``[1]``).

    The blur is a normalised convolution (zero padding divided by the kernel mass inside the
    map), which treats borders like replicate padding would, without the negative-step slices
    that padding mode exports to.
    """

    kernel: torch.Tensor  # buffers (register_buffer), typed for mypy
    inv_mass: torch.Tensor
    inv_ref: torch.Tensor
    inv_scale: torch.Tensor

    def __init__(self, *, blur_sigma_px: float, grid: tuple[int, int], reference: float = 1.0) -> None:
        super().__init__()
        self.blur = blur_sigma_px > 0
        kernel = _gaussian_kernel(blur_sigma_px) if self.blur else torch.ones(1, 1, 1, 1)
        self.pad = kernel.shape[-1] // 2
        mass = F.conv2d(torch.ones(1, 1, *grid), kernel, padding=self.pad)[0, 0]
        self.register_buffer("kernel", kernel)
        self.register_buffer("inv_mass", 1.0 / mass)
        self.register_buffer("inv_ref", torch.tensor([1.0 / reference]))
        self.register_buffer("inv_scale", torch.ones(grid))

    def set_position_scale(self, scale: torch.Tensor) -> None:
        """Divide every map cell by ``scale[h, w]`` (see :func:`position_scale`)."""
        self.inv_scale.copy_(1.0 / scale)

    def set_reference(self, reference: float) -> None:
        """Set the raw level that maps to 0.5 (typically a high quantile of good scores)."""
        if not reference > 0 or not math.isfinite(reference):
            raise ModelError(f"anomaly reference level must be a positive number, got {reference}")
        self.inv_ref.fill_(1.0 / reference)

    def raw(self, distance: torch.Tensor) -> torch.Tensor:
        """Cell-scaled, blurred map before the reference division (used to pick the reference)."""
        distance = distance * self.inv_scale
        if not self.blur:
            return distance
        return F.conv2d(distance[None, None], self.kernel, padding=self.pad)[0, 0] * self.inv_mass

    def forward(self, distance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.raw(distance) * self.inv_ref
        amap = r / (1.0 + r)
        return amap, amap.amax().reshape(1)
