"""Reviewers' signed judgements of shadow disagreements (issue 20): who was right, counted per candidate,
verified like every signature, and fed to ``dataset from-reviews`` with their provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine
from store_factories import image

from vinspect.cli import main
from vinspect.dataset.layouts import open_dataset
from vinspect.errors import StateError
from vinspect.store import repository as repo
from vinspect.store.db import make_engine, session_scope
from vinspect.store.evidence import EvidenceStore
from vinspect.store.migrations import upgrade
from vinspect.store.ncr import Role
from vinspect.store.shadow_judgements import judge_disagreement, judgement_counts, judgements, right_side
from vinspect.store.tables import SignatureRecord
from vinspect.store.verify import verify_store

CANDIDATE = "lc@2"


def _user(engine: Engine, username: str, role: Role) -> int:
    with session_scope(engine) as session:
        return repo.create_user(
            username,
            session=session,
            display_name=username.title(),
            role=role,
            password_hash="argon2$x",
            actor="system:bootstrap",
        ).id


def _judge(engine: Engine, user_id: int, inspection_id: str, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "candidate": CANDIDATE,
        "inspection_id": inspection_id,
        "station_id": "st-1",
        "active": {"verdict": "PASS", "score": 0.31, "model": "lc"},
        "shadow": {"verdict": "FAIL", "score": 0.72},
        "good": False,
        "defect_code": "crack",
        "image_sha256": None,
        "reason": "crack visible at the top edge",
        "source": "test",
    }
    args.update(kw)
    with session_scope(engine) as session:
        return judge_disagreement(session=session, signer_user_id=user_id, **args)


def test_right_side_is_the_verdict_nearer_the_truth() -> None:
    assert right_side(good=True, active="PASS", candidate="FAIL") == "active"
    assert right_side(good=False, active="PASS", candidate="FAIL") == "candidate"
    assert right_side(good=False, active="PASS", candidate="REVIEW") == "candidate"
    assert right_side(good=True, active="REVIEW", candidate="FAIL") == "active"
    assert right_side(good=False, active="FAIL", candidate="REVIEW") == "active"
    with pytest.raises(StateError, match="agreed"):
        right_side(good=True, active="PASS", candidate="PASS")


def test_judgements_are_signed_counted_once_per_part_and_verified(engine: Engine) -> None:
    rita = _user(engine, "rita", Role.REVIEWER)
    admin = _user(engine, "ada", Role.ADMIN)
    first = _judge(engine, rita, "st-1-0001")  # defective: the candidate's FAIL was right
    assert first.right == "candidate" and first.label == "crack" and first.judged_by == "Rita"
    second = _judge(engine, rita, "st-1-0002", good=True, defect_code=None, reason="clean part, glare only")
    assert second.right == "active" and second.label == "good"
    _judge(engine, rita, "st-1-0002", candidate="lc@3")  # the same part, another candidate: its own judgement
    with pytest.raises(StateError, match="already judged for lc@2 by Rita"):
        _judge(engine, rita, "st-1-0001")
    with pytest.raises(StateError, match="needs its defect code"):
        _judge(engine, rita, "st-1-0003", defect_code=" ")
    with pytest.raises(StateError, match="needs a reason"):
        _judge(engine, rita, "st-1-0003", reason=" ")
    with pytest.raises(StateError, match="may not sign REVIEW"):
        _judge(engine, admin, "st-1-0003")
    with session_scope(engine, readonly=True) as session:
        assert judgement_counts(session=session, candidate=CANDIDATE) == {
            "judged": 2,
            "candidate_right": 1,
            "active_right": 1,
        }
        assert [j.inspection_id for j in judgements(session=session, candidate="lc@3")] == ["st-1-0002"]
        sigs = session.query(SignatureRecord).filter_by(entity="shadow").all()
        assert {s.meaning for s in sigs} == {"REVIEW"} and len(sigs) == 3
        report = verify_store(session=session)
    assert report.ok and not report.problems, report


def _png(path: Path, pixels: np.ndarray) -> bytes:
    assert cv2.imwrite(str(path), pixels)
    return path.read_bytes()


def test_from_reviews_takes_judged_shadow_disagreements_with_their_provenance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(f"sqlite:///{data / 'vinspect.db'}")
    upgrade(engine)
    evidence = EvidenceStore(data / "evidence")
    rita = _user(engine, "rita", Role.REVIEWER)
    shas = {seed: evidence.put(_png(tmp_path / f"{seed}.png", image(seed)), kind="image").sha256 for seed in (7, 8, 9)}
    _judge(engine, rita, "st-1-0007", image_sha256=shas[7])
    _judge(engine, rita, "st-1-0008", image_sha256=shas[8], good=True, defect_code=None, reason="clean")
    _judge(engine, rita, "st-1-0009", image_sha256=None)  # no frame kept: no training image
    evidence.close()
    engine.dispose()
    out = tmp_path / "set"
    assert main(["dataset", "from-reviews", "--data-dir", str(data), "--out", str(out)]) == 0
    assert "0 reviewed NCR(s), 0 audited PASS sample(s) and 2 judged shadow disagreement(s)" in capsys.readouterr().out
    index = open_dataset(out)
    assert sorted((s.label, s.stem) for s in index.samples) == [
        ("crack", "shadow-lc_2-st-1-0007"),
        ("good", "shadow-lc_2-st-1-0008"),
    ]
    assert np.array_equal(np.asarray(Image.open(out / "crack" / "shadow-lc_2-st-1-0007.png")), image(7))
    prov = json.loads((out / "crack" / "shadow-lc_2-st-1-0007.provenance.json").read_text())
    assert prov["source"] == "shadow-judgement" and prov["candidate"] == CANDIDATE
    assert prov["right"] == "candidate" and prov["reviewer"] == "Rita"
    assert prov["active"] == {"verdict": "PASS", "score": 0.31, "model": "lc"}
    assert len(prov["signature_sha256"]) == 64 and prov["image_sha256"] == shas[7]
