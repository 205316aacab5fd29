"""open_source: build the FrameSource a configuration describes (not yet entered).

``genicam`` and ``genicam+replay`` sources come wrapped in a :class:`SupervisedSource`
(reconnect with capped backoff). Folder-based kinds need the ``library`` the composition root
builds from ``vinspect.dataset`` (camera may not import dataset, see folder.py). To add a kind,
add its config to ``SourceConfig`` and a branch here.
"""

from __future__ import annotations

from vinspect.camera.base import FrameSource
from vinspect.camera.config import (
    FolderSourceConfig,
    GenICamSettings,
    GenICamSourceConfig,
    OverlaySourceConfig,
    ReplaySourceConfig,
    SourceConfig,
)
from vinspect.camera.folder import FeedSource, FolderSource, ImageLibrary, Take, load_part_ids, takes_from
from vinspect.camera.genicam import GenICamSource
from vinspect.camera.overlay import OverlaySource
from vinspect.camera.process import LibraryFactory, ProcessSource
from vinspect.camera.process_config import ProcessSourceConfig
from vinspect.camera.replay import ReplaySource
from vinspect.camera.stats import FrameLedger, StateListener
from vinspect.camera.supervisor import SupervisedSource
from vinspect.camera.synthetic import SyntheticSource, SyntheticSourceConfig
from vinspect.errors import ConfigError

__all__ = ["open_source"]


def open_source(
    config: SourceConfig | SyntheticSourceConfig | ProcessSourceConfig,
    *,
    source_id: str,
    library: ImageLibrary | None = None,
    library_factory: LibraryFactory | None = None,
    listeners: tuple[StateListener, ...] = (),
) -> FrameSource:
    """Build the source for ``config``; enter it with ``with`` to start streaming.

    Args:
        config: Any :data:`~vinspect.camera.config.SourceConfig`.
        source_id: Id stamped on every frame and fault.
        library: Image indexing and decoding; required by folder, replay and overlay kinds.
        listeners: Called on every state change of a supervised (camera) source.

    Raises:
        ConfigError: a folder-based kind without ``library``, or an unknown kind.
    """
    if isinstance(config, ProcessSourceConfig):
        return ProcessSource(config, source_id=source_id, library_factory=library_factory, listeners=listeners)
    if isinstance(config, GenICamSourceConfig):
        return _supervised(config, source_id=source_id, listeners=listeners)
    if isinstance(config, SyntheticSourceConfig):
        return SyntheticSource(config, source_id=source_id)
    if library is None:
        raise ConfigError(f"{source_id}: a {config.kind} source needs an image library (vinspect.dataset)")
    if isinstance(config, FolderSourceConfig):
        return FolderSource(config, source_id=source_id, library=library)
    if isinstance(config, ReplaySourceConfig):
        return ReplaySource(config, source_id=source_id, library=library)
    if isinstance(config, OverlaySourceConfig):
        return OverlaySource(_supervised(config, source_id=source_id, listeners=listeners),
                             pixels=_replay_pixels(config, source_id=source_id, library=library))
    raise ConfigError(f"{source_id}: unknown source kind {getattr(config, 'kind', config)!r}")


def _supervised(config: GenICamSettings, *, source_id: str, listeners: tuple[StateListener, ...]) -> SupervisedSource:
    def connect(ledger: FrameLedger) -> FrameSource:
        return GenICamSource(config, source_id=source_id, ledger=ledger)

    return SupervisedSource(connect, source_id=source_id, policy=config.reconnect, listeners=listeners)


def _replay_pixels(config: OverlaySourceConfig, *, source_id: str, library: ImageLibrary) -> FeedSource:
    def load() -> list[Take]:
        part_ids = load_part_ids(config.part_ids_csv) if config.part_ids_csv is not None else None
        return takes_from(library.index(config.replay), root=config.replay, part_ids=part_ids)

    return FeedSource(load, source_id=source_id, read=library.read, origin="genicam+replay", loop=config.loop)
