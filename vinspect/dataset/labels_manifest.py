"""The labels manifest an exported labelling set carries: ``labels.json`` at the dataset root.

It names every exported image by its SHA-256 with its label, regions, labeller and time, and
lists the images whose blind labels disagree and were not settled. ``vinspect train`` records
the manifest's own SHA-256 in the bundle (``training.labels_manifest_sha256``) and refuses a set
with unsettled disagreements unless told otherwise; ``vinspect dataset validate`` checks that the
files still match it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vinspect.dataset.images import IMAGE_SUFFIXES
from vinspect.errors import DatasetError
from vinspect.files import sha256_file

__all__ = ["LABELS_MANIFEST", "LABELS_SCHEMA", "LabelsManifest", "check_labels_manifest", "read_labels_manifest"]

LABELS_MANIFEST = "labels.json"
LABELS_SCHEMA = "vinspect.labels/1"


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelsManifest:
    """A parsed labels manifest and the SHA-256 of its bytes."""

    path: Path
    sha256: str
    images: tuple[dict[str, Any], ...]
    unsettled: tuple[dict[str, Any], ...]


def read_labels_manifest(root: Path) -> LabelsManifest | None:
    """The manifest of the dataset at ``root``, or None when it has none.

    Raises:
        DatasetError: the file is not JSON or not a labels manifest.
    """
    path = root / LABELS_MANIFEST
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise DatasetError(f"{path}: not JSON ({exc})") from exc
    if (
        not isinstance(doc, dict)
        or doc.get("schema") != LABELS_SCHEMA
        or not isinstance(doc.get("images"), list)
        or not isinstance(doc.get("unsettled"), list)
    ):
        raise DatasetError(f"{path}: not a labels manifest (schema {LABELS_SCHEMA} with images and unsettled)")
    return LabelsManifest(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        images=tuple(doc["images"]),
        unsettled=tuple(doc["unsettled"]),
    )


def check_labels_manifest(root: Path) -> list[tuple[Path, str]]:
    """Every way the files at ``root`` differ from its manifest: a listed file missing or altered, a
    mask or box file missing, an image not listed. Empty when it matches (or there is no manifest)."""
    manifest = read_labels_manifest(root)
    if manifest is None:
        return []
    problems: list[tuple[Path, str]] = []
    listed: set[Path] = set()
    for entry in manifest.images:
        path = root / str(entry.get("file", ""))
        listed.add(path)
        if not path.is_file():
            problems.append((path, "listed in labels.json but missing"))
            continue
        if sha256_file(path) != entry.get("sha256"):
            problems.append((path, "content differs from its sha256 in labels.json"))
        for key in ("mask", "boxes"):
            extra = entry.get(key)
            if extra and not (root / str(extra)).is_file():
                problems.append((root / str(extra), f"{key} file listed in labels.json but missing"))
    for path in sorted(root.glob("*/*")):
        if path.parent.name in ("masks", "boxes") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path not in listed:
            problems.append((path, "image not listed in labels.json"))
    return problems
