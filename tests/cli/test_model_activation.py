"""`vinspect models install --activate` / `models activate` refuse a bundle that cannot meet its
targets unless a quality engineer accepts its stated rates (signed, audited) (issue 12)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from testkit.bundles import state_operating_point
from vinspect.cli import main
from vinspect.models.registry import ModelRegistry
from vinspect.store import make_engine, session_scope, verify_store
from vinspect.store.review_queries import audit_rows
from vinspect.store.tables import SignatureRecord

PASSWORD = "a long enough passphrase"


def _overlapping(bundle: Path, version: str = "1") -> Path:
    rng = np.random.default_rng(7)
    return state_operating_point(bundle, rng.normal(0.0, 1.0, 200), rng.normal(1.5, 1.0, 40), version=version)


def _separated(bundle: Path) -> Path:
    rng = np.random.default_rng(1)
    return state_operating_point(bundle, rng.normal(0.2, 0.02, 150), rng.normal(0.9, 0.02, 30))


def _add_user(data_dir: Path, monkeypatch: pytest.MonkeyPatch, username: str, role: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert (
        main(
            [
                "users",
                "add",
                username,
                "--display-name",
                username.title(),
                "--role",
                role,
                "--password-stdin",
                "--data-dir",
                str(data_dir),
            ]
        )
        == 0
    )


def _accept(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    bundle: Path,
    user: str,
    password: str = PASSWORD,
) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return main(
        [
            "models",
            "--data-dir",
            str(data_dir),
            "install",
            str(bundle),
            "--activate",
            "--accept-risk",
            "--user",
            user,
            "--reason",
            "held-back family overlaps; reviewers staffed for the band",
            "--password-stdin",
        ]
    )


def test_a_bundle_that_meets_its_targets_activates_without_acceptance(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "station"
    assert main(["models", "--data-dir", str(data), "install", str(_separated(tiny_bundle)), "--activate"]) == 0
    assert "active version is now 1" in capsys.readouterr().out
    assert ModelRegistry(data / "models").active_version("tiny") == "1"


@pytest.mark.parametrize("make", [_overlapping, lambda b: b], ids=["overlapping", "no-stated-rates"])
def test_a_bundle_that_cannot_meet_its_targets_is_refused_and_nothing_is_installed(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], make
) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "station"
    assert main(["models", "--data-dir", str(data), "install", str(make(tiny_bundle)), "--activate"]) == 2
    err = capsys.readouterr().err
    assert "refused to activate tiny 1: it cannot meet its targets" in err
    assert "--accept-risk --user NAME --reason TEXT" in err
    assert ("at zero escapes" in err and "would need review" in err) or "states no expected" in err
    assert ModelRegistry(data / "models").list() == []


def test_models_activate_refuses_an_installed_risky_version(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "station"
    assert main(["models", "--data-dir", str(data), "install", str(_overlapping(tiny_bundle))]) == 0
    assert main(["models", "--data-dir", str(data), "activate", "tiny", "1"]) == 2
    assert "cannot meet its targets" in capsys.readouterr().err
    assert ModelRegistry(data / "models").active_version("tiny") is None


def test_a_wrong_password_or_a_reviewer_cannot_accept_the_risk(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "station"
    _add_user(data, monkeypatch, "quinn", "quality_engineer")
    _add_user(data, monkeypatch, "rita", "reviewer")
    bundle = _overlapping(tiny_bundle)
    assert _accept(data, monkeypatch, bundle, "quinn", password="not the password at all") == 2
    assert "signature refused" in capsys.readouterr().err
    assert _accept(data, monkeypatch, _overlapping(tiny_bundle, version="2"), "rita") == 2
    assert "a quality engineer accepts a model's risk" in capsys.readouterr().err
    registry = ModelRegistry(data / "models")
    assert registry.active_version("tiny") is None
    engine = make_engine(f"sqlite:///{data / 'vinspect.db'}")
    with session_scope(engine, readonly=True) as session:
        failures = audit_rows(session=session, entity="signing")
        assert session.query(SignatureRecord).count() == 0
    assert failures[0].action == "signature.failure" and failures[0].entity_id == "model tiny@1"


def test_a_quality_engineer_accepts_the_stated_rates_signed_and_audited(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "station"
    _add_user(data, monkeypatch, "quinn", "quality_engineer")
    assert _accept(data, monkeypatch, _overlapping(tiny_bundle), "quinn") == 0
    assert "risk accepted by quinn" in capsys.readouterr().out
    assert ModelRegistry(data / "models").active_version("tiny") == "1"
    engine = make_engine(f"sqlite:///{data / 'vinspect.db'}")
    with session_scope(engine, readonly=True) as session:
        sig = session.query(SignatureRecord).one()
        rows = {r.action: r for r in audit_rows(session=session, entity="model", entity_id="tiny@1")}
        report = verify_store(session=session)
    assert (sig.entity, sig.entity_id, sig.meaning, sig.printed_name) == ("model", "tiny@1", "MODEL_PROMOTION", "Quinn")
    assert set(rows) == {"model.risk_accepted", "model.activate"}
    accepted = rows["model.risk_accepted"]
    assert accepted.record_sha256 == sig.record_sha256 and "at zero escapes" in (accepted.new_value or "")
    assert report.ok, report.problems
