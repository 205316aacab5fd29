"""RawOutput: what every model kind (ONNX graph, golden reference) returns for one image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vinspect.types import Region

__all__ = ["RawOutput"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RawOutput:
    """A model's outputs for one image.

    ``regions`` is None for the ONNX graph (postprocess outlines regions on the anomaly map) and
    the measured defect regions for a model that finds them itself (the golden reference).
    """

    score: float
    anomaly_map: npt.NDArray[np.float32]
    defect_probs: npt.NDArray[np.float32]
    regions: tuple[Region, ...] | None = None
