"""``vinspect dataset from-reviews``: adjudicated NCRs -> class folders with provenance, dedup, no leakage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine
from store_factories import DEFAULTS, image, make_inspection

from vinspect.cli import main
from vinspect.dataset.from_reviews import DATASET_FILE, ReviewedImage, build_from_reviews, pixel_sha256
from vinspect.dataset.layouts import open_dataset
from vinspect.errors import DatasetError
from vinspect.store import repository as repo
from vinspect.store.adjudicated import adjudicated_parts
from vinspect.store.db import make_engine, session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.migrations import upgrade
from vinspect.store.ncr import ReviewDecision, ReviewInput, Role
from vinspect.store.sink import StoreSink


def _store(data_dir: Path) -> tuple[Engine, EvidenceStore]:
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{data_dir / 'vinspect.db'}")
    upgrade(engine)
    return engine, EvidenceStore(data_dir / "evidence")


def _review(engine: Engine, ncr_uuid: str, user_id: int, decision: ReviewDecision, code: str | None) -> None:
    with session_scope(engine) as session:
        repo.claim_ncr(ncr_uuid, session=session, user_id=user_id)
        repo.add_review(
            ncr_uuid,
            session=session,
            review=ReviewInput(user_id=user_id, decision=decision, reason="looked at the part", defect_code=code),
        )


def _reviewed_store(data_dir: Path) -> dict[int, str]:
    """Four NCRs: 1 false reject, 2 confirmed crack, 3 confirmed as 'dent', 4 not reviewed."""
    engine, evidence = _store(data_dir)
    refs: list[str] = []
    with StoreSink(engine, evidence, defaults=DEFAULTS, on_ncr=lambda r: refs.append(r.ncr_uuid)) as sink:
        for seq in (1, 2, 3, 4):
            sink.write(make_inspection(seq))
    with session_scope(engine) as session:
        rita = repo.create_user(
            "rita",
            session=session,
            display_name="Rita Reviewer",
            role=Role.REVIEWER,
            password_hash="argon2$x",
            actor="system:bootstrap",
        ).id
    _review(engine, refs[0], rita, ReviewDecision.FALSE_REJECT, None)
    _review(engine, refs[1], rita, ReviewDecision.CONFIRMED_DEFECT, "crack")
    _review(engine, refs[2], rita, ReviewDecision.CONFIRMED_DEFECT, "dent")
    evidence.close()
    engine.dispose()
    return dict(zip((1, 2, 3, 4), refs, strict=True))


def _good_dataset(root: Path, seeds: tuple[int, ...]) -> Path:
    (root / "good").mkdir(parents=True)
    for s in seeds:
        Image.fromarray(image(s)).save(root / "good" / f"g{s}.png")
    return root


def test_from_reviews_writes_labelled_classes_with_provenance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    refs = _reviewed_store(data_dir)
    merge = _good_dataset(tmp_path / "base", (101, 102))
    out = tmp_path / "set"
    assert main(["dataset", "from-reviews", "--data-dir", str(data_dir), "--out", str(out), "--merge", str(merge)]) == 0
    assert "3 from reviews, 2 from the merged dataset" in capsys.readouterr().out
    index = open_dataset(out)
    assert index.layout == "classes"
    assert sorted((s.label, s.stem) for s in index.samples) == [
        ("crack", "NCR-2026-000002"),
        ("dent", "NCR-2026-000003"),
        ("good", "NCR-2026-000001"),
        ("good", "g101"),
        ("good", "g102"),
    ]
    prov = json.loads((out / "good" / "NCR-2026-000001.provenance.json").read_text())
    assert prov["ncr_uuid"] == refs[1]
    assert prov["decision"] == "FALSE_REJECT"
    assert prov["reviewer"] == "Rita Reviewer"
    assert len(prov["signature_sha256"]) == 64
    assert prov["model"]["sha256"] == "ab" * 32
    stored = np.asarray(Image.open(out / "crack" / "NCR-2026-000002.png"))
    assert np.array_equal(stored, image(2))  # the evidence frame, pixel for pixel
    manifest = json.loads((out / DATASET_FILE).read_text())
    assert manifest["counts"] == {"crack": 1, "dent": 1, "good": 3}
    assert len(manifest["dataset_sha256"]) == 64


def test_from_reviews_is_deterministic(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _reviewed_store(data_dir)
    merge = _good_dataset(tmp_path / "base", (101,))
    hashes = []
    for name in ("a", "b"):
        assert (
            main(
                [
                    "dataset",
                    "from-reviews",
                    "--data-dir",
                    str(data_dir),
                    "--out",
                    str(tmp_path / name),
                    "--merge",
                    str(merge),
                ]
            )
            == 0
        )
        hashes.append(json.loads((tmp_path / name / DATASET_FILE).read_text())["dataset_sha256"])
    assert hashes[0] == hashes[1]


def test_from_reviews_dedups_by_pixels_and_keeps_the_first(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _reviewed_store(data_dir)
    merge = _good_dataset(tmp_path / "base", (101,))
    Image.fromarray(image(1)).save(merge / "good" / "same_as_ncr1.bmp")  # NCR 1's frame, re-encoded
    out = tmp_path / "set"
    assert main(["dataset", "from-reviews", "--data-dir", str(data_dir), "--out", str(out), "--merge", str(merge)]) == 0
    goods = sorted(p.name for p in (out / "good").glob("*") if not p.name.endswith(".json"))
    assert goods == ["g101.png", "same_as_ncr1.bmp"]
    assert json.loads((out / DATASET_FILE).read_text())["duplicates_dropped"] == 1


def test_from_reviews_refuses_conflicting_labels_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    _reviewed_store(data_dir)
    merge = _good_dataset(tmp_path / "base", (101,))
    Image.fromarray(image(2)).save(merge / "good" / "g2.png")  # reviewers confirmed NCR 2 as a crack
    assert (
        main(
            [
                "dataset",
                "from-reviews",
                "--data-dir",
                str(data_dir),
                "--out",
                str(tmp_path / "set"),
                "--merge",
                str(merge),
            ]
        )
        == 2
    )
    assert re.search(r"NCR-2026-000002 labelled 'crack' but the same image .*g2.png is 'good'", capsys.readouterr().err)
    assert not (tmp_path / "set").exists()


def test_from_reviews_refuses_golden_and_frozen_images_naming_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    _reviewed_store(data_dir)
    merge = _good_dataset(tmp_path / "base", (101,))
    bundle = tmp_path / "bundle"
    (bundle / "golden").mkdir(parents=True)
    rgb = np.repeat(image(3)[:, :, None], 3, axis=2)  # the golden copy is stored as RGB: same pixels
    Image.fromarray(rgb).save(bundle / "golden" / "00_dent.png")
    (bundle / "manifest.json").write_text(json.dumps({"golden_samples": [{"file": "golden/00_dent.png"}]}))
    frozen = _good_dataset(tmp_path / "frozen", (101,))
    args = [
        "dataset",
        "from-reviews",
        "--data-dir",
        str(data_dir),
        "--merge",
        str(merge),
        "--exclude",
        str(bundle),
        "--exclude",
        str(frozen),
    ]
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert re.search(r"2 image\(s\) are also golden.*g101.png = .*frozen.*g101.png", err)
    assert re.search(r"NCR-2026-000003 = .*00_dent.png", err)
    assert not (tmp_path / "refused").exists()
    assert main([*args, "--out", str(tmp_path / "set"), "--drop-leaking"]) == 0
    labels = sorted(s.stem for s in open_dataset(tmp_path / "set").samples)
    assert labels == ["NCR-2026-000001", "NCR-2026-000002"]


def test_from_reviews_skips_mrb_and_unreviewed_and_needs_a_good_image(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _reviewed_store(data_dir)
    engine = make_engine(f"sqlite:///{data_dir / 'vinspect.db'}")
    with session_scope(engine, readonly=True) as session:
        parts = list(adjudicated_parts(session=session))
    engine.dispose()
    assert [(p.ncr_number, p.label) for p in parts] == [
        ("NCR-2026-000001", "good"),
        ("NCR-2026-000002", "crack"),
        ("NCR-2026-000003", "dent"),
    ]
    defects = [
        ReviewedImage(name=p.ncr_number, label=p.label, image_sha256=p.image_sha256, provenance=p.provenance())
        for p in parts
        if p.label != "good"
    ]
    evidence = EvidenceStore(data_dir / "evidence")
    with pytest.raises(DatasetError, match="no good image"):
        build_from_reviews(defects, read_blob=evidence.read, out=tmp_path / "set")
    evidence.close()


def test_from_reviews_refuses_a_non_empty_output_and_a_missing_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "set"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        build_from_reviews([], read_blob=lambda _: b"", out=out)
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["dataset", "from-reviews", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "no store at" in capsys.readouterr().err


def test_pixel_hash_ignores_encoding_but_not_pixels() -> None:
    grey = image(5)
    assert pixel_sha256(grey) == pixel_sha256(np.repeat(grey[:, :, None], 3, axis=2))
    changed = grey.copy()
    changed[0, 0] ^= 1
    assert pixel_sha256(changed) != pixel_sha256(grey)
