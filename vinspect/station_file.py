"""StationConfig: the station YAML file, validated, and ``load_station``.

One file describes one station: its id, the verdict deadline, the frame source (any camera
source kind, or ``synthetic``), the model (a bundle folder or a registry name), policy overrides,
the line signal, the record sinks and the queue. Errors name the file, the field path and the
reason. Relative paths resolve against the station file's folder, except sink paths, which
resolve against the data directory (they are run output, not configuration).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, PositiveFloat, PositiveInt, ValidationError, field_validator

from vinspect.camera.base import OverflowPolicy
from vinspect.camera.config import SourceConfig, resolve_paths
from vinspect.errors import ConfigError
from vinspect.pipeline.gating import PolicyOverrides
from vinspect.pipeline.runner import PipelineConfig
from vinspect.strict import Strict

__all__ = [
    "LATER_SETTINGS",
    "CameraOutputSignalConfig",
    "JsonlSinkConfig",
    "LogSignalConfig",
    "ModbusSignalConfig",
    "ModelByName",
    "ModelByPath",
    "MqttSignalConfig",
    "NullSignalConfig",
    "OpcUaConfig",
    "PolicyConfig",
    "ProductConfig",
    "StationConfig",
    "StoreSinkConfig",
    "load_station",
]


class ModelByPath(Strict):
    """A bundle folder (model.onnx + manifest.json + golden/). ``part_number`` picks the golden
    reference of a reference bundle (default: the bundle's only one)."""

    path: Path
    part_number: str | None = None


class ModelByName(Strict):
    """A registry model under ``<data_dir>/models``; ``active`` follows the ACTIVE pointer and
    enables hot swap."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    version: str = "active"
    part_number: str | None = None


class PolicyConfig(Strict):
    """Overrides of the bundle's thresholds, the error verdict and the degradation rule."""

    fail_at: float | None = None
    review_at: float | None = None
    on_error: Literal["fail", "review"] = "fail"
    frr_ceiling: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="re-derive the thresholds from the bundle's validation scores for this false-reject "
        "ceiling (REVIEW between the zero-escape point and FAIL); None keeps the bundle's",
    )
    degraded_after_faults: PositiveInt = 5
    require_golden: bool = True


class _Signal(Strict):
    heartbeat_ms: PositiveInt = 100


class NullSignalConfig(_Signal):
    """No line output (the PLC then rejects every part); YAML ``kind: null`` means this too."""

    kind: Literal["none", "null"]


class LogSignalConfig(_Signal):
    kind: Literal["log"] = "log"


class ModbusSignalConfig(_Signal):
    """The PLC is the Modbus TCP server (line-integration §7); 0-based holding registers."""

    kind: Literal["modbus"]
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    base: int = Field(default=0, ge=0, le=65000)
    timeout_s: PositiveFloat = 0.5
    defect_codes: tuple[str, ...] = ()


class MqttSignalConfig(_Signal):
    """Result messages on ``<topic_prefix>/<station_id>/result`` (informational, never the reject)."""

    kind: Literal["mqtt"]
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = "vinspect/site/line"
    keepalive_s: PositiveInt = 30


class CameraOutputSignalConfig(_Signal):
    """The camera's UserOutput lines: ``accept_output`` pulses high for a PASS only.

    Refused at start-up today: it needs a source whose camera has the SFNC digital outputs
    (UserOutputSelector/UserOutputValue), and no source vinspect ships exposes them.
    """

    kind: Literal["camera_output"]
    accept_output: str = "UserOutput1"
    heartbeat_output: str | None = None
    pulse_ms: PositiveInt = 50


SignalConfig = Annotated[
    NullSignalConfig | LogSignalConfig | ModbusSignalConfig | MqttSignalConfig | CameraOutputSignalConfig,
    Field(discriminator="kind"),
]


