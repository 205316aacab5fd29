"""``vinspect dataset import-labelset | export-labels | score-labelset``: labelling sets from a shell.

The web app's labelling workspace (``/labelling``) is where people label; these verbs bring
images in, write a labelled set out in the layout ``vinspect train`` reads, and score a set with
a model so that the workspace can show the images it is least sure of first.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from vinspect.cli.store_access import store_engine
from vinspect.errors import DatasetError
from vinspect.settings import Settings, load_settings

__all__ = ["label_files", "register_verbs"]


def register_verbs(verbs: argparse._SubParsersAction[Any]) -> None:
    """Add the labelling verbs to the ``dataset`` command group."""
    data_help = "default: VINSPECT_DATA_DIR or ./vinspect-data"
    imp = verbs.add_parser(
        "import-labelset", help="import a folder of images (or a `vinspect capture` run) as a labelling set"
    )
    imp.add_argument("folder", type=Path, help="folder of images, searched recursively")
    imp.add_argument("--set", dest="set_name", required=True, help="set name (created when new, else added to)")
    imp.add_argument(
        "--blind",
        type=int,
        default=0,
        metavar="N",
        help="N people label each image blind and are compared (2-9; default 0: open labelling)",
    )
    imp.add_argument("--model-name", default=None, help="the product model whose defect codes apply")
    imp.add_argument("--data-dir", type=Path, default=None, help=data_help)
    imp.set_defaults(handler=_import)
    exp = verbs.add_parser("export-labels", help="write a labelling set as class folders + masks + boxes + labels.json")
    exp.add_argument("set_name", metavar="SET")
    exp.add_argument("--out", type=Path, required=True, help="folder to create")
    exp.add_argument("--data-dir", type=Path, default=None, help=data_help)
    exp.set_defaults(handler=_export)
    score = verbs.add_parser("score-labelset", help="score a set's images with a model bundle (uncertain first)")
    score.add_argument("set_name", metavar="SET")
    score.add_argument("--model", type=Path, required=True, help="bundle directory")
    score.add_argument("--data-dir", type=Path, default=None, help=data_help)
    score.set_defaults(handler=_score)


def label_files(settings: Settings):  # type: ignore[no-untyped-def]
    from vinspect.store.label_files import LabelFiles

    return LabelFiles(settings.data_dir / "labelling")


def _actor() -> str:
    try:
        return f"system:cli:{getpass.getuser()}"[:128]
    except (KeyError, OSError):
        return "system:cli"


def _import(args: argparse.Namespace) -> int:
    from vinspect.store.labelling import import_folder

    settings = load_settings(data_dir=args.data_dir)
    if args.blind == 1 or args.blind < 0:
        raise DatasetError(f"--blind {args.blind}: 0 (open labelling) or 2-9 labellers")
    with store_engine(args) as engine:
        report = import_folder(
            args.folder,
            engine=engine,
            files=label_files(settings),
            set_name=args.set_name,
            actor=_actor(),
            blind_labellers=args.blind,
            model_name=args.model_name,
        )
    for name, reason in report.skipped:
        sys.stdout.write(f"SKIPPED {name}: {reason}\n")
    sys.stdout.write(f"set {report.set_name}: {report.added} image(s) added, {len(report.skipped)} skipped\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    from vinspect.store.db import session_scope
    from vinspect.store.label_export import export_labels
    from vinspect.store.label_queries import get_set, set_labels

    settings = load_settings(data_dir=args.data_dir)
    with store_engine(args) as engine:
        with session_scope(engine, readonly=True) as db:
            label_set = get_set(db, args.set_name)
            if label_set is None:
                raise DatasetError(f"no labelling set {args.set_name!r}")
            labels = set_labels(db, label_set)
        summary = export_labels(label_set, labels, label_files(settings), args.out)
    counts = ", ".join(f"{k} {v}" for k, v in summary.per_label.items())
    sys.stdout.write(
        f"wrote {summary.images} image(s) to {summary.out} ({counts}); labels.json sha256 {summary.manifest_sha256}\n"
    )
    if summary.incomplete:
        sys.stdout.write(f"left out {summary.incomplete} image(s) still needing labels\n")
    if summary.unsettled:
        sys.stdout.write(
            f"left out {summary.unsettled} unsettled disagreement(s), listed in labels.json: "
            "`vinspect train` refuses this set unless --allow-unsettled\n"
        )
    return 0


def _score(args: argparse.Namespace) -> int:
    from vinspect.cli.label_scoring import score_set

    settings = load_settings(data_dir=args.data_dir)
    with store_engine(args) as engine:
        scored = score_set(engine, label_files(settings), args.set_name, args.model)
    sys.stdout.write(f"set {args.set_name}: scored {scored} image(s) with {args.model}\n")
    return 0
