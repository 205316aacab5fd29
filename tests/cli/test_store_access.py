"""``store_engine``: the one way a ``vinspect`` verb opens and closes the store."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest

from vinspect.cli.store_access import missing_sqlite_store, store_engine
from vinspect.errors import StoreError
from vinspect.store import make_engine, upgrade
from vinspect.store.audit_key import KEY_FILE, keying_for


def _args(data_dir: Path, database_url: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(data_dir=data_dir, database_url=database_url)


def test_default_creates_the_data_dir_store_and_key_then_disposes(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    with store_engine(_args(data_dir)) as engine:
        pool = engine.pool
        assert keying_for(engine) is not None, "rows appended through the engine must be signed"
    assert engine.pool is not pool, "the engine was not disposed of"  # dispose() replaces the pool
    assert (data_dir / "vinspect.db").exists()
    assert (data_dir / KEY_FILE).exists()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o750


def test_the_engine_is_disposed_when_the_body_raises(tmp_path: Path) -> None:
    seen = {}
    with pytest.raises(RuntimeError, match="boom"), store_engine(_args(tmp_path / "d")) as engine:
        seen["engine"], seen["pool"] = engine, engine.pool
        raise RuntimeError("boom")
    assert seen["engine"].pool is not seen["pool"]


def test_must_exist_refuses_a_missing_sqlite_store_and_creates_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "absent"
    refusal = r"no store at .*absent/vinspect\.db \(give --data-dir or --database-url\)"
    with pytest.raises(StoreError, match=refusal), store_engine(_args(data_dir), must_exist=True):
        pytest.fail("the body must not run")
    assert not data_dir.exists()


def test_must_exist_signs_only_with_an_existing_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "unkeyed"
    data_dir.mkdir()
    bare = make_engine(f"sqlite:///{data_dir / 'vinspect.db'}")
    upgrade(bare)
    bare.dispose()
    with store_engine(_args(data_dir), must_exist=True) as engine:
        assert keying_for(engine) is None
    assert not (data_dir / KEY_FILE).exists(), "a read/administer verb must not create an audit key"
    with store_engine(_args(data_dir)):
        pass  # the default creates the key ...
    with store_engine(_args(data_dir), must_exist=True) as engine:
        assert keying_for(engine) is not None  # ... which must_exist then signs with


def test_missing_sqlite_store(tmp_path: Path) -> None:
    (tmp_path / "there.db").write_bytes(b"")
    assert missing_sqlite_store(f"sqlite:///{tmp_path / 'there.db'}") is None
    assert missing_sqlite_store(f"sqlite:///{tmp_path / 'gone.db'}") == tmp_path / "gone.db"
    assert missing_sqlite_store("postgresql+psycopg://u@h/db") is None
