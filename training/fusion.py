"""Open-set fusion of the anomaly score and the defect-type signal, inside the exported graph.

Each signal keeps its own threshold, learnt on validation goods alone:

* the anomaly path's ``anomaly_at`` (at most ``open_set_anomaly_frr`` of validation goods reach it),
* the defect signal's ``defect_at`` (P(not good), at most ``open_set_defect_frr`` of them).

:class:`OpenSetFusion` maps each signal piecewise-linearly so that its own threshold lands on
``FUSED_FAIL_AT`` (0.5), then takes the maximum. A part FAILs (fused score >= 0.5) exactly when
``anomaly >= anomaly_at`` **or** ``p_defect >= defect_at``: the labels can only *add* FAILs above
their own threshold, they never raise the anomaly path's threshold, so a defect kind nobody labelled
is caught as often as the good-only model would catch it at the same threshold. A single threshold on
``max(anomaly, p_defect)`` (fusion ``max``) lets a confident classifier take the false-reject
budget from the anomaly path instead; measured with one class left out on the magnetic-tile train
split (``bench/results/anomaly_selection_loco.json``) the unseen class lost up to 23 points that way.

Both pieces are continuous and increasing, so the fused score still orders parts and a REVIEW band
below 0.5 keeps its meaning.

With a mask-supervised head (:mod:`training.mask_head`, ``TrainConfig.mask_head``) a third signal
joins the same way: the maximum of its "defect here" map, with its own threshold ``mask_at`` from
validation goods (``open_set_mask_frr``); it too can only add FAILs. The heatmap then becomes
``max(lift(anomaly map, anomaly_at), lift(mask map, mask_at))`` (:meth:`OpenSetFusion.fuse_maps`):
0.5 on the map means "this signal's own threshold" whichever signal lit the cell.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vinspect.errors import ModelError

__all__ = ["FUSED_FAIL_AT", "OpenSetFusion", "lift"]

FUSED_FAIL_AT = 0.5


def lift(x: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear, increasing map of ``x`` in [0, 1] with ``at -> 0.5``, ``0 -> 0``, ``1 -> 1``."""
    below = x * (FUSED_FAIL_AT / at)
    above = FUSED_FAIL_AT + (x - at) * ((1.0 - FUSED_FAIL_AT) / (1.0 - at))
    return torch.where(x < at, below, above)


class OpenSetFusion(nn.Module):
    """``(anomaly score [1], P(not good) [1]) -> fused score [1]`` (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("anomaly_at", torch.tensor([FUSED_FAIL_AT]))
        self.register_buffer("defect_at", torch.tensor([FUSED_FAIL_AT]))
        self.register_buffer("mask_at", torch.tensor([FUSED_FAIL_AT]))
        self.anomaly_frr = 0.0  # validation goods each signal fails at its threshold (for the manifest)
        self.defect_frr = 0.0
        self.mask_frr: float | None = None  # set with mask_at when the graph has a mask head

    def set_thresholds(self, *, anomaly_at: float, defect_at: float, mask_at: float | None = None) -> None:
        """Each signal's own threshold, in its own units (all strictly inside (0, 1)).

        Raises:
            ModelError: a threshold outside (0, 1) or not finite.
        """
        named = [("anomaly", anomaly_at), ("defect", defect_at)] + ([("mask", mask_at)] if mask_at is not None else [])
        for name, value in named:
            if not (math.isfinite(value) and 0.0 < value < 1.0):
                raise ModelError(f"open-set fusion: the {name} threshold must be inside (0, 1), got {value}")
        self.anomaly_at.fill_(anomaly_at)  # type: ignore[operator]
        self.defect_at.fill_(defect_at)  # type: ignore[operator]
        if mask_at is not None:
            self.mask_at.fill_(mask_at)  # type: ignore[operator]

    def forward(self, anomaly: torch.Tensor, p_defect: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        fused = torch.maximum(lift(anomaly, self.anomaly_at), lift(p_defect, self.defect_at))  # type: ignore[arg-type]
        if mask is None:
            return fused
        return torch.maximum(fused, lift(mask, self.mask_at))  # type: ignore[arg-type]

    def fuse_maps(self, anomaly_map: torch.Tensor, mask_map: torch.Tensor) -> torch.Tensor:
        """The heatmap: each map lifted so its own threshold lands on 0.5, then the maximum per cell."""
        return torch.maximum(lift(anomaly_map, self.anomaly_at), lift(mask_map, self.mask_at))  # type: ignore[arg-type]
