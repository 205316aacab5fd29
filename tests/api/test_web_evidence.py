"""Evidence images: only by sha256, only referenced files, never outside the store root (S6)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from webseed import Seeded, TestClient

from vinspect.store import session_scope
from vinspect.store.repository import get_ncr

Client = Callable[[str | None], tuple[TestClient, str]]
SECRET = b"outside the evidence root"
PAYLOADS = [
    "../vinspect.db",
    "..%2fvinspect.db",
    "..%252fvinspect.db",
    "%2e%2e/%2e%2e/etc/passwd",
    "/etc/passwd",
    "..\\..\\vinspect.db",
    "....//....//etc/passwd",
    "%00",
    "x%00.png",
    "\u2025/\u2025/etc/passwd",
    "%c0%ae%c0%ae/etc/passwd",
    "..",
    ".",
    "secret.png",
    "a" * 64,
    "A" * 64,
    ("0" * 63) + "/",
    "..%5c..%5cvinspect.db",
    "%2F%2Fetc%2Fpasswd",
    "../../../../../../../../../../etc/shadow",
]


def _evidence(seeded: Seeded) -> list[dict[str, Any]]:
    with session_scope(seeded.store.engine, readonly=True) as session:
        doc = get_ncr(seeded.review[0].ncr_uuid, session=session)
    assert doc is not None
    evidence: list[dict[str, Any]] = doc["evidence"]
    return evidence


def test_referenced_image_is_served_as_png(client_for: Client, seeded: Seeded) -> None:
    client, _ = client_for("operator")
    for item in _evidence(seeded):
        response = client.get(f"/evidence/{item['sha256']}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert hashlib.sha256(response.content).hexdigest() == item["sha256"]


def test_anonymous_cannot_read_images(app: Any, seeded: Seeded) -> None:
    client = TestClient(app, base_url="http://127.0.0.1:8600")
    assert client.get(f"/evidence/{_evidence(seeded)[0]['sha256']}").status_code == 401


@pytest.mark.parametrize("payload", PAYLOADS)
def test_traversal_payloads_never_read_outside_root(
    client_for: Client, seeded: Seeded, tmp_path: Path, payload: str
) -> None:
    (tmp_path / "data" / "secret.png").write_bytes(SECRET)
    client, _ = client_for("quality_engineer")
    response = client.get(f"/evidence/{payload}")
    assert response.status_code in (303, 307, 404, 405, 422), response.status_code  # 303/307: normalised away
    assert SECRET not in response.content
    assert b"SQLite" not in response.content and b"root:" not in response.content


def test_planted_symlink_is_refused(client_for: Client, seeded: Seeded, tmp_path: Path) -> None:
    """A referenced digest whose file was swapped for a symlink out of the root is not followed."""
    item = _evidence(seeded)[0]
    path = seeded.store.evidence.root / item["sha256"][:2] / f"{item['sha256']}.png"
    outside = tmp_path / "outside.png"
    outside.write_bytes(path.read_bytes())  # even identical bytes: a link out of the root is refused
    path.unlink()
    os.symlink(outside, path)
    client, _ = client_for("quality_engineer")
    assert client.get(f"/evidence/{item['sha256']}").status_code == 404


def test_unreferenced_or_altered_file_is_404(client_for: Client, seeded: Seeded) -> None:
    client, _ = client_for("quality_engineer")
    stray = seeded.store.evidence.put(b"\x89PNG not referenced", kind="image")
    assert client.get(f"/evidence/{stray.sha256}").status_code == 404
    item = _evidence(seeded)[1]
    path = seeded.store.evidence.root / item["sha256"][:2] / f"{item['sha256']}.png"
    path.write_bytes(path.read_bytes() + b"tampered")
    assert client.get(f"/evidence/{item['sha256']}").status_code == 404
