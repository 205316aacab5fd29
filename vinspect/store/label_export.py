"""``vinspect dataset export-labels``: a labelling set as the class-folder layout ``vinspect train`` reads.

``<out>/<label>/<stem><suffix>`` (the imported bytes, ``stem`` = the first 16 hex digits of the
image's SHA-256), ``<out>/masks/<label>/<stem>.png`` (MVTec-style 0/255 ground truth, the union
of the image's regions) and ``<out>/boxes/<label>/<stem>.txt`` (DeepPCB-style ``x1 y1 x2 y2 code``
lines) for images with regions, and ``<out>/labels.json``, the labels manifest (see
:mod:`vinspect.dataset.labels_manifest`). The same labels give byte-identical files: names come
from content hashes, the manifest is canonical JSON and carries no export time.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vinspect.dataset.labels_manifest import LABELS_MANIFEST, LABELS_SCHEMA
from vinspect.dataset.regions import Region, parse_regions, region_boxes, region_mask
from vinspect.errors import DatasetError
from vinspect.imaging import encode_png
from vinspect.store.canonical import canonical_json, format_utc, sha256_hex
from vinspect.store.label_files import LabelFiles
from vinspect.store.label_queries import FinalLabel, SetLabels
from vinspect.store.tables import LabelSetRecord

__all__ = ["ExportSummary", "export_labels"]

_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportSummary:
    out: Path
    images: int
    per_label: dict[str, int]
    unsettled: int
    incomplete: int
    manifest_sha256: str


def _regions(final: FinalLabel) -> tuple[Region, ...]:
    codes = sorted({str(r.get("code")) for r in final.regions})
    return parse_regions(final.regions, width=final.image.width, height=final.image.height, catalogue=codes)


def export_labels(label_set: LabelSetRecord, labels: SetLabels, files: LabelFiles, out: Path) -> ExportSummary:
    """Write the set's final labels to ``out`` (created; must not exist or be empty).

    Images still needing labels are left out (counted); unsettled disagreements are left out and
    listed in the manifest, which ``vinspect train`` refuses unless told otherwise.

    Raises:
        DatasetError: ``out`` is a non-empty folder or a file; no image has a final label.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out}: exists and is not an empty folder; export into a new one")
    if not labels.final:
        raise DatasetError(
            f"set {label_set.name}: no image has a final label yet (incomplete: "
            f"{len(labels.incomplete)}, unsettled: {len(labels.unsettled)})"
        )
    bad = sorted({f.label for f in labels.final if not _FOLDER.fullmatch(f.label)})
    if bad:
        raise DatasetError(f"labels {bad} cannot name a class folder (letters, digits, '_', '.', '-')")
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    entries: list[dict[str, Any]] = []
    per_label: dict[str, int] = {}
    try:
        for final in labels.final:
            image = final.image
            stem = image.sha256[:16]
            rel = f"{final.label}/{stem}{image.suffix}"
            (tmp / final.label).mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(files.read(image.sha256, image.suffix))
            per_label[final.label] = per_label.get(final.label, 0) + 1
            entry: dict[str, Any] = {
                "file": rel,
                "sha256": image.sha256,
                "label": final.label,
                "regions": final.regions,
                "labeller": final.labeller,
                "labelled_at": format_utc(final.labelled_at),
                "source_file": image.file_name,
            }
            if final.labellers:
                entry["labellers"] = dict(sorted(final.labellers.items()))
            if final.settled_by:
                entry["settled_by"] = final.settled_by
            regions = _regions(final)
            if regions:
                mask = region_mask(regions, width=image.width, height=image.height)
                mask_rel = f"masks/{final.label}/{stem}.png"
                (tmp / mask_rel).parent.mkdir(parents=True, exist_ok=True)
                try:
                    (tmp / mask_rel).write_bytes(encode_png(mask))
                except ValueError as exc:  # pragma: no cover
                    raise DatasetError(f"{mask_rel}: PNG encoding failed") from exc
                boxes_rel = f"boxes/{final.label}/{stem}.txt"
                (tmp / boxes_rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / boxes_rel).write_text(
                    "".join(
                        f"{x1} {y1} {x2} {y2} {code}\n"
                        for x1, y1, x2, y2, code in region_boxes(regions, width=image.width, height=image.height)
                    )
                )
                entry.update({"mask": mask_rel, "boxes": boxes_rel})
            entries.append(entry)
        entries.sort(key=lambda e: str(e["file"]))
        unsettled = sorted(
            (
                {"sha256": image.sha256, "source_file": image.file_name, "labels": dict(sorted(given.items()))}
                for image, given in labels.unsettled
            ),
            key=lambda u: str(u["sha256"]),
        )
        doc = {
            "schema": LABELS_SCHEMA,
            "set": label_set.name,
            "blind_labellers": label_set.blind_labellers,
            "images": entries,
            "unsettled": unsettled,
            "incomplete": len(labels.incomplete),
        }
        data = canonical_json(doc) + b"\n"
        (tmp / LABELS_MANIFEST).write_bytes(data)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportSummary(
        out=out,
        images=len(entries),
        per_label=dict(sorted(per_label.items())),
        unsettled=len(unsettled),
        incomplete=len(labels.incomplete),
        manifest_sha256=sha256_hex(data),
    )
