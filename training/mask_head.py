"""Mask-supervised "defect here" head: a per-patch classifier on the anomaly path's patch embedding.

Where labelled defect images come with pixel masks, each patch of the embedding grid (the same
``[D, h, w]`` features the kNN scores) gets a target: the fraction of its cell that the defect mask
covers, with the image squashed onto the grid exactly as the graph's resize squashes it. Good
images are all-background. The head standardises every patch by the training goods' patch mean
and standard deviation and applies a logistic regression (a 1x1 convolution, ``kind: linear``) or
a two-layer 1x1-conv network (``kind: mlp``), trained with a soft binary cross-entropy whose
defect cells are weighted to balance the background. Its map is blurred like the anomaly map and
its image signal is the map's maximum: class-agnostic "is there a defect anywhere".

In the exported graph (:class:`training.export.InspectionGraph`) the head's image signal joins the
open-set fusion with its own threshold learnt on validation goods (labels can only add FAILs), and
the heatmap is the maximum of the anomaly map and the mask map, each lifted so that its own
threshold lands on 0.5 (:func:`training.fusion.lift`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from training.anomaly import _gaussian_kernel
from vinspect.errors import ModelError

__all__ = ["MaskHead", "cell_cover", "fit_mask_head"]

logger = logging.getLogger(__name__)
Kind = Literal["linear", "mlp"]


def cell_cover(mask: npt.NDArray[np.uint8], grid: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Fraction of every grid cell the mask (non-zero pixels) covers, the image squashed onto ``grid``.

    Raises:
        ModelError: the mask is not a 2-D (or one-channel) image.
    """
    m = mask[:, :, 0] if mask.ndim == 3 else mask
    if m.ndim != 2 or m.size == 0:
        raise ModelError(f"defect mask must be a 2-D image, got shape {mask.shape}")
    binary = (m > 0).astype(np.float32)
    return np.asarray(cv2.resize(binary, (grid[1], grid[0]), interpolation=cv2.INTER_AREA), dtype=np.float32)


class MaskHead(nn.Module):
    """Patch embedding ``[1, D, h, w]`` -> "defect here" map ``[h, w]`` in (0, 1), and its maximum ``[1]``."""

    mean: torch.Tensor  # buffers (register_buffer), typed for mypy
    inv_std: torch.Tensor
    kernel: torch.Tensor
    inv_mass: torch.Tensor

    def __init__(self, dim: int, *, grid: tuple[int, int], blur_sigma_px: float, kind: Kind, hidden: int = 64) -> None:
        super().__init__()
        self.net: nn.Module = (
            nn.Conv2d(dim, 1, 1)
            if kind == "linear"
            else nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1))
        )
        self.blur = blur_sigma_px > 0
        kernel = _gaussian_kernel(blur_sigma_px) if self.blur else torch.ones(1, 1, 1, 1)
        self.pad = kernel.shape[-1] // 2
        self.register_buffer("kernel", kernel)
        self.register_buffer("inv_mass", 1.0 / F.conv2d(torch.ones(1, 1, *grid), kernel, padding=self.pad)[0, 0])
        self.register_buffer("mean", torch.zeros(1, dim, 1, 1))
        self.register_buffer("inv_std", torch.ones(1, dim, 1, 1))

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        """Per-patch logits ``[N, h, w]`` (before the sigmoid and the blur)."""
        return self.net((emb - self.mean) * self.inv_std)[:, 0]  # type: ignore[no-any-return]

    def forward(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = torch.sigmoid(self.logits(emb))[:1]
        if self.blur:
            p = F.conv2d(p[None], self.kernel, padding=self.pad)[0] * self.inv_mass
        amap = p[0]
        return amap, amap.amax().reshape(1)


def _patches(emb: torch.Tensor) -> torch.Tensor:
    return emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])


def fit_mask_head(
    good: torch.Tensor,
    defect: torch.Tensor,
    cover: Sequence[npt.NDArray[np.float32]],
    *,
    kind: Kind,
    blur_sigma_px: float,
    seed: int,
) -> MaskHead:
    """Fit the head on good embeddings ``[N, D, h, w]`` (all background) and defect embeddings
    ``[M, D, h, w]`` with their cell coverage ``M x [h, w]`` (:func:`cell_cover`).

    Raises:
        ModelError: shapes disagree, or no defect cell is covered by a mask.
    """
    if defect.shape[0] != len(cover):
        raise ModelError(f"mask head: {defect.shape[0]} defect embeddings for {len(cover)} masks")
    grid = (int(good.shape[2]), int(good.shape[3]))
    if any(c.shape != grid for c in cover):
        raise ModelError(f"mask head: every mask must be on the {grid} grid")
    torch.manual_seed(seed)
    head = MaskHead(int(good.shape[1]), grid=grid, blur_sigma_px=blur_sigma_px, kind=kind)
    gp = _patches(good)
    mean, std = gp.mean(0), gp.std(0).clamp_min(1e-6)
    head.mean.copy_(mean[None, :, None, None])
    head.inv_std.copy_((1.0 / std)[None, :, None, None])
    x = (torch.cat([gp, _patches(defect)]) - mean) / std
    y = torch.cat([torch.zeros(gp.shape[0]), torch.from_numpy(np.stack(cover)).reshape(-1)])
    pos = float(y.sum())
    if pos <= 0:
        raise ModelError("mask head: the defect masks cover no cell of the grid")
    weight = torch.where(y > 0, torch.tensor((y.numel() - pos) / pos), torch.tensor(1.0))
    weight = weight / weight.mean()
    lin = nn.Linear(x.shape[1], 1) if kind == "linear" else None
    if lin is not None:
        opt = torch.optim.LBFGS(lin.parameters(), max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(lin(x).squeeze(-1), y, weight=weight)
            loss = loss + 1e-3 * (lin.weight**2).sum()
            loss.backward()  # type: ignore[no-untyped-call]
            return loss

        opt.step(closure)  # type: ignore[no-untyped-call]
        conv = head.net
        assert isinstance(conv, nn.Conv2d)
        with torch.no_grad():
            conv.weight.copy_(lin.weight[:, :, None, None])
            conv.bias.copy_(lin.bias)  # type: ignore[union-attr]
    else:
        first, last = nn.Linear(x.shape[1], 64), nn.Linear(64, 1)
        mlp = nn.Sequential(first, nn.ReLU(), last)
        opt2 = torch.optim.AdamW(mlp.parameters(), lr=3e-3, weight_decay=1e-3)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(8):
            order = torch.randperm(y.numel(), generator=gen)
            for s in range(0, y.numel(), 2048):
                b = order[s : s + 2048]
                loss = F.binary_cross_entropy_with_logits(mlp(x[b]).squeeze(-1), y[b], weight=weight[b])
                opt2.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt2.step()
        net = head.net
        assert isinstance(net, nn.Sequential)
        with torch.no_grad():
            for dst, src in ((net[0], first), (net[2], last)):
                assert isinstance(dst, nn.Conv2d) and dst.bias is not None
                dst.weight.copy_(src.weight[:, :, None, None])
                dst.bias.copy_(src.bias)
    logger.info(
        "mask head trained",
        extra={"kind": kind, "good_images": int(good.shape[0]), "defect_images": int(defect.shape[0]), "cells": pos},
    )
    return head.eval()
