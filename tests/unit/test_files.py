"""vinspect.files: one sha256 of a file and one atomic replacement for every layer (issue 15)."""

from __future__ import annotations

import hashlib
import os
import stat
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


def test_mode_is_set_before_the_content_and_kept_by_the_target(tmp_path: Path) -> None:
    path = tmp_path / "audit-key"
    path.write_text("old", encoding="utf-8")
    path.chmod(0o644)
    seen: list[int] = []
    old_umask = os.umask(0)  # O_CREAT alone would leave 0o666 & ~umask
    try:
        with replace_atomically(path, durable=True, mode=0o600) as tmp:
            seen.append(stat.S_IMODE(tmp.stat().st_mode))  # exists, empty, already private
            tmp.write_text("secret", encoding="utf-8")
    finally:
        os.umask(old_umask)
    assert seen == [0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8") == "secret"
