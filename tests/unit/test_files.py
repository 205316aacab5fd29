"""vinspect.files: one sha256 of a file and one atomic replacement for every layer (issue 15)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vinspect.files import replace_atomically, sha256_file, write_atomically


def test_sha256_file_matches_hashlib_over_the_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # > 1 MiB: streamed in several blocks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("durable", [True, False])
def test_write_atomically_replaces_and_leaves_no_temporary(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "status.json"
    path.write_text("old", encoding="utf-8")
    write_atomically(path, "new", durable=durable)
    assert path.read_text(encoding="utf-8") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "ACTIVE"
    path.write_text("1\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="half way"), replace_atomically(path, durable=True) as tmp:
        tmp.write_text("2", encoding="utf-8")
        raise RuntimeError("half way")
    assert path.read_text(encoding="utf-8") == "1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ACTIVE"]
