"""Dataset validation that names every bad file and why, instead of failing on the first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vinspect.dataset.images import read_image
from vinspect.dataset.layouts import DatasetIndex, Sample
from vinspect.errors import ImageDecodeError

__all__ = ["Problem", "validate_dataset"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One file that cannot be used, and why."""

    path: Path
    reason: str


def validate_dataset(index: DatasetIndex) -> list[Problem]:
    """Decode every image (mask, template) of ``index``; return every problem found, in file order.

    Pair datasets also report missing partners, missing and malformed box files (with line
    numbers), template/test size mismatches and boxes outside the image.
    """
    problems = [Problem(path=path, reason=reason) for path, reason in index.issues]
    for sample in index.samples:
        if sample.reference_path is not None:
            problems.extend(_check_pair(sample))
        try:
            image = read_image(sample.path)
        except ImageDecodeError as exc:
            problems.append(Problem(path=sample.path, reason=str(exc).removeprefix(f"{sample.path}: ")))
            continue
        if sample.mask_path is None:
            continue
        try:
            mask = read_image(sample.mask_path)
        except ImageDecodeError as exc:
            problems.append(Problem(path=sample.mask_path, reason=str(exc).removeprefix(f"{sample.mask_path}: ")))
            continue
        if mask.shape[:2] != image.shape[:2]:
            problems.append(
                Problem(
                    path=sample.mask_path,
                    reason=f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                    f"{image.shape[1]}x{image.shape[0]}",
                )
            )
    return problems


def _check_pair(sample: Sample) -> list[Problem]:
    assert sample.reference_path is not None
    try:
        ref = read_image(sample.reference_path)
    except ImageDecodeError as exc:
        return [Problem(path=sample.reference_path, reason=str(exc).removeprefix(f"{sample.reference_path}: "))]
    try:
        test = read_image(sample.path)
    except ImageDecodeError:
        return []  # reported by the image loop
    out = []
    if ref.shape[:2] != test.shape[:2]:
        out.append(
            Problem(
                path=sample.path,
                reason=f"test image is {test.shape[1]}x{test.shape[0]} but its template "
                f"is {ref.shape[1]}x{ref.shape[0]}",
            )
        )
    h, w = test.shape[:2]
    for b in sample.boxes:
        x1, y1, x2, y2 = b.box_xyxy
        if x2 > w or y2 > h:
            out.append(
                Problem(path=sample.path, reason=f"box {x1} {y1} {x2} {y2} ({b.label}) lies outside the {w}x{h} image")
            )
    return out
