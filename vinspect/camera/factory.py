"""open_source: build the FrameSource a configuration describes (not yet entered).

``genicam`` and ``genicam+replay`` sources come wrapped in a :class:`SupervisedSource`
(reconnect with capped backoff); ``process`` hosts its ``inner`` source in a child process that
receives this function, bound to the same ``read``, as its builder. Folder-based kinds index
through ``vinspect.dataset`` and decode with ``read`` (``read_image`` unless a test or benchmark
passes its own). To add a kind, add its config to ``InnerSourceConfig`` and a branch here.
"""

from __future__ import annotations

import functools

from vinspect.camera.base import FrameSource
from vinspect.camera.config import (
    FolderSourceConfig,
    GenICamSettings,
    GenICamSourceConfig,
    OverlaySourceConfig,
    ProcessSourceConfig,
    ReplaySourceConfig,
    SourceConfig,
    SyntheticSourceConfig,
)
from vinspect.camera.folder import FeedSource, FolderSource, ImageReader, Take, index_folder, load_part_ids, takes_from
from vinspect.camera.genicam import GenICamSource
from vinspect.camera.overlay import OverlaySource
from vinspect.camera.process import ProcessSource
from vinspect.camera.replay import ReplaySource
from vinspect.camera.stats import FrameLedger, StateListener
from vinspect.camera.supervisor import SupervisedSource
from vinspect.camera.synthetic import SyntheticSource
from vinspect.dataset import read_image
from vinspect.errors import ConfigError

__all__ = ["open_source"]


def open_source(
    config: SourceConfig, *, source_id: str, read: ImageReader = read_image, listeners: tuple[StateListener, ...] = ()
) -> FrameSource:
    """Build the source for ``config``; enter it with ``with`` to start streaming.

    Args:
        config: Any :data:`~vinspect.camera.config.SourceConfig`.
        source_id: Id stamped on every frame and fault.
        read: Decodes an image file for folder, replay and overlay kinds (also in a process's
            child, so a module-level function there).
        listeners: Called on every state change of a supervised (camera) or process source.

    Raises:
        ConfigError: an unknown kind.
    """
    if isinstance(config, ProcessSourceConfig):
        return ProcessSource(
            config, source_id=source_id, build=functools.partial(open_source, read=read), listeners=listeners
        )
    if isinstance(config, GenICamSourceConfig):
        return _supervised(config, source_id=source_id, listeners=listeners)
    if isinstance(config, SyntheticSourceConfig):
        return SyntheticSource(config, source_id=source_id)
    if isinstance(config, FolderSourceConfig):
        return FolderSource(config, source_id=source_id, read=read)
    if isinstance(config, ReplaySourceConfig):
        return ReplaySource(config, source_id=source_id, read=read)
    if isinstance(config, OverlaySourceConfig):
        return OverlaySource(
            _supervised(config, source_id=source_id, listeners=listeners),
            pixels=_replay_pixels(config, source_id=source_id, read=read),
        )
    raise ConfigError(f"{source_id}: unknown source kind {getattr(config, 'kind', config)!r}")


def _supervised(config: GenICamSettings, *, source_id: str, listeners: tuple[StateListener, ...]) -> SupervisedSource:
    def connect(ledger: FrameLedger) -> FrameSource:
        return GenICamSource(config, source_id=source_id, ledger=ledger)

    return SupervisedSource(connect, source_id=source_id, policy=config.reconnect, listeners=listeners)


def _replay_pixels(config: OverlaySourceConfig, *, source_id: str, read: ImageReader) -> FeedSource:
    def load() -> list[Take]:
        part_ids = load_part_ids(config.part_ids_csv) if config.part_ids_csv is not None else None
        return takes_from(index_folder(config.replay), root=config.replay, part_ids=part_ids)

    return FeedSource(load, source_id=source_id, read=read, origin="genicam+replay", loop=config.loop)
