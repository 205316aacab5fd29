"""Template/test pair datasets (DeepPCB layout): detection, good pairs, validation problems (issue 11)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vinspect.cli import main
from vinspect.dataset.layouts import open_dataset
from vinspect.dataset.pairs import PAIRS_TRAIN_PERCENT, parse_boxes
from vinspect.dataset.split import split_of
from vinspect.dataset.validate import validate_dataset
from vinspect.errors import DatasetError


def _img(path: Path, size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), 200, np.uint8)).save(path)


def _pair(root: Path, pair_id: str, boxes: str | None, *, test: bool = True, temp: bool = True) -> None:
    if temp:
        _img(root / "pairs" / f"{pair_id}_temp.jpg")
    if test:
        _img(root / "pairs" / f"{pair_id}_test.jpg")
    if boxes is not None:
        (root / "pairs" / f"{pair_id}.txt").write_text(boxes, encoding="utf-8")


def test_pairs_layout_labels_good_and_defective_pairs(tmp_path: Path) -> None:
    _pair(tmp_path, "0001", "")
    _pair(tmp_path, "0002", "1 2 10 12 1\n3 4 9 9 2\n5 5 9 9 2\n")
    index = open_dataset(tmp_path)
    assert index.layout == "pairs" and not index.issues
    by_id = {s.stem: s for s in index.samples}
    assert by_id["0001"].is_good and by_id["0001"].label == "good" and by_id["0001"].boxes == ()
    assert not by_id["0002"].is_good and by_id["0002"].label == "short"
    assert [b.label for b in by_id["0002"].boxes] == ["open", "short", "short"]
    assert by_id["0002"].reference_path == tmp_path / "pairs" / "0002_temp.jpg"
    assert by_id["0002"].split == split_of("0002", train_percent=PAIRS_TRAIN_PERCENT)


def test_validate_names_missing_partners_and_malformed_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pair(tmp_path, "0001", "")
    _pair(tmp_path, "0002", "", test=False)
    _pair(tmp_path, "0003", "", temp=False)
    _pair(tmp_path, "0004", None)
    _pair(tmp_path, "0005", "1 2 10 12 1\n1 2 3\n1 2 x 4 1\n1 2 10 12 9\n10 10 5 5 1\n")
    _pair(tmp_path, "0006", "0 0 40 40 1\n")
    problems = validate_dataset(open_dataset(tmp_path))
    text = [f"{p.path.name}: {p.reason}" for p in problems]
    assert any("0002_temp.jpg" in t and "no 0002_test.* partner" in t for t in text)
    assert any("0003_test.jpg" in t and "no 0003_temp.* partner" in t for t in text)
    assert any("0004.txt missing" in t for t in text)
    for line in (2, 3, 4, 5):
        assert any(t.startswith(f"0005.txt: line {line}:") for t in text), text
    assert any("0006_test.jpg" in t and "outside the 32x32 image" in t for t in text)
    assert main(["dataset", "validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "0005.txt: line 3: coordinates must be numbers" in out


def test_parse_boxes_accepts_type_words(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("1,2,3,4,scratch\n\n", encoding="utf-8")
    boxes, problems = parse_boxes(f)
    assert problems == [] and boxes[0].label == "scratch" and boxes[0].box_xyxy == (1, 2, 3, 4)


def test_folder_without_complete_pairs_is_refused(tmp_path: Path) -> None:
    _pair(tmp_path, "0001", None)
    with pytest.raises(DatasetError, match="no complete template/test pair"):
        open_dataset(tmp_path)
