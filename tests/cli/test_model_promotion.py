"""Two-person signed promotion under criteria fixed before the evidence, and a signed rollback (issue 20)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from testkit.bundles import state_operating_point, write_tiny_bundle
from vinspect.cli import main
from vinspect.models.registry import ModelRegistry
from vinspect.store import make_engine, session_scope, verify_store

PASSWORD = "a long enough passphrase"


def _add_user(data: Path, monkeypatch: pytest.MonkeyPatch, username: str, role: str) -> None:
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
                str(data),
            ]
        )
        == 0
    )


def _bundle(root: Path, version: str, *, trained_by: str, write_png: Callable[..., Path]) -> Path:
    """A tiny bundle (score = mean brightness) with stated rates and two golden samples."""
    bundle = write_tiny_bundle(root / f"tiny-{version}")
    rng = np.random.default_rng(1)
    state_operating_point(bundle, rng.normal(0.2, 0.02, 150), rng.normal(0.9, 0.02, 30), version=version)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["training"]["trained_by"] = trained_by
    golden = []
    for name, level, expect in (("00_good.png", 51, "PASS"), ("01_crack.png", 242, "FAIL")):
        write_png(bundle / "golden" / name, np.full((32, 32), level, dtype=np.uint8))
        golden.append({"file": f"golden/{name}", "expect": expect, "score": level / 255})
    manifest["golden_samples"] = golden
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


def _frozen(root: Path, data: Path, write_png: Callable[..., Path], *, faint_defect: bool = False) -> Path:
    source = root / "eval-src"
    for i, level in enumerate((0.18, 0.2, 0.22)):
        write_png(source / "good" / f"g{i}.png", np.full((32, 32), round(level * 255), dtype=np.uint8))
    for i, level in enumerate((0.21,) if faint_defect else (0.85, 0.95)):
        write_png(source / "crack" / f"c{i}.png", np.full((32, 32), round(level * 255), dtype=np.uint8))
    out = root / "frozen"
    assert main(["dataset", "freeze", str(source), "--out", str(out), "--name", "eval", "--version", "1"]) == 0
    return out


def _sign(data: Path, monkeypatch: pytest.MonkeyPatch, user: str, version: str = "2") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    return main(
        [
            "models",
            "sign",
            "tiny",
            version,
            "--data-dir",
            str(data),
            "--user",
            user,
            "--reason",
            "reviewed the comparison and the changed verdicts",
            "--password-stdin",
        ]
    )


def test_promotion_needs_criteria_evidence_and_two_signers_other_than_the_trainer_then_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_png: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "station"
    for user, role in (
        ("quinn", "quality_engineer"),
        ("petra", "quality_engineer"),
        ("tom", "quality_engineer"),
        ("rita", "reviewer"),
    ):
        _add_user(data, monkeypatch, user, role)
    models = ["models", "--data-dir", str(data)]
    assert (
        main([*models, "install", str(_bundle(tmp_path, "1", trained_by="tom", write_png=write_png)), "--activate"])
        == 0
    )
    assert main([*models, "install", str(_bundle(tmp_path, "2", trained_by="tom", write_png=write_png))]) == 0
    frozen = _frozen(tmp_path, data, write_png)
    capsys.readouterr()

    assert main(["models", "promote", "tiny", "2", "--data-dir", str(data)]) == 2
    assert "no acceptance criteria fixed" in capsys.readouterr().err
    crit = [
        "models",
        "criteria",
        "tiny",
        "2",
        "--data-dir",
        str(data),
        "--max-false-reject",
        "0.05",
        "--max-escape",
        "0",
        "--reason",
        "retrained on reviewed false rejects",
    ]
    assert main(crit) == 0
    assert "trained by tom" in capsys.readouterr().out
    assert main(crit) == 2
    assert "already fixed" in capsys.readouterr().err
    assert _sign(data, monkeypatch, "quinn") == 2
    assert "nothing to sign yet" in capsys.readouterr().err

    assert (
        main(["models", "evaluate", "tiny", "2", "--data-dir", str(data), "--data", str(frozen), "--no-progress"]) == 0
    )
    out = capsys.readouterr().out
    assert "against tiny 1 on eval 1" in out
    assert "golden defects failed 1/1" in out
    assert "criteria met" in out

    assert _sign(data, monkeypatch, "tom") == 2
    assert "tom trained tiny 2 and may not sign" in capsys.readouterr().err
    assert _sign(data, monkeypatch, "rita") == 2
    assert "may not sign a model promotion" in capsys.readouterr().err
    assert _sign(data, monkeypatch, "quinn") == 0
    assert "signatures 1/2" in capsys.readouterr().out
    assert main(["models", "promote", "tiny", "2", "--data-dir", str(data)]) == 2
    assert "1 of 2 promotion signatures" in capsys.readouterr().err
    assert _sign(data, monkeypatch, "quinn") == 2
    assert "a second signature must come from another person" in capsys.readouterr().err
    assert _sign(data, monkeypatch, "petra") == 0
    registry = ModelRegistry(data / "models")
    assert registry.active_version("tiny") == "1"
    assert main(["models", "promote", "tiny", "2", "--data-dir", str(data)]) == 0
    assert "active version is now 2 (was 1); signed by Quinn and Petra" in capsys.readouterr().out
    assert registry.active_version("tiny") == "2"

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert (
        main(
            [
                "models",
                "rollback",
                "tiny",
                "--data-dir",
                str(data),
                "--user",
                "petra",
                "--reason",
                "false rejects rose on line 2",
                "--password-stdin",
            ]
        )
        == 0
    )
    assert "rolled back from 2 to 1" in capsys.readouterr().out
    assert registry.active_version("tiny") == "1"

    record = tmp_path / "record.json"
    assert main(["models", "record", "tiny", "--data-dir", str(data), "--out", str(record)]) == 0
    doc = json.loads(record.read_text())
    actions = [h["action"] for h in doc["history"]]
    assert actions == [
        "model.criteria",
        "model.evaluation",
        "model.promotion_signed",
        "model.promotion_signed",
        "model.promote",
        "model.rollback",
    ]
    assert doc["history"][-2]["content"]["signers"] == ["Quinn", "Petra"]
    assert {e["version"]: e["trained_by"] for e in doc["installed"]} == {"1": "tom", "2": "tom"}
    engine = make_engine(f"sqlite:///{data / 'vinspect.db'}")
    with session_scope(engine, readonly=True) as session:
        report = verify_store(session=session)
        assert report.ok, report
    engine.dispose()


def test_a_candidate_that_misses_a_criterion_is_refused_even_with_two_signatures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_png: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "station"
    for user in ("quinn", "petra"):
        _add_user(data, monkeypatch, user, "quality_engineer")
    models = ["models", "--data-dir", str(data)]
    assert (
        main([*models, "install", str(_bundle(tmp_path, "1", trained_by="tom", write_png=write_png)), "--activate"])
        == 0
    )
    assert main([*models, "install", str(_bundle(tmp_path, "2", trained_by="tom", write_png=write_png))]) == 0
    frozen = _frozen(tmp_path, data, write_png, faint_defect=True)  # a defect both models pass
    assert (
        main(
            [
                "models",
                "criteria",
                "tiny",
                "2",
                "--data-dir",
                str(data),
                "--max-escape",
                "0",
                "--reason",
                "no escapes on the frozen set",
            ]
        )
        == 0
    )
    assert (
        main(["models", "evaluate", "tiny", "2", "--data-dir", str(data), "--data", str(frozen), "--no-progress"]) == 1
    )
    assert "defects escaping 100.0%, over the 0.0% ceiling" in capsys.readouterr().out
    assert _sign(data, monkeypatch, "quinn") == 0
    assert _sign(data, monkeypatch, "petra") == 0
    capsys.readouterr()
    assert main(["models", "promote", "tiny", "2", "--data-dir", str(data)]) == 2
    assert "defects escaping 100.0%" in capsys.readouterr().err
    assert ModelRegistry(data / "models").active_version("tiny") == "1"


def test_evaluate_refuses_a_folder_that_is_not_frozen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_png: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "station"
    assert (
        main(
            [
                "models",
                "--data-dir",
                str(data),
                "install",
                str(_bundle(tmp_path, "2", trained_by="tom", write_png=write_png)),
            ]
        )
        == 0
    )
    write_png(tmp_path / "loose" / "good" / "a.png", np.zeros((8, 8), dtype=np.uint8))
    assert main(["models", "evaluate", "tiny", "2", "--data-dir", str(data), "--data", str(tmp_path / "loose")]) == 2
    assert "not a frozen set" in capsys.readouterr().err
