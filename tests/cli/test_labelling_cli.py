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
    assert main(["dataset", "import-labelset", str(folder), "--set", "b1", "--blind", "2",
                 "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "set b1: 12 image(s) added, 3 skipped" in out
    assert "SKIPPED notes.txt: not an image" in out and "SKIPPED zz-copy.png: duplicate image" in out
    engine = make_engine(f"sqlite:///{data / 'vinspect.db'}")
    with session_scope(engine) as db:
        people = [create_user(n, session=db, display_name=n.title(), role="reviewer",  # type: ignore[arg-type]
                              password_hash="x" * 20, actor="system:test") for n in ("ann", "bob")]
        label_set = get_set(db, "b1")
        assert label_set is not None
        for i, image in enumerate(set_images(db, label_set)):
            for who in people:
                label = "dent" if (i >= 10 or (i == 0 and who.username == "bob")) else "good"
                record_label(db, label_set, image.id, Labeller(user_id=who.id, username=who.username), label=label,
                             regions=[], catalogue=("dent",), source="test")
    engine.dispose()
    export = tmp_path / "export"
    assert main(["dataset", "export-labels", "b1", "--out", str(export), "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "wrote 11 image(s)" in out and "dent 2, good 9" in out and "1 unsettled disagreement(s)" in out
    assert main(["dataset", "validate", str(export)]) == 0
    assert main(["train", "--data", str(export), "--out", str(tmp_path / "bundle")]) == 2
    err = capsys.readouterr().err
    assert "1 blind disagreement(s) are not settled" in err and "--allow-unsettled" in err
    assert main(["dataset", "export-labels", "b1", "--out", str(export), "--data-dir", str(data)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
