"""A reference bundle that also carries an anomaly model: a part fails on either signal.

The anomaly graph's outputs are brought into the reference's units before they are merged:
its score is scaled so that its own calibrated ``fail_at`` lands on the reference's 0.5, its map
is resized to the frame and scaled so that its ``map_at`` lands on the reference's ``contrast_at``.
Score = max of both; map = pixel-wise max of both (so the heatmap shows both signals); regions =
the reference's measured regions plus, when the anomaly signal alone fails the part, the anomaly
map's blobs (label ``anomaly``), worst first.
A frame the reference refuses (size, blank, alignment) is refused whatever the anomaly model says.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.models.output import RawOutput
from vinspect.models.reference import ReferenceModel
from vinspect.models.reference_spec import AnomalyCompanion
from vinspect.types import Region

__all__ = ["CombinedModel", "RunsImages"]

MAX_ANOMALY_REGIONS = 16
U8 = npt.NDArray[np.uint8]


class RunsImages(Protocol):
    """Anything with the model contract (``OnnxModel``)."""

    def run(self, image: U8) -> RawOutput: ...


class CombinedModel:
    """Golden-reference inspection plus an anomaly model, fused as the module docstring says."""

    def __init__(self, reference: ReferenceModel, anomaly: RunsImages, companion: AnomalyCompanion) -> None:
        self.reference, self.anomaly, self.companion = reference, anomaly, companion

    def with_reference(self, image: U8, *, part_number: str = "pair") -> CombinedModel:
        """The same limits and anomaly model against another golden image (pair evaluation)."""
        return CombinedModel(
            self.reference.with_reference(image, part_number=part_number), self.anomaly, self.companion
        )

    def run(self, image: U8) -> RawOutput:
        """Judge one H×W×1 frame with both models (see the module docstring)."""
        ref = self.reference.run(image)
        grey = image if image.ndim == 3 else image[:, :, None]
        tensor = np.ascontiguousarray(np.repeat(grey, 3, axis=2) if self.companion.channels == 3 else grey)
        raw = self.anomaly.run(tensor)
        c, ref_level = self.companion, self.reference.spec.limits.contrast_at
        anomaly_score = 0.5 * raw.score / c.fail_at
        score = max(ref.score, anomaly_score)
        h, w = grey.shape[:2]
        amap = np.asarray(cv2.resize(raw.anomaly_map, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
        amap *= np.float32(ref_level / c.map_at)
        merged = np.maximum(ref.anomaly_map, amap)
        extra = _blobs(amap, level=ref_level) if anomaly_score >= 0.5 else []  # only when it fails the part
        regions = sorted((*(ref.regions or ()), *extra), key=lambda r: -r.score)
        return RawOutput(score=float(score), anomaly_map=merged, defect_probs=ref.defect_probs, regions=tuple(regions))


def _blobs(amap: npt.NDArray[np.float32], *, level: float) -> list[Region]:
    mask = (amap >= level).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        peak = float(amap[labels == i].max())
        out.append(Region(label="anomaly", score=0.5 * peak / level, box_xyxy=(x, y, x + w, y + h), area_px=area))
    out.sort(key=lambda r: -r.score)
    return out[:MAX_ANOMALY_REGIONS]
