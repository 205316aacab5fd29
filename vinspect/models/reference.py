"""Golden-reference inspection at native resolution: the ``reference`` task's runtime model.

``ReferenceModel.run(image)`` satisfies the same contract as ``OnnxModel.run`` (pixels in,
:class:`RawOutput` out), so preprocess -> model -> postprocess -> decide stays one line and the
heatmap, NCR evidence and review UI show its regions unchanged. numpy + OpenCV only.

Steps, per frame (all at the reference's native resolution):

1. **Frame checks**: a frame of another size -> ``frame_size``; almost all dark -> ``blank_frame``;
   almost all at full scale -> ``saturated_frame``; no contrast -> ``blank_frame``
   (:class:`FrameRejected`, so the part FAILs with that reason).
2. **Photometric normalisation**: the frame's dark and bright class means (Otsu split of its
   histogram) are mapped linearly onto the reference's (one 256-entry LUT).
3. **Registration** (:mod:`vinspect.models.registration`): phase correlation + ECC, bounded;
   beyond the bounds -> ``alignment``.
   Optionally (``local_grid``) a non-rigid touch-up takes out per-tile residual shifts of up to
   3 px (:class:`~vinspect.models.registration.LocalGrid`).
4. **Comparison tolerant to edge jitter**: the registered frame is compared with the min and max of
   the reference over a ``(2*jitter_px+1)²`` neighbourhood (erode/dilate, precomputed): excess =
   max(frame - local max, local min - frame), so a sub-pixel shift of an edge costs nothing while
   material added or missing does. Ignore masks zero the excess; tight masks lower the limits by
   ``tight_factor``; pixels the warp did not cover are ignored.
5. **Blobs**: pixels with excess >= ``contrast_at`` (fraction of the reference contrast), optional
   opening, 8-connected components. A blob's *mass* is its summed excess (contrast x px); blobs
   with ``area >= min_area_px`` and ``mass >= mass_at`` are defect regions (box, area, score).
6. **Score**: ``m / (m + mass_at)`` for the heaviest blob ``m`` (0 without one), so 0.5 is the
   learnt limit, as for the anomaly model's units. The anomaly map is the excess in contrast units
   (``map_at`` = ``contrast_at``; tight-mask gains are not drawn), and the map and region boxes are
   moved back onto the frame's pixel grid, so overlays and NCR evidence line up with the image.

Limits come from ``training/reference.py``, which runs this very module on training pairs; the
bundle's golden samples are judged through it at export and again at every station start-up
(the parity check: same code, same scores within tolerance).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from vinspect.errors import FrameRejected, ModelError, ModelIntegrityError
from vinspect.models.output import RawOutput
from vinspect.models.reference_spec import REFERENCE_NAME, CompareLimits, PinnedFile, ReferenceSpec
from vinspect.models.region_codes import CodeTable, classify, region_features
from vinspect.models.registration import Bounds, LocalGrid, Pyramid, register, warp_to_reference
from vinspect.types import Region

__all__ = [
    "MAX_REGIONS",
    "Blobs",
    "Comparison",
    "PreparedReference",
    "ReferenceModel",
    "load_reference_model",
    "read_pinned_image",
]

MAX_REGIONS = 64
U8 = npt.NDArray[np.uint8]


def _class_means(hist: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Dark and bright class means of a 256-bin histogram split at Otsu's threshold."""
    levels = np.arange(256, dtype=np.float64)
    total = hist.sum()
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 / total - m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1.0
    t = int(np.argmax(between))
    dark = m0[t] / max(w0[t], 1.0)
    bright = (m0[-1] - m0[t]) / max(w1[t], 1.0)
    return float(dark), float(bright)


def _histogram(image: U8) -> npt.NDArray[np.float64]:
    return np.asarray(cv2.calcHist([image], [0], None, [256], [0, 256]), dtype=np.float64).ravel()


