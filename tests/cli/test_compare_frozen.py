"""``vinspect dataset freeze`` and ``vinspect compare``: same pinned images, both models, changed verdicts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vinspect.cli import main
from vinspect.dataset.frozen import FROZEN_FILE, verify_frozen
from vinspect.errors import DatasetError


def _dataset(root: Path, write_png: Callable[..., Path]) -> Path:
    """Class folders whose mean brightness is the tiny model's score."""
    levels = {"good": {"g_dark": 0.2, "g_grey": 0.35}, "crack": {"c_faint": 0.45, "c_bright": 0.8}}
    for label, items in levels.items():
        for stem, level in items.items():
            write_png(root / label / f"{stem}.png", np.full((32, 32), round(level * 255), dtype=np.uint8))
    return root


def test_freeze_then_compare_reports_both_models_and_every_changed_verdict(
    tiny_bundle_factory: Callable[..., Path],
    write_png: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = _dataset(tmp_path / "data", write_png)
    frozen = tmp_path / "frozen"
    assert (
        main(["dataset", "freeze", str(source), "--out", str(frozen), "--name", "tiles-eval", "--version", "2026-12"])
        == 0
    )
    assert "froze 4 images as tiles-eval 2026-12" in capsys.readouterr().out
    champion = tiny_bundle_factory(fail_at=0.6, review_at=0.5)
    challenger = tiny_bundle_factory(fail_at=0.4, review_at=0.3)
    out = tmp_path / "cmp.json"
    assert (
        main(
            [
                "compare",
                "--champion",
                str(champion),
                "--challenger",
                str(challenger),
                "--data",
                str(frozen),
                "--json",
                str(out),
                "--report",
                str(tmp_path / "page"),
                "--no-progress",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "frozen set tiles-eval 2026-12" in text
    assert "defect newly caught 1" in text
    assert "good newly rejected 1" in text
    doc = json.loads(out.read_text())
    changes = {Path(c["file"]).stem: c["change"] for c in doc["changed"]}
    assert changes == {"g_grey": "good_newly_rejected", "c_faint": "defect_newly_caught"}
    assert doc["champion"]["operating_point"]["escape_rate"] == 0.5
    assert doc["challenger"]["operating_point"]["escape_rate"] == 0.0
    assert doc["delta"]["operating_point.false_reject_rate"] == 0.5
    assert doc["data"]["frozen"]["set_sha256"] == json.loads((frozen / FROZEN_FILE).read_text())["set_sha256"]
    page = (tmp_path / "page" / "index.html").read_text()
    assert "Good parts the challenger rejects (new false rejects) (1)" in page
    assert page.count("<img ") == 4  # both overlays of each changed image


def test_compare_refuses_a_frozen_set_that_changed_naming_each_file(
    tiny_bundle: Path, write_png: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frozen = tmp_path / "frozen"
    assert (
        main(
            [
                "dataset",
                "freeze",
                str(_dataset(tmp_path / "data", write_png)),
                "--out",
                str(frozen),
                "--name",
                "s",
                "--version",
                "1",
            ]
        )
        == 0
    )
    write_png(frozen / "good" / "g_dark.png", np.full((32, 32), 200, dtype=np.uint8))  # relabelled by editing
    (frozen / "crack" / "c_faint.png").unlink()
    write_png(frozen / "good" / "extra.png", np.zeros((32, 32), dtype=np.uint8))
    assert (
        main(
            [
                "compare",
                "--champion",
                str(tiny_bundle),
                "--challenger",
                str(tiny_bundle),
                "--data",
                str(frozen),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "good/g_dark.png changed" in err
    assert "crack/c_faint.png missing" in err
    assert "good/extra.png added" in err


def test_freeze_refuses_to_overwrite_and_needs_both_kinds(write_png: Callable[..., Path], tmp_path: Path) -> None:
    source = _dataset(tmp_path / "data", write_png)
    out = tmp_path / "frozen"
    out.mkdir()
    (out / "x").write_text("mine")
    assert main(["dataset", "freeze", str(source), "--out", str(out), "--name", "s", "--version", "1"]) == 2
    assert (out / "x").read_text() == "mine"
    goods = tmp_path / "goods"
    write_png(goods / "good" / "a.png", np.zeros((8, 8), dtype=np.uint8))
    assert main(["dataset", "freeze", str(goods), "--out", str(tmp_path / "f2"), "--name", "s", "--version", "1"]) == 2
    with pytest.raises(DatasetError, match="not a readable frozen-set file"):
        verify_frozen(tmp_path / "nowhere")
