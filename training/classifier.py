"""Defect-type classifier: the late MobileNetV2 blocks fine-tuned on good + labelled defect classes.

The trunk (blocks up to the last anomaly tap) stays frozen and its output is cached once per
image and flip view (:mod:`training.features`); only the late blocks and a linear head learn,
which keeps a fit to a minute or two on 2 cores. Class 0 is ``good``; classes ``1..K`` follow
``labels``. Each epoch draws one random flip view per image, classes are weighted by
``1 / sqrt(frequency)`` so rare defect kinds still count, and label smoothing keeps the
probabilities usable as a score.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from training.backbones import late_blocks, stage_channels
from vinspect.errors import ModelError

__all__ = ["ClassifierFit", "DefectHead", "defect_scores", "fit_classifier"]

logger = logging.getLogger(__name__)


class DefectHead(nn.Module):
    """Trunk output ``[N, C, h, w]`` -> logits ``[N, 1 + K]`` (class 0 = good)."""

    def __init__(self, model: nn.Module, *, start: int, stop: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.blocks = late_blocks(model, start=start, stop=stop)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(stage_channels(model, stop - 1), n_classes)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        x = self.blocks(feat).mean(dim=(2, 3))
        return cast(torch.Tensor, self.fc(self.dropout(x)))


class ClassifierFit:
    """Hyper-parameters of :func:`fit_classifier` (plain holder, built from TrainConfig)."""

    def __init__(self, *, epochs: int, lr: float, weight_decay: float, batch_size: int, seed: int) -> None:
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self.batch_size, self.seed = batch_size, seed


def _class_weights(targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    counts = torch.bincount(targets, minlength=n_classes).float().clamp_min(1.0)
    weights = counts.rsqrt()
    return weights * (n_classes / weights.sum())


def fit_classifier(
    head: DefectHead,
    feats: torch.Tensor,
    *,
    targets: Sequence[int],
    views: int,
    fit: ClassifierFit,
    progress: bool,
    device: torch.device | None = None,
) -> DefectHead:
    """Train ``head`` on cached trunk features ``[n_images * views, C, h, w]`` (image-major).

    On ``device`` (default the CPU) the head and each batch move there; the head comes back on
    the CPU. The batch order and views are drawn on the CPU from ``fit.seed`` on every device.

    Raises:
        ModelError: features and targets disagree in number.
    """
    y = torch.as_tensor(list(targets), dtype=torch.long)
    if feats.shape[0] != y.numel() * views:
        raise ModelError(f"classifier: {feats.shape[0]} feature maps for {y.numel()} images x {views} views")
    gen = torch.Generator().manual_seed(fit.seed)
    torch.manual_seed(fit.seed)
    n_classes = head.fc.out_features
    device = device or torch.device("cpu")
    head.to(device)
    loss_fn = nn.CrossEntropyLoss(weight=_class_weights(y, n_classes).to(device), label_smoothing=0.1)
    opt = torch.optim.AdamW(head.parameters(), lr=fit.lr, weight_decay=fit.weight_decay)
    steps = fit.epochs * math.ceil(y.numel() / fit.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=fit.lr, total_steps=steps, pct_start=0.1)
    head.train()
    for _ in tqdm(range(fit.epochs), desc="classifier epochs", disable=not progress, leave=False):
        order = torch.randperm(y.numel(), generator=gen)
        view = torch.randint(views, (y.numel(),), generator=gen)
        for start in range(0, y.numel(), fit.batch_size):
            idx = order[start : start + fit.batch_size]
            if idx.numel() < 2:
                continue  # BatchNorm cannot train on a single sample
            loss = loss_fn(head(feats[idx * views + view[idx]].to(device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    head.eval().to("cpu")
    logger.info("classifier trained", extra={"images": y.numel(), "classes": n_classes, "device": str(device)})
    return head


def defect_scores(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[N, 1 + K]`` -> (P(not good) ``[N]``, defect-type probabilities ``[N, K]``).

    The type probabilities are a softmax over the defect logits alone: the answer to "which
    defect is it, given that it is one", which names the defect of a part rejected by either path.
    """
    p_defect = 1.0 - F.softmax(logits, dim=1)[:, 0]
    return p_defect, F.softmax(logits[:, 1:], dim=1)
