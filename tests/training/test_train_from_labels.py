"""Train from a labelling export (issue 19): the bundle records the labels manifest's SHA-256."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vinspect.store.db import make_engine, session_scope
from vinspect.store.label_export import export_labels
from vinspect.store.label_files import LabelFiles
from vinspect.store.label_queries import get_set, set_images, set_labels
from vinspect.store.labelling import Labeller, import_folder, record_label
from vinspect.store.migrations import upgrade
from vinspect.store.users import create_user

pytestmark = pytest.mark.train


def test_bundle_names_its_training_labels(tiny_dataset: Path, small_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from training import train_bundle

    engine = make_engine(f"sqlite:///{tmp_path / 'vinspect.db'}")
    upgrade(engine)
    files = LabelFiles(tmp_path / "labelling")
    report = import_folder(tiny_dataset, engine=engine, files=files, set_name="tiny", actor="system:test")
    assert report.added == 36 and not report.skipped
    with session_scope(engine) as db:
        user = create_user(
            "ann",
            session=db,
            display_name="Ann",
            role="quality_engineer",  # type: ignore[arg-type]
            password_hash="x" * 20,
            actor="system:test",
        )
        label_set = get_set(db, "tiny")
        assert label_set is not None
        for image in set_images(db, label_set):  # label as the folders say (the imported path keeps them)
            label = "good" if image.file_name.startswith("good/") else "spot"
            record_label(
                db,
                label_set,
                image.id,
                Labeller(user_id=user.id, username="ann"),
                label=label,
                regions=[],
                catalogue=("spot",),
                source="test",
            )
        labels = set_labels(db, label_set)
    out = tmp_path / "export"
    summary = export_labels(label_set, labels, files, out)
    assert summary.per_label == {"good": 30, "spot": 6}
    manifest = train_bundle(out, tmp_path / "bundle", name="tiny", version="l1", config=small_config, progress=False)
    assert manifest.training.labels_manifest_sha256 == hashlib.sha256((out / "labels.json").read_bytes()).hexdigest()
    assert manifest.task == "anomaly+classifier" and manifest.labels == ("spot",)
    engine.dispose()
