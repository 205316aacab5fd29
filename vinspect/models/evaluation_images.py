"""Where a recorded evaluation's changed-verdict images live, and how they are listed.

``vinspect models evaluate`` writes them (:mod:`vinspect.report.changed_images`) under
``<data dir>/evaluations/<name>@<version>/<evaluation hash[:16]>/``: for each image whose verdict
changed between the running model and the candidate, both heatmap overlays
(``<n>-champion.png``, ``<n>-challenger.png``) and one ``changed.json``. The folder is named by
the evaluation's hash, so the reviewer app shows the images of exactly the evidence a promotion
signature binds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["CHANGED_FILE", "IMAGE_NAME", "ORDER", "TITLES", "evaluation_dir", "read_changed"]

CHANGED_FILE = "changed.json"
IMAGE_NAME = re.compile(r"^[0-9]{1,5}-(champion|challenger)\.png$")
ORDER = ("defect_newly_escaping", "good_newly_rejected", "defect_newly_caught", "good_newly_passed", "verdict_changed")
TITLES = {
    "defect_newly_escaping": "Defects the challenger lets through (escapes)",
    "good_newly_rejected": "Good parts the challenger rejects (new false rejects)",
    "defect_newly_caught": "Defects the challenger catches and the champion missed",
    "good_newly_passed": "Good parts the challenger passes and the champion rejected",
    "verdict_changed": "Still off the line, different verdict (FAIL / REVIEW)",
}


def evaluation_dir(data_dir: Path, name: str, version: str, evaluation_sha256: str) -> Path:
    """Where the changed-verdict images of one recorded evaluation live."""
    return data_dir / "evaluations" / f"{name}@{version}" / evaluation_sha256[:16]


def read_changed(out_dir: Path) -> list[dict[str, Any]] | None:
    """The entries written for an evaluation (None: none written, or unreadable)."""
    try:
        doc = json.loads((out_dir / CHANGED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, list) else None
