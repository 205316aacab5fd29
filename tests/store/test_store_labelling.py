"""Labelling store: import (bad files named, nothing lost), label events under the audit chain,
undo, blind labels, settlement, kappa, export and the labels manifest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import pytest
from labelseed import write_folder
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DatabaseError

from vinspect.dataset.labels_manifest import check_labels_manifest, read_labels_manifest
from vinspect.dataset.layouts import open_dataset
from vinspect.dataset.validate import validate_dataset
from vinspect.errors import DatasetError, StateError
from vinspect.store.audit import verify_chain
from vinspect.store.db import session_scope
from vinspect.store.label_export import export_labels
from vinspect.store.label_files import LabelFiles
from vinspect.store.label_queries import agreement, get_set, image_page, set_labels
from vinspect.store.labelling import Labeller, import_folder, record_label, settle_label, undo_label
from vinspect.store.tables import AuditRecord, LabelEventRecord
from vinspect.store.users import create_user

CATALOGUE = ("scratch", "dent", "other")


def _users(engine: Engine, *names: str) -> list[Labeller]:
    out = []
    with session_scope(engine) as db:
        for name in names:
            user = create_user(
                name,
                session=db,
                display_name=name.title(),
                role="quality_engineer",  # type: ignore[arg-type]
                password_hash="x" * 20,
                actor="system:test",
            )
            out.append(Labeller(user_id=user.id, username=name))
    return out


def _import(engine: Engine, tmp_path: Path, *, blind: int = 0, n: int = 24, name: str = "s1"):  # type: ignore[no-untyped-def]
    files = LabelFiles(tmp_path / "labelling")
    report = import_folder(
        write_folder(tmp_path / f"in-{name}", n=n),
        engine=engine,
        files=files,
        set_name=name,
        actor="system:test",
        blind_labellers=blind,
    )
    return files, report


def _ids(engine: Engine, name: str, who: Labeller) -> list[int]:
    with session_scope(engine, readonly=True) as db:
        label_set = get_set(db, name)
        assert label_set is not None
        rows, _total, _ = image_page(db, label_set, user_id=who.user_id, offset=0, limit=1000)
    return [r.id for r in rows]


def _label(engine: Engine, name: str, image_id: int, who: Labeller, label: str, regions: object = ()) -> None:
    with session_scope(engine) as db:
        label_set = get_set(db, name)
        assert label_set is not None
        record_label(
            db, label_set, image_id, who, label=label, regions=list(regions), catalogue=CATALOGUE, source="test"
        )


def test_import_names_bad_files_and_keeps_what_it_has(engine: Engine, tmp_path: Path) -> None:
    files, report = _import(engine, tmp_path)
    assert report.added == 24
    reasons = dict(report.skipped)
    assert reasons["notes.txt"].startswith("not an image (suffix .txt")
    assert reasons["broken.png"].startswith("not a readable image")
    assert reasons["zz-copy.png"] == "duplicate image: same content as a/img000.png"
    # A second import of the same folder adds nothing and names every image as a duplicate.
    again = import_folder(tmp_path / "in-s1", engine=engine, files=files, set_name="s1", actor="system:test")
    assert again.added == 0
    assert dict(again.skipped)["a/img002.png"].endswith("already in the set")
    with pytest.raises(StateError, match="import into it with the same count"):
        import_folder(tmp_path / "in-s1", engine=engine, files=files, set_name="s1", actor="t", blind_labellers=2)


def test_labels_undo_and_audit_chain(engine: Engine, tmp_path: Path) -> None:
    _import(engine, tmp_path)
    (ann,) = _users(engine, "ann")
    ids = _ids(engine, "s1", ann)
    _label(engine, "s1", ids[0], ann, "good")
    box = {"kind": "box", "code": "scratch", "xyxy": [10, 10, 40, 30]}
    _label(engine, "s1", ids[0], ann, "scratch", [box])
    with pytest.raises(
        DatasetError,
        match=r"region 1 \(polygon, dent\) point 2: point \(200, 5\) lies outside the "
        r"96x96 image",
    ):
        _label(
            engine,
            "s1",
            ids[0],
            ann,
            "dent",
            [{"kind": "polygon", "code": "dent", "points": [[1, 1], [200, 5], [3, 40]]}],
        )
    with pytest.raises(DatasetError, match="'crack' is not 'good' or a code of the product's catalogue"):
        _label(engine, "s1", ids[0], ann, "crack")
    with pytest.raises(DatasetError, match="defect code 'crack' is not in the product's catalogue"):
        _label(engine, "s1", ids[0], ann, "scratch", [{**box, "code": "crack"}])
    with session_scope(engine) as db:
        label_set = get_set(db, "s1")
        assert label_set is not None
        first = undo_label(db, label_set, ids[0], ann, catalogue=CATALOGUE, source="test")
        assert first is not None and first.label == "good" and first.previous_label == "scratch"
        second = undo_label(db, label_set, ids[0], ann, catalogue=CATALOGUE, source="test")
        assert second is not None and second.label is None
        assert undo_label(db, label_set, ids[0], ann, catalogue=CATALOGUE, source="test") is None
        events = list(db.scalars(select(LabelEventRecord).order_by(LabelEventRecord.id)))
        assert [(e.kind, e.label, e.previous_label) for e in events] == [
            ("label", "good", None),
            ("label", "scratch", "good"),
            ("undo", "good", "scratch"),
            ("undo", None, "good"),
        ]
        audits = list(db.scalars(select(AuditRecord).where(AuditRecord.entity == "label_event")))
        assert {a.actor for a in audits} == {f"user:{ann.user_id}"}
        assert [(a.action, a.old_value, a.new_value) for a in audits] == [
            ("label.label", None, "good"),
            ("label.label", "good", "scratch"),
            ("label.undo", "scratch", "good"),
            ("label.undo", "good", None),
        ]
        assert verify_chain(session=db).ok
    with session_scope(engine) as db, pytest.raises(DatabaseError):
        db.execute(text("UPDATE label_events SET label = 'dent'"))


def test_blind_kappa_settle_export_and_manifest(engine: Engine, tmp_path: Path) -> None:
    files, _ = _import(engine, tmp_path, blind=2, n=10)
    ann, bob, cat = _users(engine, "ann", "bob", "cat")
    ids = _ids(engine, "s1", ann)
    a_labels = ["good"] * 6 + ["scratch"] * 4
    b_labels = ["good"] * 5 + ["scratch"] * 5  # one disagreement: image 6
    for i, image_id in enumerate(ids):
        _label(
            engine,
            "s1",
            image_id,
            ann,
            a_labels[i],
            [{"kind": "box", "code": "scratch", "xyxy": [5, 5, 30, 20]}] if a_labels[i] == "scratch" else [],
        )
        _label(engine, "s1", image_id, bob, b_labels[i])
    with session_scope(engine, readonly=True) as db:
        label_set = get_set(db, "s1")
        assert label_set is not None
        labels = set_labels(db, label_set)
        agree = agreement(labels, raters=2)
    # Hand-computed: p_o = 9/10; p_e = (6*5 + 4*5)/100 = 0.5; kappa = (0.9 - 0.5) / 0.5 = 0.8
    assert agree.method == "Cohen's kappa" and agree.compared == 10
    assert agree.kappa == pytest.approx(0.8)
    assert agree.confusions[0][2:] == (["good", "scratch"], [[5, 1], [0, 4]])
    assert [image.id for image, _ in labels.unsettled] == [ids[5]]
    out = tmp_path / "export"
    summary = export_labels(label_set, labels, files, out)
    manifest = read_labels_manifest(out)
    assert manifest is not None and len(manifest.unsettled) == 1 and summary.unsettled == 1
    with session_scope(engine) as db:
        label_set = get_set(db, "s1")
        assert label_set is not None
        with pytest.raises(StateError, match="settled by a third person"):
            settle_label(db, label_set, ids[5], ann, label="good", regions=[], catalogue=CATALOGUE, source="test")
    with session_scope(engine) as db:
        label_set = get_set(db, "s1")
        assert label_set is not None
        settle_label(db, label_set, ids[5], cat, label="scratch", regions=[], catalogue=CATALOGUE, source="test")
        labels = set_labels(db, label_set)
    assert not labels.unsettled and len(labels.final) == 10
    out2, out3 = tmp_path / "export2", tmp_path / "export3"
    export_labels(label_set, labels, files, out2)
    export_labels(label_set, labels, files, out3)
    assert (out2 / "labels.json").read_bytes() == (out3 / "labels.json").read_bytes()  # deterministic
    index = open_dataset(out2)
    assert index.layout == "classes" and sorted({s.label for s in index.samples}) == ["good", "scratch"]
    assert validate_dataset(index) == [] and check_labels_manifest(out2) == []
    doc = json.loads((out2 / "labels.json").read_text())
    settled = [e for e in doc["images"] if e.get("settled_by")]
    assert len(settled) == 1 and settled[0]["settled_by"] == "cat" and settled[0]["label"] == "scratch"
    assert settled[0]["labellers"] == {"ann": "good", "bob": "scratch"}
    with_mask = [e for e in doc["images"] if e.get("mask")]
    assert len(with_mask) == 4
    mask = cv2.imread(str(out2 / with_mask[0]["mask"]), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (96, 96) and int(mask[10, 10]) == 255 and int(mask[50, 50]) == 0
    assert (out2 / with_mask[0]["boxes"]).read_text() == "5 5 30 20 scratch\n"
    # A changed file is named by validate.
    victim = out2 / doc["images"][0]["file"]
    victim.write_bytes(victim.read_bytes() + b"x")
    assert check_labels_manifest(out2) == [(victim, "content differs from its sha256 in labels.json")]


def test_label_events_checked_against_their_audit_links(tmp_path: Path) -> None:
    from vinspect.store.db import make_engine
    from vinspect.store.label_verify import label_event_problems
    from vinspect.store.migrations import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    upgrade(engine)
    _import(engine, tmp_path, n=4)
    (ann,) = _users(engine, "ann")
    ids = _ids(engine, "s1", ann)
    for image_id in ids[:3]:
        _label(engine, "s1", image_id, ann, "good")
    with session_scope(engine, readonly=True) as db:
        assert list(label_event_problems(db)) == []
    with engine.begin() as conn:  # what only someone bypassing the application (and its triggers) can do
        conn.execute(text("DROP TRIGGER label_events_no_update"))
        conn.execute(text("DROP TRIGGER label_events_no_delete"))
        conn.execute(text("UPDATE label_events SET label = 'dent' WHERE id = 1"))
        conn.execute(text("DELETE FROM label_events WHERE id = 2"))
    with session_scope(engine, readonly=True) as db:
        problems = list(label_event_problems(db))
    assert len(problems) == 2
    assert re.fullmatch(r"label_event 1: content differs from audit seq \d+ \(edited\)", problems[0])
    assert re.fullmatch(r"label_event 2: covered by audit seq \d+ but missing \(deleted\)", problems[1])
    engine.dispose()