class PreparedReference:
    """One golden image with everything precomputed for fast comparisons.

    Args:
        part_number: the part it stands for.
        image: 8-bit greyscale golden image.
        limits: comparison limits.
        ignore_mask / tight_mask: optional 8-bit masks of the same size (non-zero = inside).
    """

    def __init__(
        self,
        part_number: str,
        image: U8,
        *,
        limits: CompareLimits,
        ignore_mask: U8 | None = None,
        tight_mask: U8 | None = None,
    ) -> None:
        if image.ndim != 2 or image.dtype != np.uint8:
            raise ModelError(
                f"reference {part_number}: golden image must be 8-bit greyscale, got {image.dtype} {image.shape}"
            )
        self.part_number, self.image, self.limits = part_number, image, limits
        self.pyramid = Pyramid(image)
        hist = _histogram(image)
        self.dark, self.bright = _class_means(hist)
        self.black, self.white = float(hist[:8].sum() / hist.sum()), float(hist[248:].sum() / hist.sum())
        self.contrast = self.bright - self.dark
        if self.contrast < 16:
            raise ModelError(f"reference {part_number}: golden image has no contrast ({self.contrast:.1f} grey levels)")
        k = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * limits.jitter_px + 1, 2 * limits.jitter_px + 1))
        self.lo: U8 = np.asarray(cv2.erode(image, k), dtype=np.uint8)
        self.hi: U8 = np.asarray(cv2.dilate(image, k), dtype=np.uint8)
        self.bright_map: U8 = (image >= (self.dark + self.bright) / 2).astype(np.uint8)
        self.local = LocalGrid(image, grid=limits.local_grid) if limits.local_grid else None
        self.gain = np.ones(image.shape, dtype=np.float32)
        if tight_mask is not None:
            self.gain[_mask(tight_mask, image, part_number, "tight") > 0] = 1.0 / limits.tight_factor
        self.keep: U8 = np.full(image.shape, 255, dtype=np.uint8)
        if ignore_mask is not None:
            ignored = _mask(ignore_mask, image, part_number, "ignore") > 0
            if ignored.all():
                raise ModelError(f"reference {part_number}: the ignore mask covers the whole image")
            self.keep[ignored] = 0
            self.gain[ignored] = 0.0
        level = limits.contrast_at * self.contrast / np.maximum(self.gain, 1e-6)
        self.threshold: U8 = np.clip(np.ceil(level), 1, 255).astype(np.uint8)


def _mask(mask: U8, image: U8, part_number: str, kind: str) -> U8:
    if mask.shape != image.shape:
        raise ModelError(
            f"reference {part_number}: {kind} mask is {mask.shape[1]}x{mask.shape[0]}, "
            f"golden image {image.shape[1]}x{image.shape[0]}"
        )
    if not mask.any():
        raise ModelError(f"reference {part_number}: {kind} mask is empty (all zero); leave it out instead")
    return mask


