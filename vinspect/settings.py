"""Process settings (environment ``VINSPECT_*``) and logging setup.

Built once by the CLI and passed down; no module reads the environment at import time.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vinspect.errors import ConfigError

__all__ = ["Settings", "configure_logging", "load_settings"]


def _names(value: object) -> object:
    """A comma-separated environment value ("10.0.0.5, 10.0.0.6") as a list; lists pass through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


Names = Annotated[list[str], NoDecode, BeforeValidator(_names)]
DISPOSITION_CODES = ("USE_AS_IS", "REWORK", "REPAIR", "SCRAP", "RETURN_TO_SUPPLIER", "REGRADE")


class Settings(BaseSettings):
    """Where the station keeps its data and how its processes present themselves."""

    model_config = SettingsConfigDict(env_prefix="VINSPECT_", env_file=".env", extra="forbid")

    data_dir: Path = Path("vinspect-data")
    database_url: str | None = Field(default=None, description="default: SQLite in data_dir")
    station_file: Path | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8600, ge=1, le=65535)
    api_allow_remote: bool = False
    api_trusted_proxies: Names = Field(
        default_factory=list,
        description=(
            "addresses (or CIDR networks) of reverse proxies whose X-Forwarded-For/-Proto are believed; "
            "empty: forwarding headers are ignored"
        ),
    )
    api_trusted_hosts: Names = Field(
        default_factory=list,
        description=("Host header values served besides localhost/127.0.0.1/::1 and api_host (DNS-rebinding check)"),
    )
    api_secure_cookies: bool | None = Field(
        default=None,
        description=("Secure cookie + HSTS; default: on when api_allow_remote (TLS terminates at the proxy)"),
    )
    two_person_dispositions: Names = Field(
        default_factory=lambda: ["USE_AS_IS", "REPAIR", "REGRADE"],
        description="disposition codes whose signer must differ from the signer of the review they rest on",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if not self.api_allow_remote and not _is_loopback(self.api_host):
            raise ValueError(
                f"api_host {self.api_host!r} is not a loopback address; put a TLS proxy in front and "
                "set VINSPECT_API_ALLOW_REMOTE=true to bind it deliberately"
            )
        unknown = sorted(set(self.two_person_dispositions) - set(DISPOSITION_CODES))
        if unknown:
            raise ValueError(f"two_person_dispositions: unknown codes {unknown}; use {list(DISPOSITION_CODES)}")
        for proxy in self.api_trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"api_trusted_proxies: {proxy!r} is not an IP address or network") from None
        return self

    @property
    def secure_cookies(self) -> bool:
        """Whether cookies carry Secure and responses HSTS regardless of the request's scheme."""
        return self.api_allow_remote if self.api_secure_cookies is None else self.api_secure_cookies

    @property
    def allowed_hosts(self) -> list[str]:
        """Host names (without port) the web app answers; anything else is refused (400)."""
        hosts = ["localhost", "127.0.0.1", "::1", *self.api_trusted_hosts]
        if self.api_host not in ("0.0.0.0", "::"):
            hosts.append(self.api_host)
        return list(dict.fromkeys(h.lower() for h in hosts))

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<data_dir>/vinspect.db``."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'vinspect.db').resolve()}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment plus explicit overrides (None values ignored)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"settings (VINSPECT_* environment / .env): {problems}") from exc


class _JsonFormatter(logging.Formatter):
    _SKIP = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in self._SKIP})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(*, level: str = "INFO", json_lines: bool = False) -> None:
    """Configure the root logger once (stderr), plain text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(_JsonFormatter() if json_lines else logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