class JsonlSinkConfig(Strict):
    """One JSON line per inspection, appended and flushed (``path`` relative to the data dir)."""

    kind: Literal["jsonl"]
    path: Path = Path("inspections.jsonl")
    fsync: bool = False
    critical: bool = True


class ProductConfig(Strict):
    """What the NCRs need that the station cannot see in the image."""

    part_number: str
    part_revision: str
    part_name: str
    requirement_ref: str
    site_id: str
    line_id: str


class StoreSinkConfig(Strict):
    """The NCR/inspection store (built by the CLI from ``vinspect.store``)."""

    kind: Literal["store"]
    product: ProductConfig
    ncr_on_review: bool = True
    critical: bool = True
    # Keep the image and heatmap of PASS parts drawn into the blind audit sample; set it to the
    # reviewer app's --pass-sample-rate (both default to 0.01) so the sampled parts show pictures.
    pass_sample_rate: float = Field(default=0.01, ge=0.0, le=1.0)


class ShadowSinkConfig(Strict):
    """A candidate model judging every part beside the active one, never signalling
    (:mod:`vinspect.pipeline.shadow`); its statistics and disagreements go to the store when the
    station has a store sink (every reviewer app of the plant sees them), else to
    ``<data_dir>/shadow/<name>@<version>/``."""

    kind: Literal["shadow"]
    model: ModelByPath | ModelByName
    queue_size: PositiveInt = 2
    critical: Literal[False] = False


SinkConfig = Annotated[JsonlSinkConfig | StoreSinkConfig | ShadowSinkConfig, Field(discriminator="kind")]


def _default_sinks() -> list[SinkConfig]:
    return [JsonlSinkConfig(kind="jsonl")]


class OpcUaConfig(Strict):
    """The station's OPC UA server (OPC 40100-1 concepts; needs the ``plant`` extra: asyncua)."""

    host: str = "127.0.0.1"
    port: int = Field(default=4840, ge=1, le=65535)
    username: str | None = Field(default=None, min_length=1, max_length=64)
    password_env: str = Field(
        default="VINSPECT_OPCUA_PASSWORD",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="environment variable holding the password (never in the file)",
    )
    allow_anonymous: bool = False
    certificate: Path | None = Field(
        default=None,
        description="server certificate (DER or PEM): offers "
        "Basic256Sha256 Sign and SignAndEncrypt, and no unsecured endpoint",
    )
    private_key: Path | None = None
    allow_unsecured: bool = Field(default=False, description="with a certificate, also offer security None")


LATER_SETTINGS = ("record_queue_mb", "record_stall_s")
"""Station settings added after configurations were first approved: hashed only when set to
something other than their default (:meth:`StationConfig.config_text`)."""


