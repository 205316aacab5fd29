"""Every source configuration, discriminated on ``kind``: the one source union, and its loader.

Kinds: ``genicam`` (a GenTL camera through harvesters), ``folder`` (a dataset folder),
``replay`` (a recorded capture run, or any dataset folder, marked as replayed),
``genicam+replay`` (real GenTL acquisition timing and frame ids, replayed pixels), ``synthetic``
(generated demo parts) and ``process`` (any of the others hosted in a supervised child process).
:data:`InnerSourceConfig` is every kind but ``process`` (a process does not host another);
:data:`SourceConfig` adds it. Every model is a :class:`~vinspect.strict.Strict` (unknown keys
refused). To add a kind, define its config with a ``kind`` literal, add it to
:data:`InnerSourceConfig`, and give ``factory.open_source`` a matching branch.

Paths: :func:`resolve_paths` (used by :func:`load_source_config` and the station loader, each
parsing the file once) resolves relative paths against the station file's folder.
A producer given as a bare file name (``viky.cti``) is a name, searched on
``GENICAM_GENTL64_PATH`` and then beside the genicam package when the source opens; an empty
``producers`` list means genicam's bundled simulated producer ``viky.cti``.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    StrictBool,
    StrictFloat,
    StrictInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from vinspect.backoff import Backoff
from vinspect.camera.base import OverflowPolicy
from vinspect.dataset.synth import DEFECT_KINDS
from vinspect.errors import ConfigError
from vinspect.strict import Strict

__all__ = [
    "DeviceSelector",
    "FeatureValue",
    "FolderSourceConfig",
    "GenICamSettings",
    "GenICamSourceConfig",
    "InnerSourceConfig",
    "OutputLineConfig",
    "OverlaySourceConfig",
    "ProcessSourceConfig",
    "ReconnectConfig",
    "ReplaySourceConfig",
    "RestartBackoff",
    "SourceConfig",
    "SyntheticSourceConfig",
    "find_producers",
    "load_source_config",
    "parse_source_config",
    "resolve_paths",
]

FeatureValue = StrictBool | StrictInt | StrictFloat | str
"""A GenICam feature value: bool (IBoolean), int (IInteger), float (IFloat), str (IEnumeration)."""


class DeviceSelector(Strict):
    """Which device of the producers to open: exactly one of the three keys."""

    serial_number: str | None = None
    user_defined_name: str | None = None
    index: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [v for v in (self.serial_number, self.user_defined_name, self.index) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of serial_number, user_defined_name, index")
        return self

    def describe(self) -> str:
        """Human-readable form for messages, e.g. ``serial_number='0'``."""
        for key in ("serial_number", "user_defined_name", "index"):
            value = getattr(self, key)
            if value is not None:
                return f"{key}={value!r}"
        return "?"  # unreachable: the validator demands one key


class ReconnectConfig(Strict):
    """Capped exponential backoff between reconnect attempts, and the silence limit.

    ``silence_limit_ms``: no frame for this long while streaming counts as device loss (pitfall
    13: producers rarely report an unplug). None disables it, for triggered lines that may idle.
    """

    initial_backoff_ms: PositiveInt = 100
    max_backoff_ms: PositiveInt = 5_000
    multiplier: Annotated[float, Field(ge=1.0)] = 2.0
    silence_limit_ms: PositiveInt | None = 2_000

    @model_validator(mode="after")
    def _cap_above_start(self) -> Self:
        if self.max_backoff_ms < self.initial_backoff_ms:
            raise ValueError("max_backoff_ms must be >= initial_backoff_ms")
        return self

    def schedule(self) -> Backoff:
        """A fresh delay schedule for these settings (in seconds)."""
        return Backoff(
            initial_s=self.initial_backoff_ms / 1e3, max_s=self.max_backoff_ms / 1e3, multiplier=self.multiplier
        )


class OutputLineConfig(Strict):
    """One digital I/O line: LineSelector, then LineMode, LineSource and LineInverter (SFNC)."""

    line: str = Field(min_length=1, description="LineSelector entry, e.g. Line1")
    source: str | None = Field(default=None, description="LineSource, e.g. UserOutput1, Timer1Active")
    mode: Literal["Output", "Input"] = "Output"
    inverter: bool | None = None
    required: bool = True


class GenICamSettings(Strict):
    """Camera settings shared by ``genicam`` and ``genicam+replay`` sources."""

    producers: list[Path] = Field(default_factory=list)
    device: DeviceSelector = Field(default_factory=lambda: DeviceSelector(index=0))
    features: dict[str, FeatureValue] = Field(default_factory=dict)
    optional_features: dict[str, FeatureValue] = Field(default_factory=dict)
    output_lines: list[OutputLineConfig] = Field(default_factory=list)
    fetch_timeout_ms: Annotated[int, Field(gt=0, le=60_000)] = 200
    num_buffers: Annotated[int, Field(ge=2, le=64)] = 4
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)
    overflow: OverflowPolicy = OverflowPolicy.REJECT

    @model_validator(mode="before")
    @classmethod
    def _single_producer(cls, data: Any) -> Any:
        # The station example spells one producer as `producer: viky.cti`; accept it as a list.
        if isinstance(data, dict) and "producer" in data:
            if "producers" in data:
                raise ValueError("give either producer or producers, not both")
            data = {k: v for k, v in data.items() if k != "producer"} | {"producers": [data["producer"]]}
        return data

    @model_validator(mode="after")
    def _features_disjoint(self) -> Self:
        both = sorted(set(self.features) & set(self.optional_features))
        if both:
            raise ValueError(f"features listed as both required and optional: {', '.join(both)}")
        return self


class GenICamSourceConfig(GenICamSettings):
    """A GenTL camera through harvesters.

    In process, the acquisition thread's Python code competes with the verdict thread for the
    interpreter lock: on the demo station (``genicam+replay``, 20 parts/s, 2 cores) frame -> signal
    p99 was 51.4 ms in process against 18.8 ms inside ``{kind: process, inner: ...}`` (issue 21).
    Station files wrap it in a :class:`ProcessSourceConfig`; the
    bare kind stays for tests and debugging.
    """

    kind: Literal["genicam"] = "genicam"


class FolderSourceConfig(Strict):
    """A dataset folder (any layout vinspect.dataset reads), streamed as frames.

    ``fps`` None streams as fast as frames are read. ``part_ids_csv`` has columns ``file,part_id``
    (``file`` relative to ``path``, or a bare file name); without it the part id is the file stem.
    """

    kind: Literal["folder"] = "folder"
    path: Path
    fps: PositiveFloat | None = None
    loop: bool = False
    part_ids_csv: Path | None = None
    overflow: OverflowPolicy = OverflowPolicy.BLOCK


class ReplaySourceConfig(Strict):
    """A recorded run (a ``vinspect capture`` folder with its ``capture.csv``), or any dataset.

    Frames are marked ``replay``. ``speed`` replays the recorded inter-frame timing faster (>1)
    or slower (<1); it needs the capture manifest and excludes ``fps``.
    """

    kind: Literal["replay"] = "replay"
    path: Path
    fps: PositiveFloat | None = None
    speed: PositiveFloat | None = None
    loop: bool = False
    part_ids_csv: Path | None = None
    overflow: OverflowPolicy = OverflowPolicy.BLOCK

    @model_validator(mode="after")
    def _one_pace(self) -> Self:
        if self.fps is not None and self.speed is not None:
            raise ValueError("give fps or speed, not both")
        return self


class OverlaySourceConfig(GenICamSettings):
    """GenTL acquisition timing and frame ids from a (simulated) device, pixels from ``replay``.

    Every frame is marked ``genicam+replay`` so it is never taken for camera pixels.

    In process, the acquisition thread's Python code competes with the verdict thread for the
    interpreter lock: on the demo station (``genicam+replay``, 20 parts/s, 2 cores) frame -> signal
    p99 was 51.4 ms in process against 18.8 ms inside ``{kind: process, inner: ...}`` (issue 21).
    Station files wrap it in a :class:`ProcessSourceConfig`; the
    bare kind stays for tests and debugging.
    """

    kind: Literal["genicam+replay"] = "genicam+replay"
    replay: Path
    loop: bool = True
    part_ids_csv: Path | None = None
    overflow: OverflowPolicy = OverflowPolicy.BLOCK


class SyntheticSourceConfig(Strict):
    """Generated parts; ``count`` None streams forever, ``fps`` None as fast as they are read."""

    kind: Literal["synthetic"] = "synthetic"
    fps: PositiveFloat | None = None
    count: PositiveInt | None = None
    defect_rate: float = Field(default=0.2, ge=0.0, le=1.0)
    kinds: tuple[str, ...] = DEFECT_KINDS
    size_px: int = Field(default=128, ge=32, le=2048)
    seed: int = 0
    distinct_parts: PositiveInt = 64
    incomplete_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    overflow: OverflowPolicy = OverflowPolicy.BLOCK

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(DEFECT_KINDS))
        if unknown or not value:
            raise ValueError(f"kinds must be a non-empty subset of {', '.join(DEFECT_KINDS)}; unknown: {unknown}")
        return value


InnerSourceConfig = Annotated[
    GenICamSourceConfig | FolderSourceConfig | ReplaySourceConfig | OverlaySourceConfig | SyntheticSourceConfig,
    Field(discriminator="kind"),
]
"""Every kind a process can host; extend by adding a member to this union."""


class RestartBackoff(Strict):
    """Delay before respawning the child: ``initial_s``, times ``multiplier`` for every respawn
    that does not complete a read, capped at ``max_s``; back to ``initial_s`` after one that does."""

    initial_s: PositiveFloat = 0.1
    max_s: PositiveFloat = 5.0
    multiplier: Annotated[float, Field(ge=1.0)] = 2.0

    @model_validator(mode="after")
    def _cap_above_start(self) -> Self:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be >= initial_s")
        return self

    def schedule(self) -> Backoff:
        """A fresh delay schedule for these settings."""
        return Backoff(initial_s=self.initial_s, max_s=self.max_s, multiplier=self.multiplier)


class ProcessSourceConfig(Strict):
    """Run ``inner`` in a child process behind an outer watchdog (see :mod:`vinspect.camera.process`).

    ``watchdog_s``: longest a read waits for the child (a read also never outlasts its own
    ``timeout_s``). ``restart_after_s``: silence of a child with a read outstanding that gets it
    killed and respawned; must exceed ``watchdog_s``. ``start_timeout_s``: bound on spawn,
    imports and opening the inner source. ``stop_timeout_s``: bound on a clean stop at close
    before the child is killed. ``disconnected_restart_s``: None keeps a child whose source
    reports only ``disconnected`` faults (in-process recovery failing, line-integration.md
    pitfall 13). ``shm_slot_mb``: size of the shared-memory slot frames are handed over through
    (the default holds a 12 MP 16-bit frame); a larger frame, or 0, goes through the pipe instead.
    """

    kind: Literal["process"] = "process"
    inner: InnerSourceConfig
    watchdog_s: Annotated[float, Field(gt=0.0, le=10.0)] = 1.0
    restart_after_s: Annotated[float, Field(gt=0.0, le=60.0)] = 2.0
    start_timeout_s: Annotated[float, Field(gt=0.0, le=300.0)] = 30.0
    stop_timeout_s: Annotated[float, Field(gt=0.0, le=60.0)] = 3.0
    disconnected_restart_s: Annotated[float, Field(gt=0.0, le=600.0)] | None = 5.0
    backoff: RestartBackoff = Field(default_factory=RestartBackoff)
    shm_slot_mb: Annotated[int, Field(ge=0, le=1024)] = 32

    @model_validator(mode="after")
    def _restart_after_watchdog(self) -> Self:
        if self.restart_after_s <= self.watchdog_s:
            raise ValueError("restart_after_s must be greater than watchdog_s")
        return self

    @property
    def overflow(self) -> OverflowPolicy:
        """The hosted source's queue policy."""
        return self.inner.overflow


