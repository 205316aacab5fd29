"""The deterministic train/test split shared by training, eval and the benchmarks.

``sha256("split:" + stem) % 100 < 70`` puts a file in ``train``; the rest is ``test``. It
depends on the file stem alone, so adding or removing other files never moves a file.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Split = Literal["train", "test"]
TRAIN_PERCENT = 70


def split_of(stem: str, *, train_percent: int = TRAIN_PERCENT) -> Split:
    """Return the split a file with this stem (name without extension) belongs to."""
    bucket = int(hashlib.sha256(("split:" + stem).encode()).hexdigest(), 16) % 100
    return "train" if bucket < train_percent else "test"
