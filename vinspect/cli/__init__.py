"""The ``vinspect`` command: the composition root.

Each command group lives in its own module with a ``register(subparsers)`` function; handlers
take the parsed arguments and return the exit code. Errors vinspect raises on purpose
(:class:`VinspectError`) are printed as one clear line and exit 2; nothing else is caught here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from vinspect import __version__
from vinspect.cli import camera, compare, dataset, model, quality, run, station_config, store, web
from vinspect.errors import VinspectError
from vinspect.settings import configure_logging

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)
Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every command group registered)."""
    parser = argparse.ArgumentParser(prog="vinspect", description="Automated visual inspection station.")
    parser.add_argument("--version", action="version", version=f"vinspect {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="least severe log messages shown on stderr (default WARNING)",
    )
    parser.add_argument("--log-json", action="store_true", help="log as JSON lines on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (model, compare, dataset, camera, run, station_config, store, web, quality):
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(level=args.log_level, json_lines=args.log_json)
    handler: Handler = args.handler
    try:
        return handler(args)
    except VinspectError as exc:
        sys.stderr.write(f"vinspect {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`vinspect ncr list | head`): not an error. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
