"""Harder demo parts (issue 13): faint defects and dusty good parts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vinspect.dataset.synth import render_part, write_dataset


def _contrast(image: np.ndarray, mask: np.ndarray) -> float:
    ring = cv2.dilate(mask, np.ones((9, 9), np.uint8)) & ~mask
    return abs(float(image[mask > 0].mean()) - float(image[ring > 0].mean()))


def test_faint_defects_have_less_contrast() -> None:
    for kind in ("scratch", "spot", "stain"):
        strong, mask = render_part(seed=11, defect=kind)
        faint, faint_mask = render_part(seed=11, defect=kind, faint=0.3)
        assert np.array_equal(mask, faint_mask)
        assert _contrast(faint, mask) < 0.6 * _contrast(strong, mask)


def test_dust_marks_a_good_part_without_a_defect_mask() -> None:
    clean, clean_mask = render_part(seed=5)
    dusty, dusty_mask = render_part(seed=5, dust=True)
    assert not dusty_mask.any() and not clean_mask.any()
    assert int(np.abs(dusty.astype(int) - clean.astype(int)).max()) > 10


def test_write_dataset_applies_the_shares(tmp_path: Path) -> None:
    plain = write_dataset(tmp_path / "a", n_good=6, n_defect_each=2, kinds=("spot",), seed=3)
    hard = write_dataset(tmp_path / "b", n_good=6, n_defect_each=2, kinds=("spot",), seed=3, subtle=1.0, dust=1.0)
    differs = [
        not np.array_equal(
            cv2.imread(str(plain / "good" / f"good_{i:04d}.png")), cv2.imread(str(hard / "good" / f"good_{i:04d}.png"))
        )
        for i in range(6)
    ]
    assert all(differs)
