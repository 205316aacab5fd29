"""Issue 16: the links a signed anchor does not cover yet (written after the anchor's last rewrite,
e.g. by a writer killed within its 0.1 s anchoring delay) are named by ``audit verify``."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_store_cli import run
from test_store_keyed_audit import _write

from vinspect.store.audit_key import ANCHOR_FILE, attach, open_keyring
from vinspect.store.db import make_engine
from vinspect.store.evidence import EvidenceStore
from vinspect.store.migrations import upgrade


def test_audit_verify_names_the_links_after_the_signed_anchor(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "vinspect-data"
    data.mkdir()
    url = f"sqlite:///{data / 'vinspect.db'}"
    evidence = EvidenceStore(data / "evidence")
    engine = make_engine(url)
    upgrade(engine)
    attach(engine, open_keyring(data), anchor_path=data / ANCHOR_FILE)
    _write(engine, evidence, range(0, 2))
    engine.dispose()
    code, out = run(capsys, "audit", "verify", "--data-dir", str(data))
    assert code == 0 and "not covered by the signed anchor" not in out, out
    killed = make_engine(url)  # signs its links but never got to rewrite the anchor (as if killed)
    attach(killed, open_keyring(data), anchor_path=None)
    _write(killed, evidence, range(2, 4))
    killed.dispose()
    code, out = run(capsys, "audit", "verify", "--data-dir", str(data))
    assert code == 0 and out.endswith("OK\n"), out
    line = next(x for x in out.splitlines() if "not covered by the signed anchor" in x)
    assert int(line.split()[0]) >= 2 and "newer link(s)" in line, line  # at least the NCR and the PASS batch
