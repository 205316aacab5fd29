"""A champion and a candidate of a tiny model installed in a data directory, and a frozen set beside them
(the model lifecycle of issue 20, from the reviewer app)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from testkit.bundles import state_operating_point, write_golden_samples, write_tiny_bundle
from vinspect.dataset.frozen import freeze
from vinspect.models.registry import ModelRegistry

__all__ = ["NAME", "freeze_eval_set", "install_pair"]

NAME = "lc"


def _bundle(root: Path, version: str, *, trained_by: str) -> Path:
    bundle = write_tiny_bundle(root / f"{NAME}-{version}", name=NAME)
    rng = np.random.default_rng(1)
    good, defect = rng.normal(0.2, 0.02, 150).tolist(), rng.normal(0.9, 0.02, 30).tolist()
    state_operating_point(bundle, good, defect, version=version)
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    manifest["training"]["trained_by"] = trained_by
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    write_golden_samples(
        bundle,
        [
            ("00_good", np.full((32, 32), 51, np.uint8), "PASS", 0.2),
            ("01_crack", np.full((32, 32), 242, np.uint8), "FAIL", 0.95),
        ],
    )
    return bundle


def install_pair(data_dir: Path, work: Path, *, trained_by: str = "trainer") -> ModelRegistry:
    """``lc`` 1 installed and active (the champion), ``lc`` 2 installed (the candidate)."""
    registry = ModelRegistry(data_dir / "models")
    registry.install(_bundle(work, "1", trained_by=trained_by), activate=True)
    registry.install(_bundle(work, "2", trained_by=trained_by))
    return registry


def freeze_eval_set(data_dir: Path, work: Path, *, folder: str = "eval-1") -> Path:
    """Three good and two cracked images frozen as ``eval`` 1 under ``<data dir>/frozen/<folder>``."""
    source = work / "eval-src"
    for cls, levels in (("good", (0.18, 0.2, 0.22)), ("crack", (0.85, 0.95))):
        (source / cls).mkdir(parents=True, exist_ok=True)
        for i, level in enumerate(levels):
            assert cv2.imwrite(str(source / cls / f"{cls[0]}{i}.png"), np.full((32, 32), round(level * 255), np.uint8))
    return freeze(source, data_dir / "frozen" / folder, name="eval", version="1").root
