"""``vinspect serve`` / ``vinspect users add`` argument handling (registered by vinspect.cli.web)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from vinspect.cli import web
from vinspect.errors import ConfigError
from vinspect.store import make_engine, session_scope
from vinspect.store.review_queries import audit_rows
from vinspect.store.users import get_user


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vinspect")
    web.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_serve_defaults_to_loopback(tmp_path: Path) -> None:
    args = _parser().parse_args(["serve", "--data-dir", str(tmp_path)])
    settings = web._settings(args)
    assert settings.api_host == "127.0.0.1" and settings.data_dir == tmp_path
    with pytest.raises(ConfigError):
        web._settings(_parser().parse_args(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]))


def test_users_add_hashes_and_audits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    args = _parser().parse_args(
        [
            "users",
            "add",
            "qe1",
            "--display-name",
            "Quinn Engineer",
            "--role",
            "quality_engineer",
            "--password-stdin",
            "--data-dir",
            str(tmp_path),
        ]
    )
    assert args.handler(args) == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'vinspect.db'}")
    with session_scope(engine, readonly=True) as session:
        user = get_user(session=session, username="qe1")
        rows = audit_rows(session=session, entity="user")
    assert user is not None and user.password_hash.startswith("$argon2id$")
    assert rows[0].action == "user.create" and rows[0].actor.startswith("cli:")


def test_users_add_refuses_weak_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("admin\n"))
    args = _parser().parse_args(
        [
            "users",
            "add",
            "boss",
            "--display-name",
            "B",
            "--role",
            "admin",
            "--password-stdin",
            "--data-dir",
            str(tmp_path),
        ]
    )
    with pytest.raises(ConfigError, match="password refused"):
        args.handler(args)
