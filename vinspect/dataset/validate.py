"""Dataset validation that names every bad file and why, instead of failing on the first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vinspect.dataset.images import read_image
from vinspect.dataset.layouts import DatasetIndex
from vinspect.errors import ImageDecodeError

__all__ = ["Problem", "validate_dataset"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One file that cannot be used, and why."""

    path: Path
    reason: str


def validate_dataset(index: DatasetIndex) -> list[Problem]:
    """Decode every image (and mask) of ``index``; return every problem found, in file order."""
    problems: list[Problem] = []
    for sample in index.samples:
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
            problems.append(Problem(path=sample.mask_path,
                                    reason=f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                                           f"{image.shape[1]}x{image.shape[0]}"))
    return problems
