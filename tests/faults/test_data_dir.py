"""Issue 16 #5: ``vinspect run --data-dir DIR`` names the folder when it is missing (with its
parent), unwritable or full, before the database or a sink opens; a missing folder whose parent
exists is created."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_crash_recovery import _station, run_station

from vinspect.datadir import prepare_data_dir
from vinspect.errors import ConfigError


@pytest.fixture()
def station(tmp_path, tiny_bundle) -> Path:
    return _station(
        tmp_path,
        tiny_bundle,
        sinks="[{kind: store, product: {part_number: a, part_revision: b, "
        "part_name: c, requirement_ref: d, site_id: e, line_id: f}}, jsonl]",
    )


@pytest.fixture()
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root, as in CI's container); skipped where mounting is not allowed."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    if (
        shutil.which("mount") is None
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_missing_data_dir_with_missing_parent_is_named(tmp_path, station) -> None:
    missing = tmp_path / "typo" / "data"
    done = run_station(station, missing, 3, approve=False)
    assert done.returncode == 2 and f"data directory {missing} does not exist, nor its parent" in done.stderr
    assert not missing.parent.exists()


def test_missing_data_dir_is_created_when_its_parent_exists(tmp_path, station) -> None:
    data = tmp_path / "fresh"
    refused = run_station(station, data, 3, approve=False)  # a fresh store holds no approval of the file
    assert refused.returncode == 2 and f"created data directory {data}" in refused.stderr
    assert "is not approved" in refused.stderr and "vinspect config approve --station" in refused.stderr
    done = run_station(station, data, 3)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["books"]["triggers"] == 3
    assert (data / "vinspect.db").is_file() and (data / "audit-key").is_file()


def test_full_disk_at_start_is_named(tmp_path, station, tmpfs: Path) -> None:
    (tmpfs / "filler").write_bytes(b"\0" * (1024 * 1024 - 2048))  # leave less than the probe
    done = run_station(station, tmpfs, 3, approve=False)
    assert done.returncode == 2 and f"data directory {tmpfs}: disk full" in done.stderr, done.stderr


def test_low_free_space_at_start_is_named(tmpfs: Path) -> None:
    with pytest.raises(ConfigError, match=rf"data directory {tmpfs}: disk full \(.* MiB free, need at least 32 MiB"):
        prepare_data_dir(tmpfs)


def test_unwritable_data_dir_is_named(tmp_path, station, tmpfs: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    done = run_station(station, tmpfs, 3, approve=False)
    assert done.returncode == 2 and f"data directory {tmpfs}: not writable" in done.stderr, done.stderr


def test_data_dir_that_is_a_file_is_named(tmp_path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ConfigError, match=f"data directory {path} is not a directory"):
        prepare_data_dir(path)