@dataclass(frozen=True, slots=True)
class Blobs:
    """Connected defect pixels: label image, boxes ``(x0, y0, x1, y1)`` (exclusive), area, mass."""

    labels: npt.NDArray[np.int32]
    binary: U8
    boxes: npt.NDArray[np.int64]
    area: npt.NDArray[np.int64]
    mass: npt.NDArray[np.float64]

    def mask(self, i: int) -> npt.NDArray[np.bool_]:
        """Blob ``i``'s pixels over its box."""
        x0, y0, x1, y1 = (int(v) for v in self.boxes[i])
        return np.asarray((self.labels[y0:y1, x0:x1] == i + 1) & (self.binary[y0:y1, x0:x1] > 0), dtype=np.bool_)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One frame on the reference grid: registered pixels, excess brighter / darker than the
    reference allows, their masked max, and the warp reference -> frame."""

    warped: U8
    pos: U8
    neg: U8
    excess: U8
    matrix: npt.NDArray[np.float32]


class ReferenceModel:
    """Judges frames against one prepared golden reference (see the module docstring)."""

    def __init__(self, spec: ReferenceSpec, reference: PreparedReference) -> None:
        self.spec, self.reference = spec, reference
        self.codes = CodeTable(spec.codes) if spec.codes is not None else None
        r = spec.registration
        self.bounds = Bounds(
            max_shift_px=r.max_shift_px, max_rotation_deg=r.max_rotation_deg, min_correlation=r.min_correlation
        )

    def with_reference(self, image: U8, *, part_number: str = "pair") -> ReferenceModel:
        """The same limits against another golden image (evaluation of template/test pairs)."""
        return ReferenceModel(self.spec, PreparedReference(part_number, image, limits=self.spec.limits))

    def run(self, image: U8) -> RawOutput:
        """Judge one H×W or H×W×1 uint8 frame.

        Raises:
            FrameRejected: wrong size, blank, saturated or unregistrable frame.
        """
        ref, limits = self.reference, self.spec.limits
        c = self.compare(image)
        blobs = self.find_blobs(c.excess)
        h, w = c.excess.shape
        on_frame = cv2.warpAffine(c.excess, c.matrix, (w, h), flags=cv2.INTER_NEAREST)
        amap = np.asarray(on_frame, dtype=np.float32) * np.float32(1.0 / ref.contrast)
        regions, probs = self._regions(blobs, c)
        heaviest = float(blobs.mass.max()) if blobs.mass.size else 0.0
        score = heaviest / (heaviest + limits.mass_at)
        return RawOutput(score=score, anomaly_map=amap, defect_probs=probs, regions=regions)

    def measure(self, image: U8) -> list[tuple[tuple[int, int, int, int], float]]:
        """Every blob at or above ``min_area_px`` as (box, mass), unthresholded on mass (training).

        Raises:
            FrameRejected: as :meth:`run`.
        """
        c = self.compare(image)
        blobs = self.find_blobs(c.excess)
        return [
            (self.frame_box(blobs.boxes[i], c.matrix), float(blobs.mass[i])) for i in np.flatnonzero(blobs.mass > 0)
        ]

    def frame_box(self, box: npt.NDArray[np.int64], matrix: npt.NDArray[np.float32]) -> tuple[int, int, int, int]:
        """A reference-grid box in frame pixels (around its moved corners), padded by ``box_pad_px``."""
        x0, y0, x1, y1 = (float(v) for v in box)
        pts = matrix.astype(np.float64) @ np.array([[x0, x1, x0, x1], [y0, y0, y1, y1], [1.0, 1.0, 1.0, 1.0]])
        p = self.spec.limits.box_pad_px
        h, w = self.reference.image.shape
        return (
            max(int(np.floor(pts[0].min())) - p, 0),
            max(int(np.floor(pts[1].min())) - p, 0),
            min(int(np.ceil(pts[0].max())) + p, w),
            min(int(np.ceil(pts[1].max())) + p, h),
        )

    def compare(self, image: U8) -> Comparison:
        """Register the frame and compare it with the reference (reference grid)."""
        frame = image[:, :, 0] if image.ndim == 3 else image
        ref = self.reference
        normalised = self._normalise(frame, self._check_frame(frame))
        alignment = register(ref.pyramid, Pyramid(normalised), bounds=self.bounds)
        warped, covered = warp_to_reference(normalised, alignment)
        if ref.local is not None:
            warped = ref.local.apply(warped)
        pos = np.asarray(cv2.subtract(warped, ref.hi), dtype=np.uint8)
        neg = np.asarray(cv2.subtract(ref.lo, warped), dtype=np.uint8)
        valid = cv2.bitwise_and(cv2.erode(covered, np.ones((5, 5), np.uint8)), ref.keep)
        excess = np.asarray(cv2.bitwise_and(cv2.max(pos, neg), valid), dtype=np.uint8)
        return Comparison(warped=warped, pos=pos, neg=neg, excess=excess, matrix=alignment.matrix)

    def _check_frame(self, frame: U8) -> tuple[float, float]:
        """Refuse unusable frames; return the frame's dark and bright class means."""
        ref, limits = self.reference, self.spec.limits
        if frame.shape != ref.image.shape:
            raise FrameRejected(
                "frame_size",
                f"frame is {frame.shape[1]}x{frame.shape[0]}, reference "
                f"{ref.part_number} is {ref.image.shape[1]}x{ref.image.shape[0]}",
            )
        hist = _histogram(frame)
        n = hist.sum()
        black, white = hist[:8].sum() / n, hist[248:].sum() / n
        levels = np.arange(256, dtype=np.float64)
        mean = float((hist * levels).sum() / n)
        spread = float(np.sqrt((hist * (levels - mean) ** 2).sum() / n))
        if spread < 0.1 * ref.contrast:
            reason = "saturated_frame" if mean >= 200 else "blank_frame"
            raise FrameRejected(reason, f"flat frame: mean {mean:.0f}, spread {spread:.1f} grey levels")
        # A reference that is itself nearly all black or white (a bare board) must not trip these.
        if black >= max(limits.max_dark_fraction, ref.black + 0.05):
            raise FrameRejected("blank_frame", f"{black:.1%} of the pixels are black (reference {ref.black:.1%})")
        if white >= max(limits.max_bright_fraction, ref.white + 0.05):
            raise FrameRejected(
                "saturated_frame", f"{white:.1%} of the pixels are saturated (reference {ref.white:.1%})"
            )
        dark, bright = _class_means(hist)
        if bright - dark < 0.25 * ref.contrast:
            raise FrameRejected(
                "blank_frame", f"contrast {bright - dark:.1f} grey levels, the reference has {ref.contrast:.1f}"
            )
        return dark, bright

    def _normalise(self, frame: U8, levels: tuple[float, float]) -> U8:
        dark, bright = levels
        ref = self.reference
        gain = ref.contrast / max(bright - dark, 1e-6)
        lut = np.clip((np.arange(256, dtype=np.float64) - dark) * gain + ref.dark, 0, 255)
        return np.asarray(cv2.LUT(frame, np.round(lut).astype(np.uint8)), dtype=np.uint8)

    def find_blobs(self, excess: U8) -> Blobs:
        """Threshold, open, group (pixels within ``group_px`` join one blob) and measure."""
        limits, ref = self.spec.limits, self.reference
        binary = np.asarray(cv2.compare(excess, ref.threshold, cv2.CMP_GE), dtype=np.uint8)
        if limits.open_px:
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * limits.open_px + 1, 2 * limits.open_px + 1))
            binary = np.asarray(cv2.morphologyEx(binary, cv2.MORPH_OPEN, k), dtype=np.uint8)
        grouped = binary
        if limits.group_px:
            grouped = np.asarray(cv2.dilate(binary, np.ones((limits.group_px + 1,) * 2, np.uint8)), dtype=np.uint8)
        count, labels = cv2.connectedComponents(grouped, connectivity=8)
        points = cv2.findNonZero(binary)  # far faster than np.flatnonzero on a sparse mask
        xy = np.zeros((0, 2), dtype=np.int64) if points is None else points.reshape(-1, 2).astype(np.int64)
        xs, ys = xy[:, 0], xy[:, 1]
        idx = ys * binary.shape[1] + xs
        lab = np.asarray(labels, dtype=np.int32).ravel()[idx] - 1
        n = int(count) - 1
        boxes = np.zeros((n, 4), dtype=np.int64)
        boxes[:, :2] = np.iinfo(np.int64).max
        np.minimum.at(boxes[:, 0], lab, xs)
        np.minimum.at(boxes[:, 1], lab, ys)
        np.maximum.at(boxes[:, 2], lab, xs + 1)
        np.maximum.at(boxes[:, 3], lab, ys + 1)
        weights = excess.ravel()[idx].astype(np.float64) * ref.gain.ravel()[idx] / ref.contrast
        mass = np.bincount(lab, weights=weights, minlength=n).astype(np.float64)
        area = np.bincount(lab, minlength=n).astype(np.int64)
        mass[area < limits.min_area_px] = 0.0
        return Blobs(labels=np.asarray(labels, dtype=np.int32), binary=binary, boxes=boxes, area=area, mass=mass)

    def _regions(self, blobs: Blobs, c: Comparison) -> tuple[tuple[Region, ...], npt.NDArray[np.float32]]:
        limits, codes, ref = self.spec.limits, self.codes, self.reference
        order = [int(i) for i in np.argsort(-blobs.mass) if blobs.mass[i] >= limits.mass_at][:MAX_REGIONS]
        probs = np.zeros(len(codes.labels) if codes else 0, dtype=np.float32)
        test_bright = (c.warped >= (ref.dark + ref.bright) / 2).astype(np.uint8) if codes else c.warped
        regions = []
        for rank, i in enumerate(order):
            box = tuple(int(v) for v in blobs.boxes[i])
            assert len(box) == 4
            label = "reference_mismatch"
            if codes is not None:
                feats = region_features(
                    box=box,
                    blob=blobs.mask(i),
                    pos=c.pos,
                    neg=c.neg,
                    ref_bright=ref.bright_map,
                    test_bright=test_bright,
                )
                label, p = classify(feats, codes)
                probs = p if rank == 0 else probs
            m = float(blobs.mass[i])
            regions.append(
                Region(
                    label=label,
                    score=m / (m + limits.mass_at),
                    box_xyxy=self.frame_box(blobs.boxes[i], c.matrix),
                    area_px=int(blobs.area[i]),
                )
            )
        return tuple(regions), probs