SourceConfig = Annotated[
    GenICamSourceConfig
    | FolderSourceConfig
    | ReplaySourceConfig
    | OverlaySourceConfig
    | SyntheticSourceConfig
    | ProcessSourceConfig,
    Field(discriminator="kind"),
]
"""Any source configuration: a station file's ``source:`` mapping."""


@functools.cache
def _adapter() -> TypeAdapter[SourceConfig]:
    return TypeAdapter(SourceConfig)


def parse_source_config(data: object, *, origin: str = "<config>") -> SourceConfig:
    """Validate a ``source:`` mapping.

    Raises:
        ConfigError: naming ``origin``, the field path (``source.features.Width``) and the reason.
    """
    try:
        return _adapter().validate_python(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_describe(exc)}") from exc


_UNION_LABELS = frozenset({"bool", "int", "float", "str"})


@functools.cache
def _kinds() -> frozenset[str]:
    members = typing.get_args(typing.get_args(SourceConfig)[0])
    return frozenset(str(m.model_fields["kind"].default) for m in members)


def _describe(exc: ValidationError) -> str:
    """One ``source.<field path>: reason`` per field, without pydantic's union-branch labels."""
    found: dict[str, list[str]] = {}
    for err in exc.errors():
        loc = _without_tags([str(p) for p in err["loc"]])
        label = loc.pop() if loc and loc[-1] in _UNION_LABELS else None
        found.setdefault(".".join(["source", *loc]), []).append(f"<{label}>" if label else err["msg"])
    return "; ".join(f"{path}: {_merge(msgs)}" for path, msgs in found.items())


