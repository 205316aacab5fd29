"""Register a frame to its golden reference: bounded cross-correlation (coarse) + ECC (refine).

Registration is not an ONNX op, so it is a documented OpenCV step of the runtime; the trainer
calls this same code (``training/reference.py``), so limits learnt there hold here.

Method (all on float32 copies of the 8-bit pixels):

1. **Coarse shift**: normalised cross-correlation (``cv2.matchTemplate``, ``TM_CCOEFF_NORMED``) of
   the reference's centre on a 1/4-scale copy, searched only within the shift bound. Phase
   correlation (``cv2.phaseCorrelate``) was tried first and rejected: on DeepPCB's binarised boards
   it put the peak 100-300 px off on 5-14 of 300 test/template pairs (with or without a Hann
   window), which no refinement recovers. The bounded search cannot find a shift beyond the
   bound, so such a frame fails ECC's correlation limit instead: ``alignment``.
2. **Refine**: ``cv2.findTransformECC`` (``MOTION_EUCLIDEAN``) on a 1/4-scale copy starts from that
   shift and estimates rotation and sub-pixel shift; ECC is invariant to gain and offset.
   ``MOTION_AFFINE`` was tried and rejected: on boards dominated by parallel traces its shear/scale
   terms are ill-conditioned (7 of 142 DeepPCB train templates misregistered by 0.5-3 px, against
   none with the Euclidean model, max corner error 0.37 px). Scale is therefore not estimated: a
   fixtured camera does not zoom, and a frame whose scale is off shows as a low ECC correlation
   (alignment) or as defects along every edge (score) - a FAIL either way.
   The 1/4-scale warp is lifted to full resolution exactly (pixel-centre convention of
   ``INTER_AREA`` downscaling).
3. **Bounds**: shift and rotation must lie inside the configured bounds and the
   ECC correlation must reach ``min_correlation``; otherwise :class:`FrameRejected` with reason
   ``alignment``. Such a part is a FAIL, never a PASS.

The residual misregistration (typically well under a pixel) is absorbed by the comparison's edge
tolerance (``vinspect.models.reference``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.errors import FrameRejected

__all__ = ["Alignment", "Bounds", "LocalGrid", "Pyramid", "register", "warp_to_reference"]

ALIGNMENT = "alignment"
_ECC_ITERATIONS = 20
_ECC_EPS = 1e-3
_MOTION = cv2.MOTION_EUCLIDEAN
FloatImage = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounds:
    """How far a frame may sit from its reference and still be judged."""

    max_shift_px: float = 20.0
    max_rotation_deg: float = 2.0
    min_correlation: float = 0.6


@dataclass(frozen=True, slots=True, kw_only=True)
class Alignment:
    """The warp taking reference coordinates to frame coordinates, and what it amounts to."""

    matrix: npt.NDArray[np.float32]  # 2x3
    shift_px: float
    rotation_deg: float
    correlation: float


class Pyramid:
    """The 1/4 scale float copy of one image, built once."""

    def __init__(self, image: npt.NDArray[np.uint8]) -> None:
        h, w = image.shape[:2]
        if h < 32 or w < 32:
            raise ValueError(f"image {w}x{h} is too small to register (32x32 minimum)")
        full = image.astype(np.float32)
        self.shape = (h, w)
        self.quarter: FloatImage = np.asarray(cv2.resize(full, (w // 4, h // 4), interpolation=cv2.INTER_AREA))


def _coarse_shift(ref: Pyramid, frame: Pyramid, *, max_shift_px: float) -> tuple[float, float]:
    h, w = ref.quarter.shape
    m = min(math.ceil(max_shift_px / 4.0) + 2, h // 4, w // 4)
    scores = cv2.matchTemplate(frame.quarter, ref.quarter[m : h - m, m : w - m], cv2.TM_CCOEFF_NORMED)
    _, _, _, (x, y) = cv2.minMaxLoc(scores)
    return 4.0 * (x - m), 4.0 * (y - m)


def _ecc(ref: Pyramid, frame: Pyramid, shift: tuple[float, float]) -> tuple[float, npt.NDArray[np.float32]]:
    warp = np.array([[1.0, 0.0, shift[0] / 4.0], [0.0, 1.0, shift[1] / 4.0]], dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, _ECC_ITERATIONS, _ECC_EPS)
    try:
        cc, found = cv2.findTransformECC(
            ref.quarter, frame.quarter, warp, _MOTION, criteria, np.full(ref.quarter.shape, 255, np.uint8), 1
        )
    except cv2.error as exc:  # ECC raises when it diverges or the images have no texture in common
        raise FrameRejected(ALIGNMENT, f"registration did not converge ({str(exc).strip().splitlines()[-1]})") from exc
    return float(cc), np.asarray(found, dtype=np.float32)


def _lift(warp: npt.NDArray[np.float32], factor: float) -> npt.NDArray[np.float32]:
    """A warp in 1/factor-scale pixel coordinates, in full-scale ones (INTER_AREA pixel centres)."""
    a = warp[:, :2].astype(np.float64)
    offset = (factor - 1.0) / 2.0
    t = factor * warp[:, 2].astype(np.float64) + offset * (np.eye(2) - a) @ np.ones(2)
    return np.hstack([a, t[:, None]]).astype(np.float32)


def register(ref: Pyramid, frame: Pyramid, *, bounds: Bounds) -> Alignment:
    """Find the warp reference -> frame.

    Raises:
        FrameRejected: reason ``alignment``: ECC did not converge, the correlation is below
            ``bounds.min_correlation``, or the shift or rotation is beyond its bound.
    """
    if frame.shape != ref.shape:
        raise FrameRejected(
            "frame_size", f"frame is {frame.shape[1]}x{frame.shape[0]}, reference is {ref.shape[1]}x{ref.shape[0]}"
        )
    shift = _coarse_shift(ref, frame, max_shift_px=bounds.max_shift_px)
    cc, warp = _ecc(ref, frame, shift)
    matrix = _lift(warp, 4.0)
    a = matrix[:, :2].astype(np.float64)
    rotation = math.degrees(math.atan2(a[1, 0], a[0, 0]))
    h, w = ref.shape
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    moved = float(np.hypot(*(a @ centre + matrix[:, 2].astype(np.float64) - centre)))
    alignment = Alignment(matrix=matrix, shift_px=moved, rotation_deg=rotation, correlation=cc)
    _check(alignment, bounds=bounds)
    return alignment


def _check(al: Alignment, *, bounds: Bounds) -> None:
    problems = []
    if not al.correlation >= bounds.min_correlation:
        problems.append(f"correlation {al.correlation:.3f} < {bounds.min_correlation:g}")
    if al.shift_px > bounds.max_shift_px:
        problems.append(f"shift {al.shift_px:.1f} px > {bounds.max_shift_px:g} px")
    if abs(al.rotation_deg) > bounds.max_rotation_deg:
        problems.append(f"rotation {al.rotation_deg:.2f} deg beyond ±{bounds.max_rotation_deg:g} deg")
    if problems:
        raise FrameRejected(ALIGNMENT, "; ".join(problems))


def warp_to_reference(
    image: npt.NDArray[np.uint8], al: Alignment
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """The frame resampled onto the reference grid, and a 0/255 mask of pixels it covers."""
    h, w = image.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = np.asarray(
        cv2.warpAffine(image, al.matrix, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE), dtype=np.uint8
    )
    inverse = cv2.invertAffineTransform(al.matrix).astype(np.float64)
    corners = np.array([[0.0, w - 1.0, w - 1.0, 0.0], [0.0, 0.0, h - 1.0, h - 1.0], [1.0, 1.0, 1.0, 1.0]])
    polygon = np.round(inverse @ corners).T.astype(np.int32)
    covered = np.zeros((h, w), dtype=np.uint8)
    cv2.fillConvexPoly(covered, polygon, 255)
    return warped, covered


class LocalGrid:
    """Non-rigid touch-up after the rigid warp: per-tile residual shifts, smoothly interpolated.

    Boards are not rigid on camera (lens distortion, stretched film, local etching): after the
    best rigid warp, traces in one corner can still sit 1-3 px off. Each of ``grid`` x ``grid``
    tiles is phase-correlated (1/2 scale, Hann window) with the reference; shifts with a weak peak
    or beyond ``max_px`` count as zero; the field is interpolated bilinearly between tile centres
    and applied with ``cv2.remap``. Tiles are large against a defect, so a defect does not move
    its tile. Built once per reference.
    """

    def __init__(
        self, reference: npt.NDArray[np.uint8], *, grid: int, max_px: float = 3.0, min_response: float = 0.05
    ) -> None:
        h, w = reference.shape
        self.grid, self.max_px, self.min_response = grid, max_px, min_response
        half = np.asarray(cv2.resize(reference.astype(np.float32), (w // 2, h // 2), interpolation=cv2.INTER_AREA))
        self.tile = (half.shape[0] // grid, half.shape[1] // grid)
        self.ref_tiles = [
            half[r * self.tile[0] : (r + 1) * self.tile[0], c * self.tile[1] : (c + 1) * self.tile[1]]
            for r in range(grid)
            for c in range(grid)
        ]
        self.window = np.asarray(cv2.createHanningWindow((self.tile[1], self.tile[0]), cv2.CV_32F))
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        self.base = np.ascontiguousarray(np.dstack([xs, ys]))
        self.shape = (h, w)

    def residuals(self, warped: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Per-tile (dx, dy) in full-scale pixels: where each reference tile sits in ``warped``."""
        h, w = self.shape
        half = np.asarray(cv2.resize(warped.astype(np.float32), (w // 2, h // 2), interpolation=cv2.INTER_AREA))
        th, tw = self.tile
        field = np.zeros((self.grid, self.grid, 2), dtype=np.float32)
        for i, ref in enumerate(self.ref_tiles):
            r, c = divmod(i, self.grid)
            (dx, dy), response = cv2.phaseCorrelate(
                ref, half[r * th : (r + 1) * th, c * tw : (c + 1) * tw], self.window
            )
            if response >= self.min_response and math.hypot(dx, dy) * 2.0 <= self.max_px:
                field[r, c] = (2.0 * dx, 2.0 * dy)
        return field

    def apply(self, warped: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """``warped`` with its residual shifts taken out."""
        field = self.residuals(warped)
        if not field.any():
            return warped
        h, w = self.shape
        dense = np.asarray(cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
        return np.asarray(
            cv2.remap(warped, cv2.add(self.base, dense), None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
            dtype=np.uint8,
        )
