"""RawOutput: what every model kind (ONNX graph, golden reference) returns for one image, and the
:class:`Model` contract they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from vinspect.types import Region

__all__ = ["Model", "RawOutput"]


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


class Model(Protocol):
    """What a bundle runs: one image in, one :class:`RawOutput` out (``OnnxModel``,
    ``ReferenceModel``, ``CombinedModel``, and fakes such as ``FaultyModel``)."""

    def run(self, image: npt.NDArray[np.uint8]) -> RawOutput:
        """Judge one preprocessed image; raises on failure (never a silent PASS)."""
        ...
