"""``vinspect serve`` (the reviewer web app) and ``vinspect users add`` (accounts from a shell).

``serve`` binds 127.0.0.1 unless told otherwise (non-loopback needs VINSPECT_API_ALLOW_REMOTE).
While no active admin exists it writes a one-time secret to ``<data_dir>/bootstrap-secret``
(mode 0600) and the first visitor of ``/setup`` must paste it to create the admin. Forwarding
headers (X-Forwarded-For/-Proto) count only from ``VINSPECT_API_TRUSTED_PROXIES``
(:func:`uvicorn_options`); files are created under umask 027.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import socket
import sys
from pathlib import Path

from vinspect.cli.accounts import new_password_hash, register_verbs
from vinspect.cli.store_access import open_store_engine, store_engine
from vinspect.errors import ConfigError
from vinspect.fileperms import restrict_umask
from vinspect.settings import Settings, load_settings
from vinspect.store.ncr import Role

__all__ = ["register", "uvicorn_options"]

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` and ``users add``."""
    serve = sub.add_parser("serve", help="run the reviewer web app and JSON API")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=None, help="port, 1-65535 (default 8600)")
    serve.add_argument("--data-dir", type=Path, default=None, help="station data directory")
    serve.add_argument(
        "--pass-sample-rate",
        type=float,
        default=0.01,
        help="fraction of PASS parts drawn for the blind escape audit (default 0.01)",
    )
    serve.add_argument(
        "--alarm-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="evaluate SPC/drift alarms every SECONDS as subgroups close (0: off; default 60)",
    )
    serve.add_argument("--alarm-mqtt", default=None, metavar="HOST[:PORT]", help="publish new alarms to this broker")
    serve.add_argument("--alarm-topic-prefix", default="vinspect/site/line", help="MQTT topic prefix for alarms")
    serve.set_defaults(handler=_serve)

    users = sub.add_parser("users", help="reviewer app accounts")
    verbs = users.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="create an account (password read from the terminal or stdin)")
    add.add_argument("username")
    add.add_argument("--display-name", required=True, help="full name, printed on e-signatures")
    add.add_argument(
        "--role", required=True, choices=[r.value for r in Role], help="what the account may do in the web app"
    )
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--data-dir", type=Path, default=None, help="default: VINSPECT_DATA_DIR or ./vinspect-data")
    add.set_defaults(handler=_users_add)
    register_verbs(verbs)  # unlock, reset-password, set-role (vinspect/cli/accounts.py)


def _port(text: str) -> int:
    """A TCP port number (argparse names the option in the error: ``argument --port: ...``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return value


def _check_free(host: str, port: int) -> None:
    """Refuse early, before any setup hint, when another process already listens on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): is another server "
                f"running there? Stop it or choose another --port"
            ) from exc


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        data_dir=args.data_dir, api_host=getattr(args, "host", None), api_port=getattr(args, "port", None)
    )


def uvicorn_options(settings: Settings) -> dict[str, object]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` (besides the app).

    X-Forwarded-For and X-Forwarded-Proto are believed only from ``api_trusted_proxies``; with
    none configured uvicorn's proxy-header handling is off (its default trusts 127.0.0.1, so a
    local client could forge its address).
    """
    trusted = list(settings.api_trusted_proxies)
    return {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_config": None,
        "server_header": False,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
    }


def _open_store(settings: Settings):  # type: ignore[no-untyped-def]
    """The web app's store: the engine and the evidence files, open for the app's lifetime."""
    from vinspect.store import EvidenceStore
    from vinspect.store.review_queries import StoreHandle

    return StoreHandle(engine=open_store_engine(settings), evidence=EvidenceStore(settings.data_dir / "evidence"))


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from vinspect.api.app import create_app
    from vinspect.api.auth import ensure_bootstrap_secret
    from vinspect.api.deps import ApiOptions
    from vinspect.models.registry import ModelRegistry
    from vinspect.pipeline.status import StatusReader, status_path
    from vinspect.store import session_scope
    from vinspect.store.review_queries import active_admin_exists

    if args.alarm_interval < 0:
        raise ConfigError(f"--alarm-interval {args.alarm_interval}: 0 (off) or a number of seconds")
    if not 0.0 <= args.pass_sample_rate <= 1.0:
        raise ConfigError(f"--pass-sample-rate {args.pass_sample_rate} is not within 0..1")
    settings = _settings(args)
    if settings.api_host in ("0.0.0.0", "::") and not settings.api_trusted_hosts:
        raise ConfigError(
            f"api_host {settings.api_host} answers any name: set VINSPECT_API_TRUSTED_HOSTS to the "
            "host names clients use (the Host header check against DNS rebinding)"
        )
    _check_free(settings.api_host, settings.api_port)
    restrict_umask()
    store = _open_store(settings)
    with session_scope(store.engine, readonly=True) as session:
        has_admin = active_admin_exists(session=session)
    if not has_admin:
        path = ensure_bootstrap_secret(settings.data_dir)
        sys.stderr.write(
            f"vinspect serve: no admin yet. Open http://{settings.api_host}:{settings.api_port}/setup "
            f"and paste the one-time secret from {path} (mode 0600).\n"
        )
    app = create_app(
        settings,
        store=store,
        registry=ModelRegistry(settings.data_dir / "models"),
        status=StatusReader(status_path(settings.data_dir)),
        options=ApiOptions(
            pass_sample_rate=args.pass_sample_rate,
            alarm_interval_s=args.alarm_interval or None,
            alarm_mqtt=args.alarm_mqtt,
            alarm_topic_prefix=args.alarm_topic_prefix,
        ),
    )
    uvicorn.run(app, **uvicorn_options(settings))  # type: ignore[arg-type]
    return 0


def _users_add(args: argparse.Namespace) -> int:
    from vinspect.errors import StateError
    from vinspect.store import Role, session_scope
    from vinspect.store.users import create_user, username_problem

    problem = username_problem(args.username)
    if problem is not None:
        raise ConfigError(problem)
    password_hash = new_password_hash(args)
    try:
        with store_engine(args) as engine, session_scope(engine) as session:
            user = create_user(
                args.username,
                session=session,
                display_name=args.display_name,
                role=Role(args.role),
                password_hash=password_hash,
                actor=f"cli:{getpass.getuser()}",
            )
    except StateError as exc:
        raise ConfigError(str(exc)) from exc
    sys.stdout.write(f"created user {user.id} {user.username} ({user.role})\n")
    return 0
