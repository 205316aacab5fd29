"""Model registry: ``<root>/<name>/<version>/{model.onnx,manifest.json,golden/}`` plus an
``<root>/<name>/ACTIVE`` file naming the version the station runs.

``ACTIVE`` is replaced atomically (write temp + ``os.replace``), so a station reading it between
frames sees either the old or the new version, never a torn name.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from vinspect.errors import ModelError
from vinspect.files import sha256_file, write_atomically
from vinspect.models.manifest import ModelManifest, model_file, read_manifest

__all__ = ["ModelRegistry", "RegistryEntry"]

ACTIVE_NAME = "ACTIVE"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryEntry:
    """One installed version."""

    name: str
    version: str
    path: Path
    sha256: str
    active: bool


class ModelRegistry:
    """Install, list, activate and resolve bundles under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def install(self, bundle_dir: Path, *, activate: bool = False) -> RegistryEntry:
        """Copy a verified bundle into the registry (refusing to overwrite a version)."""
        manifest = read_manifest(bundle_dir)
        pinned = bundle_dir / model_file(manifest)
        actual = sha256_file(pinned) if pinned.is_file() else "missing"
        if actual != manifest.sha256:
            raise ModelError(f"{bundle_dir}: {pinned.name} sha256 {actual} does not match the manifest")
        dest = self.root / manifest.name / manifest.version
        if dest.exists():
            raise ModelError(f"{dest}: version {manifest.version} of {manifest.name} is already installed")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{manifest.version}.installing")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(bundle_dir, tmp)
        tmp.rename(dest)
        if activate:
            self.activate(manifest.name, manifest.version)
        return self._entry(manifest, dest)

    def activate(self, name: str, version: str) -> None:
        """Point ``ACTIVE`` at an installed version, atomically."""
        if not (self.root / name / version / "manifest.json").is_file():
            raise ModelError(f"{self.root / name / version}: no such installed version")
        pointer = self.root / name / ACTIVE_NAME
        write_atomically(pointer, version + "\n", durable=True)

    def active_version(self, name: str) -> str | None:
        """The version ``ACTIVE`` names, or None when nothing is active."""
        pointer = self.root / name / ACTIVE_NAME
        try:
            return pointer.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def resolve(self, name: str, version: str = "active") -> Path:
        """Path of a version's bundle; ``"active"`` follows the ACTIVE pointer."""
        chosen = self.active_version(name) if version == "active" else version
        if chosen is None:
            raise ModelError(f"{self.root / name}: no active version (run `vinspect models activate`)")
        path = self.root / name / chosen
        if not path.is_dir():
            raise ModelError(f"{path}: model {name} version {chosen} is not installed")
        return path

    def list(self) -> list[RegistryEntry]:
        """Every installed version, by name then version."""
        if not self.root.is_dir():
            return []
        entries = []
        for manifest_path in sorted(self.root.glob(f"*/*/{'manifest.json'}")):
            if manifest_path.parent.name.startswith("."):
                continue
            entries.append(self._entry(read_manifest(manifest_path.parent), manifest_path.parent))
        return entries

    def _entry(self, manifest: ModelManifest, path: Path) -> RegistryEntry:
        return RegistryEntry(
            name=manifest.name,
            version=manifest.version,
            path=path,
            sha256=manifest.sha256,
            active=self.active_version(manifest.name) == manifest.version,
        )