class StationConfig(Strict):
    """A whole station file (see ``deploy/config/station.example.yaml``)."""

    station_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    deadline_ms: PositiveFloat = 150.0
    source: SourceConfig
    model: ModelByPath | ModelByName
    policy: PolicyConfig = PolicyConfig()
    signal: SignalConfig = LogSignalConfig()
    sinks: list[SinkConfig] = Field(default_factory=_default_sinks)
    queue_size: PositiveInt = 8
    overflow: OverflowPolicy | None = Field(default=None, description="default: the source's own policy")
    read_timeout_ms: PositiveInt = 200
    record_queue_mb: float = Field(
        default=512.0,
        gt=0,
        allow_inf_nan=False,
        description="MiB of frames the queued records may hold; over it a triggered line drops the record "
        "(counted record_dropped, alarmed) and a lossless source waits (runner docstring)",
    )
    record_stall_s: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="a lossless source waits at most this long for a record thread that makes no progress",
    )
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    ort_threads: PositiveInt = Field(default=1, description="ONNX Runtime intra-op threads per model session")
    ort_allow_spinning: bool = Field(
        default=False,
        description="let idle ONNX Runtime threads busy-wait; off by default: with two sessions "
        "(active + hot-swap candidate) spinning threads steal the other core (README, ONNX Runtime sessions)",
    )
    opcua: OpcUaConfig | None = None

    @field_validator("signal", mode="before")
    @classmethod
    def _yaml_null_kind(cls, value: Any) -> Any:
        if isinstance(value, dict) and "kind" in value and value["kind"] is None:
            return value | {"kind": "null"}
        return value

    @field_validator("sinks", mode="before")
    @classmethod
    def _bare_sink_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"kind": v} if isinstance(v, str) else v for v in value]
        return value

    def config_text(self) -> str:
        """The effective configuration as canonical JSON: every field with its default filled in, paths
        as resolved by :func:`load_station`, keys sorted, no whitespace (what :meth:`config_sha256` hashes).

        Settings added after configurations were first approved (:data:`LATER_SETTINGS`) appear only
        when they differ from their default, so a configuration approved before they existed keeps its
        hash (and its approval) while it leaves them alone.

        The station file holds no secret: the database URL comes from the settings and the OPC UA
        password from the environment variable ``opcua.password_env`` names (only that name is here)."""
        fields = type(self).model_fields
        unchanged = {name for name in LATER_SETTINGS if getattr(self, name) == fields[name].default}
        return json.dumps(
            self.model_dump(mode="json", exclude=unchanged),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )

    def config_sha256(self) -> str:
        """SHA-256 of :meth:`config_text`: the configuration version every inspection records."""
        return hashlib.sha256(self.config_text().encode("utf-8")).hexdigest()

    def pipeline_config(self, *, max_parts: int | None = None) -> PipelineConfig:
        """The runner's settings for this station."""
        p = self.policy
        return PipelineConfig(
            station_id=self.station_id,
            deadline_ms=self.deadline_ms,
            queue_size=self.queue_size,
            overflow=self.overflow or self.source.overflow,
            read_timeout_s=self.read_timeout_ms / 1e3,
            heartbeat_ms=self.signal.heartbeat_ms,
            degraded_after_faults=p.degraded_after_faults,
            max_parts=max_parts,
            critical_sinks=frozenset(s.kind for s in self.sinks if s.critical),
            overrides=PolicyOverrides(
                fail_at=p.fail_at, review_at=p.review_at, on_error=p.on_error.upper(), frr_ceiling=p.frr_ceiling
            ),
            require_golden=p.require_golden,
            ort_threads=self.ort_threads,
            ort_allow_spinning=self.ort_allow_spinning,
            part_number=self.model.part_number,
            record_queue_mb=self.record_queue_mb,
            record_stall_s=self.record_stall_s,
            config_sha256=self.config_sha256(),
        )


def _non_finite(value: object, where: str = "") -> str | None:
    """The field path of the first infinite or NaN number in a dumped configuration, if any."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "<root>"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())


def load_station(path: Path) -> StationConfig:
    """Read and validate a station file.

    Raises:
        ConfigError: naming the file, the field path (``source.fps``) and the reason.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read station file ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: <root>: a station file is a mapping (station_id, source, model, ...)")
    try:
        config = StationConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_problems(exc)}") from exc
    infinite = _non_finite(config.model_dump(mode="json"))
    if infinite is not None:  # .inf / .nan: no meaningful setting, and the configuration could not be hashed
        raise ConfigError(f"{path}: {infinite}: must be a finite number, not .inf or .nan")
    update: dict[str, object] = {"source": resolve_paths(config.source, base=path.parent)}
    if isinstance(config.model, ModelByPath) and not config.model.path.is_absolute():
        update["model"] = ModelByPath(path=path.parent / config.model.path)
    if config.opcua is not None and (config.opcua.certificate or config.opcua.private_key):
        opc = config.opcua
        update["opcua"] = opc.model_copy(
            update={
                "certificate": path.parent / opc.certificate if opc.certificate else None,
                "private_key": path.parent / opc.private_key if opc.private_key else None,
            }
        )
    return config.model_copy(update=update)
