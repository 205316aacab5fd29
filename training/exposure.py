"""Exposure guard: FAIL a frame whose global grey level or contrast lies outside every good one.

Histogram equalisation of the input (``photometric: equalize``, :class:`training.data.EqualizeHist`)
throws away the frame's global grey level and contrast: a part that is wholly darker, brighter or
flatter than every good one (wrong material, a missing coating, a failing lamp) reaches the trunk
looking like a good part. Raw grey levels do not guarantee a FAIL either: on the tests' synthetic
texture a raw-input good-only graph scored a good part shifted 55 grey levels darker than every
training good at 0.37 against its ``review_at`` 0.50 (a PASS). So the guard is on for both inputs
(``TrainConfig.exposure_guard``). It looks at the *raw* frame, before any equalisation, through
three statistics of all its pixels (and channels):

* ``log(1 + mean)``: the mean grey level,
* ``log(1 + std)``: the standard deviation (contrast),
* ``log(1 + std) - log(1 + mean)``: the relative contrast (a flat frame at a normal brightness).

From the training's good images (the fitting goods and the validation goods) it learns, per
statistic, the range ``[min - m * sd, max + m * sd]``: the goods' own extremes widened by
``m = TrainConfig.exposure_margin`` times the statistic's standard deviation over those goods (so
the margin scales with how much the goods' lighting varies). In the log domain the margin is a
ratio: on the magnetic-tile train split (six lighting conditions, mean grey 50 to 218, margin 1)
the darkest mean grey level allowed is 36 and the lowest relative contrast 0.117 against 0.142
for the flattest good; a line shot under one lighting condition gets a much tighter range.

**How it joins the verdict (chosen for calibration).** The guard's signal is a step: 0 inside
every range, 1.0 outside any of them. The graph takes ``max(score, guard)`` and
``max(anomaly_map, guard)``. Every score lies in [0, 1) and thresholds are calibrated from
validation goods, so:

* on every validation good the guard is 0 (they are inside the range by construction: it is
  learnt from them too), hence the good scores, which set ``fail_at`` and ``review_at`` and the
  stated false-reject and review rates, are exactly those of the unguarded graph; a good-only
  bundle's calibration is therefore unchanged. A validation defect it fires on scores 1.0, a
  FAIL credited to the guard as it would be at the station;
* a frame outside the range scores 1.0, at or above any ``fail_at`` calibration can choose (from
  good scores below 1 plus a margin; ``fail_at`` passes 1 only if validation goods themselves
  score near 1), so it FAILs whatever the thresholds (a graded signal would instead pass or
  review a frame just outside the range, depending on where ``fail_at`` happened to land).

A separate open-set signal with its own threshold would need a new graph output, manifest field
and runtime branch; the max gives the same FAIL with none of them.

**Evidence.** A guard-only FAIL has no local defect, so the anomaly map becomes flat at 1.0: the
station outlines the whole frame as one region at score 1.0 and names it with the defect code
``exposure_out_of_range`` (``vinspect.pipeline.postprocess``, for bundles whose manifest states the
ranges), which is what the NCR evidence and the reviewer's heatmap show: the whole part is unlike
the good ones. The learnt ranges are stated in the manifest's training metrics (``exposure_*``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from vinspect.errors import ModelError

__all__ = ["STATISTICS", "ExposureGuard", "fit_exposure_guard", "frame_statistics"]

STATISTICS = ("mean_grey", "std_grey", "relative_contrast")


def frame_statistics(image: torch.Tensor) -> torch.Tensor:
    """``[H, W, C]`` (or ``[H, W]``) pixels (any dtype holding grey levels) -> ``[3]``: log mean, log std,
    their difference."""
    x = image.to(torch.float32)
    if x.dim() == 2:
        x = x[:, :, None]
    # Row by row, then over the rows (issue 12m): ONNX Runtime sums a whole-frame float32 ReduceMean in
    # one run, which drifts on large frames (4 grey levels off at 12 MP), and its Sub of a 0-d mean from
    # every pixel is slow (34 ms at 5 MP); E[x^2] - mean^2 is fast but loses a low-contrast frame's std
    # to cancellation. Per-row means broadcast as [H, 1, 1] and the variance split into within-row and
    # between-row parts stay exact and fast (bench/exposure_guard_latency.py; tests/training).
    rows = x.mean(dim=(1, 2), keepdim=True)  # [H, 1, 1]
    centred = x - rows
    mean = rows.mean()
    variance = ((centred * centred).mean(dim=(1, 2)) + (rows.reshape(-1) - mean) ** 2).mean()
    std = variance.clamp_min(0.0).sqrt()
    log_mean, log_std = torch.log1p(mean), torch.log1p(std)
    return torch.stack([log_mean, log_std, log_std - log_mean])


class ExposureGuard(nn.Module):
    """Raw frame ``[H, W, C]`` -> ``[1]``: 1.0 when any :func:`frame_statistics` lies outside its
    learnt range ``[low, high]``, else 0.0 (see the module doc for why a step)."""

    low: torch.Tensor  # buffers (register_buffer), typed for mypy
    high: torch.Tensor

    def __init__(self, low: torch.Tensor, high: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("low", low.to(torch.float32).clone())
        self.register_buffer("high", high.to(torch.float32).clone())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        stats = frame_statistics(image)
        outside = (stats < self.low) | (stats > self.high)
        return outside.any().to(torch.float32).reshape(1)

    def ranges(self) -> dict[str, float]:
        """The learnt ranges in grey levels (mean, std) and as a ratio (relative contrast), for the manifest."""
        out: dict[str, float] = {}
        for i, name in enumerate(STATISTICS):
            lo, hi = float(self.low[i]), float(self.high[i])
            if name == "relative_contrast":  # log((1 + std) / (1 + mean))
                out[f"exposure_{name}_min"], out[f"exposure_{name}_max"] = float(np.exp(lo)), float(np.exp(hi))
            else:
                out[f"exposure_{name}_min"], out[f"exposure_{name}_max"] = float(np.expm1(lo)), float(np.expm1(hi))
        return out


@torch.no_grad()
def fit_exposure_guard(images: Sequence[npt.NDArray[np.uint8]], *, margin: float) -> ExposureGuard:
    """Learn the guard's ranges from good images (``[H, W, C]`` or ``[H, W]`` uint8).

    Raises:
        ModelError: no images, or a negative margin.
    """
    if not images:
        raise ModelError("the exposure guard needs good images to learn from")
    if not margin >= 0.0:
        raise ModelError(f"exposure margin must be >= 0, got {margin}")
    stats = torch.stack([frame_statistics(torch.from_numpy(np.array(img))) for img in images]).double()
    spread = stats.std(dim=0, unbiased=True) if stats.shape[0] > 1 else torch.zeros(stats.shape[1], dtype=stats.dtype)
    low = stats.amin(dim=0) - margin * spread
    high = stats.amax(dim=0) + margin * spread
    return ExposureGuard(low, high)
