"""Frozen evaluation sets: a versioned copy of evaluation images, pinned by hash.

A candidate model and the champion are compared on the same images, and the comparison means
something only if nobody added, removed or relabelled an image in between. ``freeze`` copies the
evaluation part of a dataset (its test split; every image of plain class folders) into a new
``classes``-layout folder (masks under ``masks/<class>/``) and writes ``frozen.json``: name,
version, where it came from, one entry per file (path, label, sha256) and ``set_sha256`` over
the sorted entries. :func:`verify_frozen` re-hashes every file and names each one that changed,
went missing or appeared, so a comparison refuses a set that is no longer what was frozen.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from vinspect.dataset.layouts import open_dataset
from vinspect.errors import DatasetError
from vinspect.files import sha256_file

__all__ = ["FROZEN_FILE", "FrozenSet", "freeze", "is_frozen", "verify_frozen"]

FROZEN_FILE = "frozen.json"
SCHEMA = "vinspect-frozen-set-v1"


@dataclass(frozen=True, slots=True, kw_only=True)
class FrozenSet:
    """A verified frozen set."""

    root: Path
    name: str
    version: str
    set_sha256: str
    n_images: int


def _set_hash(entries: list[dict[str, str]]) -> str:
    rows = sorted(entries, key=lambda e: e["path"])
    return hashlib.sha256(json.dumps(rows, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def is_frozen(root: Path) -> bool:
    """True when ``root`` holds a ``frozen.json``."""
    return (root / FROZEN_FILE).is_file()


def freeze(source: Path, out: Path, *, name: str, version: str) -> FrozenSet:
    """Copy the evaluation images of ``source`` into ``out`` and pin them.

    Raises:
        DatasetError: ``out`` exists and is not empty, or ``source`` is not a dataset.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out}: output folder exists and is not empty (a frozen set is never overwritten)")
    index = open_dataset(source)
    samples = index.test_samples()
    if not any(s.is_good for s in samples) or all(s.is_good for s in samples):
        raise DatasetError(f"{source}: its evaluation part needs good and defective images to compare models")
    out.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, str]] = []
    for s in samples:
        label = "good" if s.is_good else s.label
        rel = f"{label}/{s.stem}{s.path.suffix.lower()}"
        if (out / rel).exists():
            raise DatasetError(f"{s.path}: a second image named {s.stem} in class {label} (stems must be unique)")
        (out / label).mkdir(exist_ok=True)
        shutil.copyfile(s.path, out / rel)
        entries.append({"path": rel, "label": label, "sha256": sha256_file(out / rel)})
        if s.mask_path is not None:
            mrel = f"masks/{label}/{s.stem}.png"
            (out / mrel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(s.mask_path, out / mrel)
            entries.append({"path": mrel, "label": label, "sha256": sha256_file(out / mrel)})
    digest = _set_hash(entries)
    (out / FROZEN_FILE).write_text(
        json.dumps(
            {
                "schema": SCHEMA,
                "name": name,
                "version": version,
                "source": str(index.root),
                "layout": index.layout,
                "set_sha256": digest,
                "entries": sorted(entries, key=lambda e: e["path"]),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return FrozenSet(
        root=out,
        name=name,
        version=version,
        set_sha256=digest,
        n_images=sum(1 for e in entries if not e["path"].startswith("masks/")),
    )


def verify_frozen(root: Path) -> FrozenSet:
    """Re-hash every file of a frozen set.

    Raises:
        DatasetError: no or unreadable ``frozen.json``, or any file changed, missing or added
            (every one named).
    """
    try:
        doc = json.loads((root / FROZEN_FILE).read_text(encoding="utf-8"))
        entries = [
            {"path": str(e["path"]), "label": str(e["label"]), "sha256": str(e["sha256"])} for e in doc["entries"]
        ]
        name, version, pinned = str(doc["name"]), str(doc["version"]), str(doc["set_sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{root / FROZEN_FILE}: not a readable frozen-set file ({exc})") from exc
    problems = []
    for e in entries:
        path = root / e["path"]
        if not path.is_file():
            problems.append(f"{e['path']} missing")
        elif sha256_file(path) != e["sha256"]:
            problems.append(f"{e['path']} changed")
    listed = {e["path"] for e in entries}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel != FROZEN_FILE and rel not in listed:
            problems.append(f"{rel} added")
    if _set_hash(entries) != pinned:
        problems.append("the entry list itself was edited (set_sha256 does not match)")
    if problems:
        raise DatasetError(f"{root}: frozen set {name} {version} is no longer what was frozen: " + "; ".join(problems))
    return FrozenSet(
        root=root,
        name=name,
        version=version,
        set_sha256=pinned,
        n_images=sum(1 for e in entries if not e["path"].startswith("masks/")),
    )
