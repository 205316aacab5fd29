"""`vinspect dataset import-labelset | export-labels` and `vinspect train --allow-unsettled` (issue 19)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vinspect.cli import main
from vinspect.store.db import make_engine, session_scope
from vinspect.store.label_queries import get_set, set_images
from vinspect.store.labelling import Labeller, record_label
from vinspect.store.users import create_user

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))  # labelseed
from labelseed import write_folder


def test_import_export_and_train_refuses_unsettled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    folder = write_folder(tmp_path / "in", n=12, spots=2)
    (folder / "capture.csv").write_text("file,part_id\n")  # a `vinspect capture` run's own manifest: not an image
    (folder / "masks" / "a").mkdir(parents=True)  # a labelled dataset's ground truth is not imported as parts
    (folder / "masks" / "a" / "img000.png").write_bytes((folder / "b" / "img001.png").read_bytes())
    assert (
        main(["dataset", "import-labelset", str(folder), "--set", "b1", "--blind", "2", "--data-dir", str(data)]) == 0
    )
    out = capsys.readouterr().out
    assert "set b1: 12 image(s) added, 4 skipped" in out
    assert "SKIPPED masks/a/img000.png: ground truth of a dataset (masks/, ground_truth/, boxes/)" in out
    assert "SKIPPED notes.txt: not an image" in out and "SKIPPED zz-copy.png: duplicate image" in out
    assert "capture.csv" not in out
    engine = make_engine(f"sqlite:///{data / 'vinspect.db'}")
    with session_scope(engine) as db:
        people = [
            create_user(
                n,
                session=db,
                display_name=n.title(),
                role="reviewer",  # type: ignore[arg-type]
                password_hash="x" * 20,
                actor="system:test",
            )
            for n in ("ann", "bob")
        ]
        label_set = get_set(db, "b1")
        assert label_set is not None
        for i, image in enumerate(set_images(db, label_set)):
            for who in people:
                label = "dent" if (i >= 10 or (i == 0 and who.username == "bob")) else "good"
                record_label(
                    db,
                    label_set,
                    image.id,
                    Labeller(user_id=who.id, username=who.username),
                    label=label,
                    regions=[],
                    catalogue=("dent",),
                    source="test",
                )
    engine.dispose()
    export = tmp_path / "export"
    assert main(["dataset", "export-labels", "b1", "--out", str(export), "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "wrote 11 image(s)" in out and "dent 2, good 9" in out and "1 unsettled disagreement(s)" in out
    assert main(["dataset", "validate", str(export)]) == 0
    assert "labels.json: 11 labelled image(s), 1 unsettled disagreement(s), sha256 " in capsys.readouterr().out
    assert main(["train", "--data", str(export), "--out", str(tmp_path / "bundle")]) == 2
    err = capsys.readouterr().err
    assert "1 blind disagreement(s) are not settled" in err and "--allow-unsettled" in err
    assert main(["dataset", "export-labels", "b1", "--out", str(export), "--data-dir", str(data)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err


def test_score_labelset_puts_least_certain_first(tmp_path: Path, tiny_bundle: Path) -> None:
    import cv2
    import numpy as np

    from vinspect.store.label_queries import image_page, neighbours

    folder = tmp_path / "in"
    folder.mkdir()
    # The tiny bundle scores mean brightness: FAIL at 0.6, REVIEW from 0.5.
    for name, level in (("a_sure_good", 0.1), ("b_near_review", 0.52), ("c_sure_fail", 0.95), ("d_near_fail", 0.61)):
        image = np.full((32, 32), round(level * 255), np.uint8)
        image[0, 0] = 0 if level > 0.5 else 255  # distinct from any other
        cv2.imwrite(str(folder / f"{name}.png"), image)
    data = tmp_path / "data"
    assert main(["dataset", "import-labelset", str(folder), "--set", "s", "--data-dir", str(data)]) == 0
    assert main(["dataset", "score-labelset", "s", "--model", str(tiny_bundle), "--data-dir", str(data)]) == 0
    engine = make_engine(f"sqlite:///{data / 'vinspect.db'}")
    with session_scope(engine, readonly=True) as db:
        label_set = get_set(db, "s")
        assert label_set is not None
        rows, total, by_uncertainty = image_page(db, label_set, user_id=0, offset=0, limit=10, order="uncertain")
        plain, _, _ = image_page(db, label_set, user_id=0, offset=0, limit=10)
        # The one-image view's arrows follow the same order: b (second least certain) sits between d and c.
        b = next(r for r in rows if r.file_name.startswith("b"))
        around = neighbours(db, label_set, b.ordinal, image_id=b.id, order="uncertain")
        by_id = {r.id: r.file_name[:1] for r in rows}
        assert (by_id[around[0]], by_id[around[1]]) == ("d", "c")  # type: ignore[index]
        assert neighbours(db, label_set, b.ordinal) == (rows[3].id, rows[2].id)  # import order: a, then c
    engine.dispose()
    assert total == 4 and by_uncertainty
    assert [r.file_name[:1] for r in plain] == ["a", "b", "c", "d"]
    # distance to the nearest threshold / fail_at: d 0.01/0.6, b 0.02/0.6, c 0.35/0.6, a 0.4/0.6
    assert [r.file_name[:1] for r in rows] == ["d", "b", "c", "a"]
    assert rows[0].uncertainty is not None and rows[0].uncertainty < rows[1].uncertainty  # type: ignore[operator]