def read_pinned_image(bundle_dir: Path, pinned: PinnedFile) -> U8:
    """Read a bundle image whose bytes must hash to ``pinned.sha256``; decode the hashed bytes.

    Raises:
        ModelError: the file is missing or not an 8-bit image.
        ModelIntegrityError: its sha256 differs from the pinned one (edited or corrupt).
    """
    path = bundle_dir / pinned.file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: reference file missing or unreadable ({exc.strerror or exc})") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != pinned.sha256:
        raise ModelIntegrityError(
            f"{path}: sha256 {actual} does not match the pinned {pinned.sha256} (edited or corrupt reference)"
        )
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint8:
        raise ModelError(f"{path}: not an 8-bit image")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    return np.ascontiguousarray(image, dtype=np.uint8)


def load_reference_model(bundle_dir: Path, *, expected_sha256: str, part_number: str | None) -> ReferenceModel:
    """Load ``reference.json`` (pinned by the manifest) and the chosen part's golden image and masks.

    Raises:
        ModelError: missing or invalid files, unknown part number, bad masks.
        ModelIntegrityError: any file's sha256 differs from the one pinned for it.
    """
    path = bundle_dir / REFERENCE_NAME
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: reference task file missing ({exc.strerror or exc})") from exc
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise ModelIntegrityError(f"{path}: sha256 does not match the manifest's {expected_sha256} (edited or corrupt)")
    try:
        spec = ReferenceSpec.model_validate_json(data)
    except ValueError as exc:
        raise ModelError(f"{path}: invalid reference task: {exc}") from exc
    try:
        part = spec.part(part_number)
    except KeyError as exc:
        raise ModelError(f"{bundle_dir}: {exc.args[0]}") from exc
    ignore = read_pinned_image(bundle_dir, part.ignore_mask) if part.ignore_mask else None
    tight = read_pinned_image(bundle_dir, part.tight_mask) if part.tight_mask else None
    prepared = PreparedReference(
        part.part_number,
        read_pinned_image(bundle_dir, part.image),
        limits=spec.limits,
        ignore_mask=ignore,
        tight_mask=tight,
    )
    return ReferenceModel(spec, prepared)