def _without_tags(loc: list[str]) -> list[str]:
    """The field path without the discriminated-union tags (at the top, and after ``inner``)."""
    out: list[str] = []
    for i, part in enumerate(loc):
        if part in _kinds() and (i == 0 or loc[i - 1] == "inner"):
            continue
        out.append(part)
    return out


def _merge(msgs: list[str]) -> str:
    types = [m.strip("<>") for m in msgs if m.startswith("<")]
    other = [m for m in msgs if not m.startswith("<")]
    return ", ".join(dict.fromkeys(other + ([f"expected one of {'/'.join(types)}"] if types else [])))


def load_source_config(path: Path) -> SourceConfig:
    """Read the ``source:`` key of a station YAML file, paths resolved (:func:`resolve_paths`).

    Raises:
        ConfigError: the file is missing, not YAML, has no ``source:`` mapping, or the mapping is
            invalid; the message names the file, the field path and the reason.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read station file ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(document, dict) or "source" not in document:
        raise ConfigError(f"{path}: source: missing (the station file needs a `source:` mapping)")
    config = parse_source_config(document["source"], origin=str(path))
    return resolve_paths(config, base=path.parent)


_C = typing.TypeVar("_C", bound=Strict)


def resolve_paths(config: _C, *, base: Path) -> _C:
    """``config`` with its relative paths resolved against ``base`` (the station file's folder),
    through a hosted ``inner`` too; bare producer names (``viky.cti``) stay names."""

    def rel(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    def opt(p: Path | None) -> Path | None:
        return None if p is None else rel(p)

    update: dict[str, object] = {}
    if isinstance(config, ProcessSourceConfig):
        update = {"inner": resolve_paths(config.inner, base=base)}
    elif isinstance(config, GenICamSettings):
        update = {"producers": [p if len(p.parts) == 1 else rel(p) for p in config.producers]}
        if isinstance(config, OverlaySourceConfig):
            update |= {"replay": rel(config.replay), "part_ids_csv": opt(config.part_ids_csv)}
    elif isinstance(config, FolderSourceConfig | ReplaySourceConfig):
        update = {"path": rel(config.path), "part_ids_csv": opt(config.part_ids_csv)}
    return config.model_copy(update=update) if update else config


def find_producers(producers: Sequence[Path], *, search_dirs: Sequence[Path], default: Path) -> tuple[Path, ...]:
    """Resolve producer entries: a bare name is looked up in ``search_dirs`` in order, a path must
    exist; no entries means ``(default,)``.

    Raises:
        ConfigError: a producer that cannot be found (naming where it was looked for).
    """
    if not producers:
        return (default,)
    resolved = []
    for producer in producers:
        candidates = [d / producer for d in search_dirs] if len(producer.parts) == 1 else [producer]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            where = ", ".join(str(c.parent) for c in candidates)
            raise ConfigError(f"GenTL producer {producer} not found (looked in {where})")
        resolved.append(found.resolve())
    return tuple(resolved)
