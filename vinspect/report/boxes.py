"""Box matching for defect localisation: IoU >= 0.33, or the true box's centre inside a found one.

The DeepPCB card's rule. A true box is *recalled* when any found region matches it. A found
region is *genuine* when it matches a true box by that rule or its own centre lies inside one (a
tight region around part of a loosely drawn box is not a false alarm); otherwise it is a *false box*.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["IOU_AT", "iou", "match_boxes"]

IOU_AT = 0.33
BoxT = tuple[int, int, int, int]


def iou(a: BoxT, b: BoxT) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _matches(found: BoxT, true: BoxT, iou_at: float) -> bool:
    cx, cy = (true[0] + true[2]) / 2.0, (true[1] + true[3]) / 2.0
    return (found[0] <= cx <= found[2] and found[1] <= cy <= found[3]) or iou(found, true) >= iou_at


def match_boxes(
    found: Sequence[BoxT], true: Sequence[BoxT], *, iou_at: float = IOU_AT
) -> tuple[list[bool], list[bool]]:
    """(recalled flag per true box, genuine flag per found box)."""
    recalled = [any(_matches(f, t, iou_at) for f in found) for t in true]
    genuine = [any(_matches(f, t, iou_at) or _matches(t, f, 1.1) for t in true) for f in found]
    return recalled, genuine
