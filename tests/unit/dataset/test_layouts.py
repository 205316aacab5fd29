"""Dataset layouts, split, validation and the synthetic generator (issue 2)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vinspect.dataset.layouts import open_dataset
from vinspect.dataset.split import split_of
from vinspect.dataset.synth import DEFECT_KINDS, render_part, write_dataset
from vinspect.dataset.validate import validate_dataset
from vinspect.errors import DatasetError

MAGNETIC_TILE = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "magnetic-tile"


def test_split_of_is_deterministic_and_about_70_percent() -> None:
    stems = [f"exp{i % 6}_num_{i}" for i in range(2000)]
    train = sum(split_of(s) == "train" for s in stems)
    assert [split_of(s) for s in stems[:50]] == [split_of(s) for s in stems[:50]]
    assert 0.66 < train / len(stems) < 0.74


def test_open_dataset_classes_layout(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", n_good=4, n_defect_each=2, kinds=("spot", "scratch"))
    index = open_dataset(root)
    assert index.layout == "classes" and index.good_label == "good"
    assert Counter(s.label for s in index.samples) == {"good": 4, "spot": 2, "scratch": 2}
    assert index.train_samples() == index.test_samples() == list(index.samples)
    assert all(s.mask_path is not None for s in index.samples if not s.is_good)
    assert index.defect_labels == ["scratch", "spot"]


def test_open_dataset_mvtec_layout(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "m", n_good=10, n_defect_each=1, kinds=("crack",), layout="mvtec")
    index = open_dataset(root)
    assert index.layout == "mvtec"
    assert len(index.train_samples()) == 8
    test = index.test_samples()
    assert Counter(s.label for s in test) == {"good": 2, "crack": 1}
    assert next(s for s in test if s.label == "crack").mask_path is not None


def test_open_dataset_magnetic_tile_layout(tmp_path: Path, write_png) -> None:
    for cls in ("MT_Free", "MT_Crack"):
        for i in range(3):
            write_png(f"mt/{cls}/exp1_num_{cls}{i}.jpg", np.full((20, 30), 100, np.uint8))
            write_png(f"mt/{cls}/exp1_num_{cls}{i}.png", np.zeros((20, 30), np.uint8))
    index = open_dataset(tmp_path / "mt")
    assert index.layout == "magnetic-tile" and index.good_label == "MT_Free"
    assert len(index.samples) == 6 and all(s.mask_path is not None for s in index.samples)
    assert {s.split for s in index.samples} <= {"train", "test"}


@pytest.mark.skipif(not MAGNETIC_TILE.is_dir(), reason="shared magnetic-tile dataset not present")
def test_open_dataset_real_magnetic_tile_split_counts() -> None:
    index = open_dataset(MAGNETIC_TILE)
    counts = Counter((s.split, s.is_good) for s in index.samples)
    assert counts[("train", True)] == 454 and counts[("test", True)] == 175
    assert counts[("test", False)] == 74


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: (root / "stuff").mkdir(parents=True), "not a dataset"),
        (lambda root: [(root / "good").mkdir(parents=True), (root / "spot").mkdir()], "empty class folder"),
    ],
)
def test_open_dataset_bad_folder_is_clear_error(tmp_path: Path, setup, needle: str) -> None:
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DatasetError, match=needle):
        open_dataset(root)


def test_validate_dataset_names_every_bad_file(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", n_good=3, n_defect_each=1, kinds=("spot",))
    (root / "good" / "zero.png").write_bytes(b"")
    (root / "good" / "junk.png").write_text("junk")
    problems = validate_dataset(open_dataset(root))
    assert {p.path.name for p in problems} == {"zero.png", "junk.png"}
    assert any("empty file" in p.reason for p in problems)


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_render_part_defect_mask_is_exact(kind: str) -> None:
    good, good_mask = render_part(seed=7)
    bad, mask = render_part(seed=7, defect=kind)
    assert good_mask.max() == 0 and mask.max() == 255
    inside = mask > 0
    changed = np.abs(good.astype(int) - bad.astype(int)) > 12
    # The defect changes pixels inside its mask and (almost) nowhere else.
    assert changed[inside].mean() > 0.3
    assert changed[~inside].mean() < 0.01


def test_render_part_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown defect kind"):
        render_part(seed=1, defect="dent")
