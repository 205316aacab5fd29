"""Dataset layouts vinspect reads, detected from the folder structure.

* ``mvtec``: ``train/good/*``, ``test/<class>/*``, ``ground_truth/<class>/<stem>_mask.png``.
  Its own train/test folders are the split.
* ``magnetic-tile``: ``<class>/<stem>.jpg`` with the mask ``<class>/<stem>.png`` (optionally
  under ``dev/``); the good class is ``MT_Free``. Split by :func:`vinspect.dataset.split.split_of`.
* ``pairs``: template/test pairs with box files (DeepPCB; see :mod:`vinspect.dataset.pairs`). Each
  sample is a pair's test image, with its template as ``reference_path`` and its boxes; a pair
  with an empty box file is a good part. Split 50/50 by the DeepPCB card's rule.
* ``classes``: plain class folders ``good/`` and ``<defect>/`` of images (optional masks in
  ``masks/<class>/<stem>.png``, boxes in ``boxes/<class>/<stem>.txt``, as labelling exports
  them). Training learns from every image (holding out its own validation part); evaluation scores every image.

A layout is detected, never guessed silently: a folder that fits none raises DatasetError naming
what was expected. Labels are class folder names; the good class is reported by ``good_label``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vinspect.dataset.images import IMAGE_SUFFIXES
from vinspect.dataset.pairs import Box, find_pairs, is_pairs_folder
from vinspect.dataset.split import split_of
from vinspect.errors import DatasetError

__all__ = ["DatasetIndex", "Layout", "Sample", "open_dataset"]

Layout = Literal["mvtec", "magnetic-tile", "classes", "pairs"]
SampleSplit = Literal["train", "test", "all"]
_MT_GOOD = "MT_Free"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One image of a dataset with its ground truth."""

    path: Path
    label: str
    is_good: bool
    stem: str
    split: SampleSplit
    mask_path: Path | None = None
    reference_path: Path | None = None
    boxes: tuple[Box, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetIndex:
    """Every sample of a dataset folder, in a stable (sorted) order."""

    root: Path
    layout: Layout
    good_label: str
    samples: tuple[Sample, ...]
    issues: tuple[tuple[Path, str], ...] = ()

    def train_samples(self) -> list[Sample]:
        """Samples a model may learn from (``all`` for class folders)."""
        return [s for s in self.samples if s.split in ("train", "all")]

    def test_samples(self) -> list[Sample]:
        """Samples an evaluation scores (``all`` for class folders)."""
        return [s for s in self.samples if s.split in ("test", "all")]

    @property
    def defect_labels(self) -> list[str]:
        """Sorted names of the defect classes present."""
        return sorted({s.label for s in self.samples if not s.is_good})


def open_dataset(root: Path) -> DatasetIndex:
    """Detect the layout of ``root`` and index its images.

    Raises:
        DatasetError: ``root`` is missing, fits no layout, or has an empty class folder.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    if (root / "train" / "good").is_dir() and (root / "test").is_dir():
        return _index("mvtec", root, "good", _mvtec(root))
    mt_root = root / "dev" if (root / "dev" / _MT_GOOD).is_dir() else root
    if (mt_root / _MT_GOOD).is_dir():
        return _index("magnetic-tile", root, _MT_GOOD, _magnetic_tile(mt_root))
    if (root / "good").is_dir():
        return _index("classes", root, "good", _classes(root))
    pairs_folder = is_pairs_folder(root)
    if pairs_folder is not None:
        return _pairs(root, pairs_folder)
    raise DatasetError(
        f"{root}: not a dataset: expected MVTec AD (train/good + test/), magnetic-tile "
        f"({_MT_GOOD}/ beside defect folders), class folders (good/ beside defect folders) or "
        f"template/test pairs (<id>_temp.jpg, <id>_test.jpg, <id>.txt)"
    )


def _index(layout: Layout, root: Path, good: str, samples: list[Sample]) -> DatasetIndex:
    if not any(s.is_good for s in samples):
        raise DatasetError(f"{root}: no good images found ({layout} layout, good class {good!r})")
    samples.sort(key=lambda s: (s.split, s.label, s.stem))
    return DatasetIndex(root=root, layout=layout, good_label=good, samples=tuple(samples))


def _images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{folder}: empty class folder (no .png/.jpg/.bmp/.tif images)")
    return files


def _class_dirs(root: Path) -> Iterator[Path]:
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            yield child


def _mvtec(root: Path) -> list[Sample]:
    samples = [
        Sample(path=p, label="good", is_good=True, stem=p.stem, split="train") for p in _images(root / "train" / "good")
    ]
    for cls in _class_dirs(root / "test"):
        for p in _images(cls):
            mask = root / "ground_truth" / cls.name / f"{p.stem}_mask.png"
            samples.append(
                Sample(
                    path=p,
                    label=cls.name,
                    is_good=cls.name == "good",
                    stem=p.stem,
                    split="test",
                    mask_path=mask if mask.is_file() else None,
                )
            )
    return samples


def _magnetic_tile(root: Path) -> list[Sample]:
    samples = []
    for cls in _class_dirs(root):
        jpgs = [p for p in _images(cls) if p.suffix.lower() in {".jpg", ".jpeg"}]
        if not jpgs:
            raise DatasetError(f"{cls}: no .jpg images (magnetic-tile layout keeps masks as .png beside them)")
        for p in jpgs:
            mask = p.with_suffix(".png")
            samples.append(
                Sample(
                    path=p,
                    label=cls.name,
                    is_good=cls.name == _MT_GOOD,
                    stem=p.stem,
                    split=split_of(p.stem),
                    mask_path=mask if mask.is_file() else None,
                )
            )
    return samples


def _classes(root: Path) -> list[Sample]:
    samples = []
    for cls in _class_dirs(root):
        if cls.name in ("masks", "boxes"):  # masks/<class>/<stem>.png, boxes/<class>/<stem>.txt
            continue
        for p in _images(cls):
            mask = root / "masks" / cls.name / f"{p.stem}.png"
            samples.append(
                Sample(
                    path=p,
                    label=cls.name,
                    is_good=cls.name == "good",
                    stem=p.stem,
                    split="all",
                    mask_path=mask if mask.is_file() else None,
                )
            )
    return samples


def _pairs(root: Path, folder: Path) -> DatasetIndex:
    pairs, issues = find_pairs(folder)
    samples = []
    for p in pairs:
        labels = [b.label for b in p.boxes]
        label = max(sorted(set(labels)), key=labels.count) if labels else "good"
        samples.append(
            Sample(
                path=p.test,
                label=label,
                is_good=not p.boxes,
                stem=p.pair_id,
                split="train" if p.split == "train" else "test",
                reference_path=p.template,
                boxes=p.boxes,
            )
        )
    if not samples:
        raise DatasetError(
            f"{folder}: no complete template/test pair with a box file"
            + (f" ({len(issues)} problem(s), first: {issues[0][0]}: {issues[0][1]})" if issues else "")
        )
    samples.sort(key=lambda s: (s.split, s.stem))
    return DatasetIndex(root=root, layout="pairs", good_label="good", samples=tuple(samples), issues=tuple(issues))
