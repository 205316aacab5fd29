"""A bundle folder as one archive (and back): how a model travels to stations through the store.

The archive is an uncompressed tar (ONNX weights do not compress much) written deterministically:
files in sorted order, regular files and folders only, owner, group and time zeroed, so the
same bundle always gives the same bytes and the same SHA-256. Unpacking accepts only plain files
and folders inside the target (tarfile's ``data`` filter: no absolute paths, no ``..``, no links
out, no device files).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from vinspect.errors import ModelError

__all__ = ["archive_sha256", "pack_bundle", "unpack_bundle"]


def archive_sha256(data: bytes) -> str:
    """The SHA-256 (hex) of archive bytes."""
    return hashlib.sha256(data).hexdigest()


def _info(name: str, *, size: int = 0, folder: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = (tarfile.DIRTYPE, 0o755) if folder else (tarfile.REGTYPE, 0o644)
    info.size, info.mtime, info.uid, info.gid, info.uname, info.gname = size, 0, 0, 0, "", ""
    return info


def pack_bundle(bundle_dir: Path) -> bytes:
    """The bundle folder's files as deterministic tar bytes.

    Raises:
        ModelError: the folder is missing, has no manifest.json, or holds a link or special file.
    """
    if not (bundle_dir / "manifest.json").is_file():
        raise ModelError(f"{bundle_dir}: not a bundle folder (no manifest.json)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(bundle_dir.rglob("*")):
            rel = path.relative_to(bundle_dir).as_posix()
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise ModelError(f"{path}: a bundle holds plain files and folders only")
            if path.is_dir():
                tar.addfile(_info(rel, folder=True))
                continue
            data = path.read_bytes()
            tar.addfile(_info(rel, size=len(data)), io.BytesIO(data))
    return buffer.getvalue()


def unpack_bundle(data: bytes, dest: Path) -> Path:
    """Unpack archive bytes into ``dest`` (created; must not exist); returns ``dest``.

    Raises:
        ModelError: not a tar archive, or a member that is not a plain file or folder inside ``dest``.
    """
    dest.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar.getmembers():
                if not (member.isfile() or member.isdir()):
                    raise ModelError(f"bundle archive member {member.name!r} is not a plain file or folder")
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ModelError(f"bundle archive cannot be unpacked: {exc}") from exc
    return dest
