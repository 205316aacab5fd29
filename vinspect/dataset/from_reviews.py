"""Build a labelled training set from what reviewers adjudicated (``vinspect dataset from-reviews``).

Input: adjudicated parts read from the store (:mod:`vinspect.store.adjudicated`), each with its
image's evidence hash and provenance, optionally merged over an existing dataset. Output: the
``classes`` layout ``vinspect train`` reads (``good/``, ``<defect code>/``), one provenance file
beside every image (``<name>.provenance.json``: which NCR, reviewer, time, signature hash and
model, or which dataset file), and ``dataset.json`` at the root with every entry and the set's
``dataset_sha256`` (a hash of the sorted entries, so the same inputs always give the same hash
and a bundle trained from it can name its data).

Rules, each with a reason:

* **Deduplicated by pixels**, not by file bytes: the same frame re-encoded is one example. The
  first occurrence wins (the merged dataset first, then NCRs in number order).
* **Conflicting labels are refused**: the same pixels labelled two ways (a dataset image the
  reviewers judged differently) names both sources; someone has to settle it.
* **No leakage**: an image whose pixels are also a bundle's golden sample or an image of a
  frozen evaluation set (``--exclude``) is refused, naming both files, because a candidate
  trained on its own test would look better than it is. ``drop_leaking`` drops them instead and
  lists them.
* From a dataset with its own split (MVTec AD, magnetic-tile) only the **train split** is merged:
  its test split stays the evaluation set.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vinspect.dataset.images import decode_image, read_image
from vinspect.dataset.layouts import open_dataset
from vinspect.errors import DatasetError
from vinspect.files import sha256_file

__all__ = ["DATASET_FILE", "BuildReport", "ReviewedImage", "build_from_reviews", "pixel_sha256"]

DATASET_FILE = "dataset.json"
SCHEMA = "vinspect-dataset-v1"
_GOOD = "good"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewedImage:
    """One adjudicated part: its label, a name for its file, and its provenance."""

    name: str  # file stem, e.g. the NCR number
    label: str
    image_sha256: str  # evidence blob hash (read with ``read_blob``)
    provenance: dict[str, object]


@dataclass(slots=True, kw_only=True)
class BuildReport:
    """What :func:`build_from_reviews` wrote and why anything was left out."""

    out: Path
    dataset_sha256: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    from_reviews: int = 0
    from_dataset: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (dropped, kept)
    dropped_leaking: list[tuple[str, str]] = field(default_factory=list)  # (dropped, also in)


@dataclass(frozen=True, slots=True)
class _Entry:
    path: str  # relative to out, posix
    label: str
    pixels: str
    source: str
    write: Callable[[Path], object]
    provenance: dict[str, object]


def pixel_sha256(image: npt.NDArray[np.uint8]) -> str:
    """Hash of an image's pixels (shape included); a grey image stored as equal RGB channels hashes
    like its single channel, so a golden sample written grey matches its colour-encoded original."""
    arr = np.asarray(image)
    if arr.ndim == 3 and all(np.array_equal(arr[:, :, 0], arr[:, :, c]) for c in range(1, arr.shape[2])):
        arr = arr[:, :, 0]
    digest = hashlib.sha256(f"{arr.shape}|{arr.dtype.str}|".encode())
    digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


def _safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    if not cleaned:
        raise DatasetError(f"{name!r}: not usable as a file or folder name")
    return cleaned


def _excluded(paths: Sequence[Path]) -> dict[str, str]:
    """pixel hash -> file, for every golden sample of the given bundles and every image of the
    given (frozen) dataset folders."""
    seen: dict[str, str] = {}
    for root in paths:
        manifest = root / "manifest.json"
        if manifest.is_file():
            try:
                golden = json.loads(manifest.read_text(encoding="utf-8")).get("golden_samples", [])
            except (OSError, ValueError) as exc:
                raise DatasetError(f"{manifest}: unreadable bundle manifest ({exc})") from exc
            files = [root / str(g["file"]) for g in golden]
        elif root.is_dir():
            files = [s.path for s in open_dataset(root).samples]
        else:
            raise DatasetError(f"{root}: --exclude must be a model bundle (manifest.json) or a dataset folder")
        for f in files:
            seen.setdefault(pixel_sha256(read_image(f)), str(f))
    return seen


def _copy(src: Path) -> Callable[[Path], object]:
    return lambda dst: shutil.copyfile(src, dst)


def _bytes(data: bytes) -> Callable[[Path], object]:
    return lambda dst: dst.write_bytes(data)


def _dataset_entries(merge: Path) -> list[_Entry]:
    index = open_dataset(merge)
    entries = []
    for s in index.train_samples():
        label = _GOOD if s.is_good else _safe(s.label)
        rel = f"{label}/{_safe(s.stem)}{s.path.suffix.lower()}"
        entries.append(
            _Entry(
                path=rel,
                label=label,
                pixels=pixel_sha256(read_image(s.path)),
                source=str(s.path),
                write=_copy(s.path),
                provenance={
                    "source": "dataset",
                    "dataset": str(index.root),
                    "file": s.path.relative_to(index.root).as_posix(),
                    "layout": index.layout,
                    "label": s.label,
                },
            )
        )
    return entries


def _review_entries(parts: Iterable[ReviewedImage], read_blob: Callable[[str], bytes]) -> list[_Entry]:
    entries = []
    for p in parts:
        data = read_blob(p.image_sha256)
        image = decode_image(data, name=f"evidence {p.image_sha256[:12]} of {p.name}")
        label = _safe(p.label)
        entries.append(
            _Entry(
                path=f"{label}/{_safe(p.name)}.png",
                label=label,
                pixels=pixel_sha256(image),
                source=p.name,
                write=_bytes(data),
                provenance=p.provenance,
            )
        )
    return entries


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out}: output folder exists and is not empty (choose a new folder)")


def build_from_reviews(
    parts: Iterable[ReviewedImage],
    *,
    read_blob: Callable[[str], bytes],
    out: Path,
    merge: Path | None = None,
    exclude: Sequence[Path] = (),
    drop_leaking: bool = False,
) -> BuildReport:
    """Write the dataset; see the module doc for the rules.

    Raises:
        DatasetError: ``out`` is not empty, a label conflict, a leak (unless ``drop_leaking``),
            no good image at all, or an unreadable input (named).
    """
    _check_out(out)
    report = BuildReport(out=out)
    candidates = _dataset_entries(merge) if merge is not None else []
    n_merge = len(candidates)
    candidates += _review_entries(parts, read_blob)
    banned = _excluded(exclude)
    kept: dict[str, _Entry] = {}
    leaks: list[tuple[str, str]] = []
    conflicts: list[str] = []
    for i, entry in enumerate(candidates):
        if entry.pixels in banned:
            leaks.append((entry.source, banned[entry.pixels]))
            continue
        first = kept.get(entry.pixels)
        if first is not None:
            if first.label != entry.label:
                conflicts.append(
                    f"{entry.source} labelled {entry.label!r} but the same image {first.source} is {first.label!r}"
                )
            else:
                report.duplicates.append((entry.source, first.source))
            continue
        kept[entry.pixels] = entry
        if i < n_merge:
            report.from_dataset += 1
        else:
            report.from_reviews += 1
    if conflicts:
        raise DatasetError(f"{len(conflicts)} image(s) with conflicting labels: " + "; ".join(conflicts))
    if leaks and not drop_leaking:
        raise DatasetError(
            f"{len(leaks)} image(s) are also golden or frozen evaluation images (training on them "
            "would leak the test): "
            + "; ".join(f"{a} = {b}" for a, b in leaks)
            + " (remove them, or pass --drop-leaking to leave them out)"
        )
    report.dropped_leaking = leaks
    entries = sorted(kept.values(), key=lambda e: e.path)
    paths = [e.path for e in entries]
    if len(set(paths)) != len(paths):
        clash = sorted({p for p in paths if paths.count(p) > 1})
        raise DatasetError(f"two different images would be written as {clash[0]} (rename one source file)")
    if not any(e.label == _GOOD for e in entries):
        raise DatasetError("no good image: a training set needs good parts (merge a dataset with --merge)")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for e in entries:
        target = out / e.path
        target.parent.mkdir(parents=True, exist_ok=True)
        e.write(target)
        target.with_name(target.stem + ".provenance.json").write_text(
            json.dumps(e.provenance, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        file_sha = sha256_file(target)
        rows.append(
            {
                "path": e.path,
                "label": e.label,
                "pixel_sha256": e.pixels,
                "file_sha256": file_sha,
                "source": e.provenance.get("source"),
            }
        )
        report.counts[e.label] = report.counts.get(e.label, 0) + 1
    report.dataset_sha256 = hashlib.sha256(json.dumps(rows, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    (out / DATASET_FILE).write_text(
        json.dumps(
            {
                "schema": SCHEMA,
                "dataset_sha256": report.dataset_sha256,
                "counts": report.counts,
                "from_reviews": report.from_reviews,
                "from_dataset": report.from_dataset,
                "duplicates_dropped": len(report.duplicates),
                "leaking_dropped": [list(x) for x in leaks],
                "entries": rows,
            },
            indent=2,
            sort_keys=True,
        )
        + "\n",
        encoding="utf-8",
    )
    return report
