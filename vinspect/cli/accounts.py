"""``vinspect users unlock|reset-password|set-role``: the way back in when no admin can sign in.

Run on the server by someone with access to the store; each change is audited with the shell
user (``cli:<login>``) and the reason. A running web app re-reads the account on every request,
so a new role applies at once; sessions signed in before a password reset from the shell stay
open until they time out or sign out (the web app's own reset ends them at once).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from vinspect.cli.store_access import store_engine
from vinspect.errors import ConfigError
from vinspect.store.ncr import Role

__all__ = ["new_password_hash", "register_verbs"]


def register_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``unlock``, ``reset-password`` and ``set-role`` under ``vinspect users``."""
    common = {"help": "why (written to the audit trail)"}
    data_help = "default: VINSPECT_DATA_DIR or ./vinspect-data"
    unlock = verbs.add_parser("unlock", help="clear an account's failed sign-ins (lockout)")
    reset = verbs.add_parser("reset-password", help="set a new password (read from the terminal or stdin)")
    role = verbs.add_parser("set-role", help="give an account another role")
    role.add_argument("--role", required=True, choices=[r.value for r in Role], help="the new role")
    reset.add_argument("--password-stdin", action="store_true", help="read the new password from stdin")
    for parser, handler in ((unlock, _unlock), (reset, _reset), (role, _set_role)):
        parser.add_argument("username", help="the account")
        parser.add_argument("--reason", required=True, **common)
        parser.add_argument("--data-dir", type=Path, default=None, help=data_help)
        parser.set_defaults(handler=handler)


def new_password_hash(args: argparse.Namespace) -> str:
    """The hash of a new password for ``args.username``, read from stdin (``--password-stdin``) or
    typed twice at the terminal, refused when it breaks the password rules."""
    from vinspect.api.auth import PasswordService, password_problems

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ")
    problems = password_problems(password, username=args.username)
    if problems:
        raise ConfigError("password refused: " + "; ".join(problems))
    return PasswordService().hash(password)


def _audit_unlock(session, username: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    """The audit row that says an account's failed sign-ins were cleared from the shell."""
    from vinspect.store.audit import AuditEntry, append_audit

    append_audit(
        AuditEntry(
            actor=_actor(),
            action="login.unlock",
            entity="login",
            entity_id=username[:64],
            reason=reason,
            source="cli",
        ),
        session=session,
    )


def _account(session, username: str):  # type: ignore[no-untyped-def]
    from vinspect.store.users import get_user

    user = get_user(session=session, username=username)
    if user is None:
        raise ConfigError(f"no account named {username!r} (see /users or `vinspect users add`)")
    return user


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _unlock(args: argparse.Namespace) -> int:
    from vinspect.store import session_scope

    if not args.reason.strip():
        raise ConfigError("--reason must not be blank")
    with store_engine(args) as engine, session_scope(engine) as session:
        user = _account(session, args.username)
        _audit_unlock(session, user.username, args.reason)
    sys.stdout.write(f"unlocked sign-in for {user.username}\n")
    return 0


def _reset(args: argparse.Namespace) -> int:
    from vinspect.errors import StateError
    from vinspect.store import session_scope
    from vinspect.store.users import set_user_password

    if not args.reason.strip():
        raise ConfigError("--reason must not be blank")
    password_hash = new_password_hash(args)
    try:
        with store_engine(args) as engine, session_scope(engine) as session:
            user = _account(session, args.username)
            set_user_password(user.id, session=session, password_hash=password_hash, actor=_actor(), reason=args.reason)
            _audit_unlock(session, user.username, f"password reset: {args.reason}")
    except StateError as exc:
        raise ConfigError(str(exc)) from exc
    sys.stdout.write(f"new password set for {user.username} (sign-in unlocked)\n")
    return 0


def _set_role(args: argparse.Namespace) -> int:
    from vinspect.errors import StateError
    from vinspect.store import Role, session_scope
    from vinspect.store.users import set_user_role

    try:
        with store_engine(args) as engine, session_scope(engine) as session:
            user = _account(session, args.username)
            changed = set_user_role(user.id, session=session, role=Role(args.role), actor=_actor(), reason=args.reason)
    except StateError as exc:
        raise ConfigError(str(exc)) from exc
    sys.stdout.write(f"{changed.username} is now {changed.role} (was {user.role})\n")
    return 0
