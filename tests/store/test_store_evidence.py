"""Evidence files: content addressing, containment (goal S6) and scrub (goal D11)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from store_factories import DEFAULTS, make_inspection

from vinspect.errors import StoreError
from vinspect.imaging import encode_png
from vinspect.store.canonical import sha256_hex
from vinspect.store.db import session_scope
from vinspect.store.evidence import EvidenceStore, heatmap_png, scrub
from vinspect.store.sink import StoreSink


def test_evidence_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "ev")
    data = encode_png(np.arange(64, dtype=np.uint8).reshape(8, 8))
    first = store.put(data, kind="image")
    again = store.put(data, kind="image")
    assert first.sha256 == again.sha256 == sha256_hex(data)
    assert store.read(first.sha256) == data
    assert sorted(p.name for p in (tmp_path / "ev").rglob("*")) == [first.sha256[:2], f"{first.sha256}.png"]
    store.close()


def test_evidence_repairs_a_damaged_copy_on_the_next_put(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "ev")
    data = encode_png(np.full((4, 4), 7, np.uint8))
    path = store.path_for(sha256_hex(data))
    path.parent.mkdir(parents=True)
    path.write_bytes(data[:10])  # what a crash mid-write could leave
    store.put(data, kind="image")
    assert path.read_bytes() == data


@pytest.mark.parametrize(
    "name",
    [
        "../" * 3 + "etc/passwd",
        "..%2f..%2fetc",
        "/etc/passwd",
        "a" * 63,
        "A" * 64,
        "g" * 64,
        "a" * 64 + "\x00",
        "a" * 64 + "/../x",
        "..\\..\\x",
        "\u2025" * 32,
        "",
    ],
)
def test_evidence_refuses_anything_but_a_digest(tmp_path: Path, name: str) -> None:
    with pytest.raises(StoreError):
        EvidenceStore(tmp_path / "ev").path_for(name)


def test_evidence_refuses_a_planted_symlink_out_of_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "ev", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    digest = "ab" + "0" * 62
    os.symlink(outside, root / "ab")
    with pytest.raises(StoreError, match="outside"):
        EvidenceStore(root).path_for(digest)
    assert list(outside.iterdir()) == []


def test_evidence_heatmap_handles_flat_and_non_finite_maps() -> None:
    for amap in (np.zeros((4, 4), np.float32), np.array([[np.nan, np.inf], [0.0, 1.0]], np.float32)):
        assert heatmap_png(amap).startswith(b"\x89PNG")


@pytest.mark.parametrize("damage", ["missing", "bit_flip", "truncated"])
def test_evidence_scrub_finds_every_injected_fault(engine: Engine, evidence: EvidenceStore, damage: str) -> None:
    sink = StoreSink(engine, evidence, defaults=DEFAULTS)
    for seq in range(4):
        sink.write(make_inspection(seq))
    with session_scope(engine, readonly=True) as session:
        clean = scrub(evidence, session=session)
    assert clean.ok and clean.checked == 8
    victim = sorted(evidence.root.rglob("*.png"))[3]
    if damage == "missing":
        victim.unlink()
    elif damage == "bit_flip":
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
    else:
        victim.write_bytes(victim.read_bytes()[:-7])
    with session_scope(engine, readonly=True) as session:
        report = scrub(evidence, session=session)
    found = report.missing if damage == "missing" else report.altered
    assert not report.ok and found == (victim.stem,) and report.checked == 8
