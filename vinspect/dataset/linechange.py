"""Line-like changes of an image: what a fixture and a lamp do to a part between shots.

Shift up to ``max_shift_px``, rotation up to ``max_rotation_deg`` about the centre, gain and
offset up to ``max_light`` (fraction), Gaussian sensor noise and a JPEG re-encode. Boxes move
with the image (the axis-aligned box around the moved corners). Used by the reference trainer
(limits are learnt on changed training pairs), the DeepPCB benchmark and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["LineChange", "apply_change", "move_box", "random_change"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LineChange:
    """One concrete change."""

    dx_px: float = 0.0
    dy_px: float = 0.0
    rotation_deg: float = 0.0
    gain: float = 1.0
    offset: float = 0.0
    noise_sigma: float = 0.0
    jpeg_quality: int | None = None
    seed: int = 0


def random_change(
    rng: np.random.Generator,
    *,
    max_shift_px: float = 10.0,
    max_rotation_deg: float = 1.0,
    max_light: float = 0.10,
    noise_sigma: float = 2.0,
) -> LineChange:
    """A change drawn uniformly within the limits (JPEG quality 85-95)."""
    return LineChange(
        dx_px=float(rng.uniform(-max_shift_px, max_shift_px)),
        dy_px=float(rng.uniform(-max_shift_px, max_shift_px)),
        rotation_deg=float(rng.uniform(-max_rotation_deg, max_rotation_deg)),
        gain=float(rng.uniform(1 - max_light, 1 + max_light)),
        offset=float(rng.uniform(-max_light, max_light) * 255.0),
        noise_sigma=noise_sigma,
        jpeg_quality=int(rng.integers(85, 96)),
        seed=int(rng.integers(1 << 31)),
    )


def _matrix(change: LineChange, shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
    h, w = shape[:2]
    m = np.asarray(cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), change.rotation_deg, 1.0), dtype=np.float64)
    m[:, 2] += np.array([change.dx_px, change.dy_px])
    return m


def apply_change(image: npt.NDArray[np.uint8], change: LineChange) -> npt.NDArray[np.uint8]:
    """The image as the camera would see it after ``change`` (same size, border replicated)."""
    h, w = image.shape[:2]
    out = cv2.warpAffine(
        image, _matrix(change, image.shape), (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    ).astype(np.float32)
    out = out * change.gain + change.offset
    if change.noise_sigma > 0:
        out += np.random.default_rng(change.seed).normal(0.0, change.noise_sigma, out.shape).astype(np.float32)
    result = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if change.jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", result, [cv2.IMWRITE_JPEG_QUALITY, change.jpeg_quality])
        if ok:
            result = np.asarray(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), dtype=np.uint8)
    return result


def move_box(box: tuple[int, int, int, int], change: LineChange, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The box around ``box``'s corners after ``change``, clipped to the image."""
    x1, y1, x2, y2 = box
    m = _matrix(change, shape)
    pts = m @ np.array([[x1, x2, x1, x2], [y1, y1, y2, y2], [1, 1, 1, 1]], dtype=np.float64)
    h, w = shape[:2]
    return (
        int(np.clip(np.floor(pts[0].min()), 0, w)),
        int(np.clip(np.floor(pts[1].min()), 0, h)),
        int(np.clip(np.ceil(pts[0].max()), 0, w)),
        int(np.clip(np.ceil(pts[1].max()), 0, h)),
    )
