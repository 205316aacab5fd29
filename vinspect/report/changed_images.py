"""Write the changed verdicts of a champion/challenger comparison as image files the reviewer app
shows (layout: :mod:`vinspect.models.evaluation_images`), worst changes for the line first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vinspect.dataset.images import read_image
from vinspect.errors import ImageDecodeError
from vinspect.files import write_atomically
from vinspect.imaging import encode_png
from vinspect.models.evaluation_images import CHANGED_FILE, ORDER
from vinspect.report.compare import Comparison
from vinspect.report.evaluate import Scored
from vinspect.report.overlay import render_overlay

__all__ = ["write_changed_images"]


def _overlay(item: Scored, level: float, path: Path) -> bool:
    j = item.judgement
    if j is None or j.prediction is None:
        return False
    try:
        image = read_image(item.sample.path)
    except ImageDecodeError:
        return False
    write_atomically(path, encode_png(render_overlay(image, j.prediction, level=level)), durable=False)
    return True


def write_changed_images(
    out_dir: Path, comparison: Comparison, *, champion_level: float, challenger_level: float
) -> list[dict[str, Any]]:
    """Write both overlays of every changed verdict and ``changed.json``; returns its entries."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_file = {
        str(s.sample.path): (s, t)
        for s, t in zip(comparison.champion_scored, comparison.challenger_scored, strict=True)
    }
    entries = []
    ordered = sorted(comparison.changed, key=lambda c: ORDER.index(c["change"]) if c["change"] in ORDER else 99)
    for n, c in enumerate(ordered):
        sa, sb = by_file[c["file"]]
        images = {}
        for who, scored, level in (("champion", sa, champion_level), ("challenger", sb, challenger_level)):
            name = f"{n}-{who}.png"
            images[who] = name if _overlay(scored, level, out_dir / name) else None
        entries.append(
            {
                "n": n,
                "file": Path(c["file"]).name,
                "label": c["label"],
                "change": c["change"],
                "champion": {**c["champion"], "image": images["champion"]},
                "challenger": {**c["challenger"], "image": images["challenger"]},
            }
        )
    write_atomically(out_dir / CHANGED_FILE, (json.dumps(entries, indent=1) + "\n").encode("utf-8"), durable=False)
    return entries
