"""Template/test pair datasets (the DeepPCB layout) for golden-reference inspection.

Layout: ``<id>_temp.<ext>`` (defect-free template), ``<id>_test.<ext>`` (the part to inspect) and
``<id>.txt`` (one defect a line, ``x1 y1 x2 y2 type``, pixels), in the folder itself or under
``pairs/``. Types 1-6 are DeepPCB's open, short, mousebite, spur, copper, pin-hole; a word
(``[a-z][a-z0-9_-]*``) names a type directly. An **empty** box file marks a good part; a
missing one is a problem, because "unlabelled" must not read as "good".

Split: ``sha256("split:" + id) % 100 < 50`` is train (the DeepPCB card's benchmark protocol).
Problems (missing partner, missing or malformed box file) are collected with file and line
number, not raised one at a time, so ``vinspect dataset validate`` can list them all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vinspect.dataset.images import IMAGE_SUFFIXES
from vinspect.dataset.split import split_of

__all__ = ["DEEPPCB_TYPES", "PAIRS_TRAIN_PERCENT", "Box", "PairFile", "find_pairs", "is_pairs_folder", "parse_boxes"]

DEEPPCB_TYPES = {1: "open", 2: "short", 3: "mousebite", 4: "spur", 5: "copper", 6: "pin-hole"}
PAIRS_TRAIN_PERCENT = 50
_NAME = re.compile(r"^(?P<id>.+)_(?P<kind>temp|test)$")
_TYPE_WORD = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Box:
    """One labelled defect: ``(x1, y1, x2, y2)`` in pixels and its type name."""

    box_xyxy: tuple[int, int, int, int]
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PairFile:
    """One complete pair: its id, template, test image, boxes (empty = good part) and split."""

    pair_id: str
    template: Path
    test: Path
    boxes: tuple[Box, ...]
    split: str


def is_pairs_folder(root: Path) -> Path | None:
    """The folder holding the pairs (``root`` or ``root/pairs``), or None."""
    for folder in (root / "pairs", root):
        if folder.is_dir() and any(folder.glob("*_temp.*")):
            return folder
    return None


def parse_boxes(path: Path) -> tuple[tuple[Box, ...], list[str]]:
    """The boxes of a box file and a problem per malformed line (``line N: reason``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return (), [f"cannot read box file ({exc})"]
    boxes, problems = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 5:
            problems.append(f"line {n}: expected 'x1 y1 x2 y2 type', got {line.strip()!r}")
            continue
        try:
            x1, y1, x2, y2 = (int(float(v)) for v in parts[:4])
        except ValueError:
            problems.append(f"line {n}: coordinates must be numbers, got {line.strip()!r}")
            continue
        label = _type_name(parts[4])
        if label is None:
            problems.append(f"line {n}: unknown defect type {parts[4]!r} (1-6 or a lower-case word)")
        elif x2 <= x1 or y2 <= y1 or min(x1, y1) < 0:
            problems.append(f"line {n}: box {x1} {y1} {x2} {y2} is empty or negative")
        else:
            boxes.append(Box(box_xyxy=(x1, y1, x2, y2), label=label))
    return tuple(boxes), problems


def _type_name(token: str) -> str | None:
    if token.isdigit():
        return DEEPPCB_TYPES.get(int(token))
    return token if _TYPE_WORD.match(token) else None


def find_pairs(folder: Path) -> tuple[list[PairFile], list[tuple[Path, str]]]:
    """Every complete pair in ``folder`` (sorted by id) and every problem found."""
    found: dict[str, dict[str, Path]] = {}
    for p in sorted(folder.iterdir()):
        m = _NAME.match(p.stem)
        if p.is_file() and m and p.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(m["id"], {})[m["kind"]] = p
    pairs, problems = [], []
    for pair_id, files in sorted(found.items()):
        missing = {"temp", "test"} - files.keys()
        if missing:
            have = next(iter(files.values()))
            problems.append((have, f"pair {pair_id}: no {pair_id}_{missing.pop()}.* partner"))
            continue
        box_file = folder / f"{pair_id}.txt"
        if not box_file.is_file():
            problems.append(
                (files["test"], f"pair {pair_id}: box file {box_file.name} missing (an empty file marks a good part)")
            )
            continue
        boxes, bad = parse_boxes(box_file)
        if bad:
            problems.extend((box_file, b) for b in bad)
            continue
        pairs.append(
            PairFile(
                pair_id=pair_id,
                template=files["temp"],
                test=files["test"],
                boxes=boxes,
                split=split_of(pair_id, train_percent=PAIRS_TRAIN_PERCENT),
            )
        )
    return pairs, problems
