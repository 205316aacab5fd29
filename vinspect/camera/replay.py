"""ReplaySource: a recorded capture run (or any dataset folder) streamed again, marked ``replay``.

A folder written by ``vinspect capture`` holds a manifest (:data:`MANIFEST_NAME`, written by
``capture.py``): images are replayed in recorded order with their recorded part ids, and with
``speed`` set, at the recorded inter-frame timing divided by ``speed``. A folder without a
manifest is indexed like a folder source. ``part_ids_csv`` overrides part ids in both cases.
Class folders give the labels.
"""

from __future__ import annotations

import csv
import logging
from datetime import datetime
from pathlib import Path

from vinspect.camera.capture import MANIFEST_NAME
from vinspect.camera.clock import SYSTEM_CLOCK, Clock
from vinspect.camera.config import ReplaySourceConfig
from vinspect.camera.folder import FeedSource, ImageReader, Take, index_folder, load_part_ids, takes_from
from vinspect.dataset import read_image
from vinspect.errors import ConfigError

__all__ = ["ReplaySource", "read_manifest"]

logger = logging.getLogger(__name__)


def read_manifest(root: Path) -> list[Take]:
    """Takes from ``root/capture.csv`` in recorded order, timed from the first capture.

    Raises:
        ConfigError: unreadable manifest, missing columns or bad timestamps (with line number).
    """
    path = root / MANIFEST_NAME
    takes: list[Take] = []
    first: datetime | None = None
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not {"file", "part_id", "captured_at"} <= set(reader.fieldnames or ()):
                raise ConfigError(f"{path}: expected columns file,part_id,captured_at; found {reader.fieldnames}")
            for row in reader:
                try:
                    at = datetime.fromisoformat(row["captured_at"])
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{path}:{reader.line_num}: bad captured_at {row['captured_at']!r}") from exc
                first = at if first is None else first
                rel = Path(row["file"])
                if not (root / rel).is_file():
                    logger.warning("%s:%d: %s is missing; skipped", path, reader.line_num, rel)
                    continue
                label = rel.parts[0] if len(rel.parts) > 1 else None
                takes.append(
                    Take(
                        path=root / rel,
                        part_id=row["part_id"] or rel.stem,
                        label=label,
                        at_s=(at - first).total_seconds(),
                    )
                )
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read capture manifest ({exc.strerror or exc})") from exc
    return takes


def _override(takes: list[Take], *, root: Path, part_ids: dict[str, str]) -> list[Take]:
    out = []
    for take in takes:
        rel = take.path.relative_to(root).as_posix()
        part_id = part_ids.get(rel, part_ids.get(take.path.name))
        if part_id is None:
            raise ConfigError(f"{root}: {rel} has no part_id in the CSV")
        out.append(Take(path=take.path, part_id=part_id, label=take.label, at_s=take.at_s))
    return out


class ReplaySource(FeedSource):
    """A :class:`ReplaySourceConfig` run, decoded by ``read`` (frames marked ``replay``)."""

    def __init__(
        self, config: ReplaySourceConfig, *, source_id: str, read: ImageReader = read_image, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        root = config.path

        def load() -> list[Take]:
            part_ids = load_part_ids(config.part_ids_csv) if config.part_ids_csv is not None else None
            if (root / MANIFEST_NAME).is_file():
                takes = read_manifest(root)
                return takes if part_ids is None else _override(takes, root=root, part_ids=part_ids)
            if config.speed is not None:
                raise ConfigError(f"{root}: speed needs the {MANIFEST_NAME} a capture run writes")
            return takes_from(index_folder(root), root=root, part_ids=part_ids)

        super().__init__(
            load,
            source_id=source_id,
            read=read,
            origin="replay",
            interval_s=None if config.fps is None else 1.0 / config.fps,
            speed=config.speed,
            loop=config.loop,
            clock=clock,
        )
