"""Labelling sets: import images, record labels, undo, settle blind disagreements.

Every label is an appended event (who, when, the catalogue version it was given under, the label
before it and the regions drawn), linked into the audit chain in the same transaction by the
SHA-256 of its content. Nothing is updated or deleted: an undo is an event that restores the
state before the undone one, a relabel is a new event, a third person's settlement is an event.

Scope of "the current label": in an open set (``blind_labellers`` 0 or 1) an image has one
label, the newest of anyone's; in a blind set each labeller has their own, unseen by the others,
and an image's labels are compared once ``blind_labellers`` people have labelled it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from vinspect.dataset.images import IMAGE_SUFFIXES, decode_image
from vinspect.dataset.regions import parse_regions, regions_json
from vinspect.errors import DatasetError, ImageDecodeError, StateError
from vinspect.store.audit import AuditEntry, append_audit
from vinspect.store.canonical import canonical_json, content_sha256, format_utc, sha256_hex
from vinspect.store.db import lock_writers, session_scope
from vinspect.store.label_files import LabelFiles
from vinspect.store.tables import LabelEventRecord, LabelImageRecord, LabelScoreRecord, LabelSetRecord

__all__ = [
    "GOOD",
    "ImageScore",
    "ImportReport",
    "Labeller",
    "add_scores",
    "catalogue_version",
    "event_sha256",
    "head_event",
    "image_labels",
    "import_folder",
    "is_blind",
    "record_label",
    "settle_label",
    "undo_label",
]

GOOD = "good"
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SKIPPED_NAMES = frozenset({"capture.csv"})  # a `vinspect capture` run's own manifest
_TRUTH_FOLDERS = frozenset({"masks", "ground_truth", "boxes"})  # a labelled dataset's masks and boxes


@dataclass(frozen=True, slots=True, kw_only=True)
class Labeller:
    """The person giving a label (a user of the store)."""

    user_id: int
    username: str


@dataclass(slots=True, kw_only=True)
class ImportReport:
    """What an import added, and every file it skipped with the reason."""

    set_name: str
    added: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def catalogue_version(catalogue: Sequence[str]) -> str:
    """A short, stable name of a catalogue's content (its codes in order)."""
    return content_sha256(list(catalogue))[:16]


_EVENT_COLUMNS = (
    "id",
    "set_id",
    "image_id",
    "user_id",
    "kind",
    "label",
    "regions",
    "catalogue_version",
    "previous_event_id",
    "previous_label",
    "at",
)


def event_sha256(event: LabelEventRecord) -> str:
    """The hash of a label event's content, which its audit link records."""
    content = {name: getattr(event, name) for name in _EVENT_COLUMNS}
    content["at"] = format_utc(event.at)
    return content_sha256(content)


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def import_folder(
    folder: Path,
    *,
    engine: Engine,
    files: LabelFiles,
    set_name: str,
    actor: str,
    blind_labellers: int = 0,
    model_name: str | None = None,
    source: str = "cli",
    now: datetime | None = None,
) -> ImportReport:
    """Import every image under ``folder`` (a folder of images or a ``vinspect capture`` run) into
    the set ``set_name``, creating it when new. Files that are not images or repeat an image
    already in the set (or earlier in this import) are skipped and named; nothing already in the
    set changes.

    Raises:
        DatasetError: ``folder`` is not a folder, a bad set name or labeller count.
        StateError: the set exists with another labeller count.
    """
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder of images")
    if not _SET_NAME.match(set_name):
        raise DatasetError(f"set name {set_name!r}: use 1-64 letters, digits, '_', '.', '-'")
    if not 0 <= blind_labellers <= 9:
        raise DatasetError(f"blind labellers {blind_labellers}: 0 (open labelling) or 2-9 people")
    when = now or datetime.now(UTC)
    report = ImportReport(set_name=set_name)
    with session_scope(engine, readonly=True) as db:
        known = _known(db, set_name)
    seen: dict[str, str] = {}
    staged: list[dict[str, object]] = []
    for path in _image_files(folder):
        rel = path.relative_to(folder).as_posix()
        if path.name in _SKIPPED_NAMES:
            continue
        if len(path.relative_to(folder).parts) > 1 and path.relative_to(folder).parts[0] in _TRUTH_FOLDERS:
            report.skipped.append((rel, "ground truth of a dataset (masks/, ground_truth/, boxes/), not a part image"))
            continue
        suffix = path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            report.skipped.append(
                (rel, f"not an image (suffix {suffix or 'none'}; expected {', '.join(sorted(IMAGE_SUFFIXES))})")
            )
            continue
        data = path.read_bytes()
        sha = sha256_hex(data)
        if sha in seen or sha in known:
            first = seen.get(sha) or known[sha]
            report.skipped.append(
                (rel, f"duplicate image: same content as {first}" + ("" if sha in seen else " already in the set"))
            )
            continue
        try:
            pixels = decode_image(data, name=rel)
        except ImageDecodeError as exc:
            report.skipped.append((rel, f"not a readable image: {str(exc).removeprefix(rel + ': ')}"))
            continue
        files.put(data, sha256=sha, suffix=".jpg" if suffix == ".jpeg" else suffix, pixels=pixels)
        seen[sha] = rel
        staged.append(
            {
                "sha256": sha,
                "suffix": ".jpg" if suffix == ".jpeg" else suffix,
                "file_name": rel[:255],
                "width": int(pixels.shape[1]),
                "height": int(pixels.shape[0]),
                "size_bytes": len(data),
                "imported_at": when,
            }
        )
    with session_scope(engine) as db:
        lock_writers(db)
        label_set = _get_or_create(
            db,
            set_name,
            actor=actor,
            blind_labellers=blind_labellers,
            model_name=model_name,
            source=str(folder),
            source_kind=source,
            now=when,
        )
        start = (
            db.scalar(select(func.max(LabelImageRecord.ordinal)).where(LabelImageRecord.set_id == label_set.id)) or 0
        ) + 1
        rows = [{**row, "set_id": label_set.id, "ordinal": start + i} for i, row in enumerate(staged)]
        if rows:
            db.execute(LabelImageRecord.__table__.insert(), rows)  # type: ignore[attr-defined]
            digest = sha256_hex("".join(str(r["sha256"]) for r in rows).encode("ascii"))
            append_audit(
                AuditEntry(
                    actor=actor,
                    action="label_set.import",
                    entity="label_set",
                    entity_id=str(label_set.id),
                    field="images",
                    new_value=str(len(rows)),
                    reason=f"{len(rows)} image(s) from {folder}; {len(report.skipped)} skipped",
                    source=source,
                    record_sha256=digest,
                ),
                session=db,
                at=when,
            )
    report.added = len(staged)
    return report


def _known(db: Session, set_name: str) -> dict[str, str]:
    rows = db.execute(
        select(LabelImageRecord.sha256, LabelImageRecord.file_name)
        .join(LabelSetRecord, LabelSetRecord.id == LabelImageRecord.set_id)
        .where(LabelSetRecord.name == set_name)
    )
    return {sha: name for sha, name in rows}


def _get_or_create(
    db: Session,
    name: str,
    *,
    actor: str,
    blind_labellers: int,
    model_name: str | None,
    source: str,
    source_kind: str,
    now: datetime,
) -> LabelSetRecord:
    existing = db.scalar(select(LabelSetRecord).where(LabelSetRecord.name == name))
    if existing is not None:
        if existing.blind_labellers != blind_labellers:
            raise StateError(
                f"set {name!r} is labelled by {existing.blind_labellers or 'open'} labeller(s), "
                f"not {blind_labellers}: import into it with the same count, or name a new set"
            )
        return existing
    row = LabelSetRecord(
        name=name,
        model_name=model_name,
        blind_labellers=blind_labellers,
        source=source,
        created_by=actor,
        created_at=now,
    )
    db.add(row)
    db.flush()
    append_audit(
        AuditEntry(
            actor=actor,
            action="label_set.create",
            entity="label_set",
            entity_id=str(row.id),
            field="blind_labellers",
            new_value=str(blind_labellers),
            reason=f"set {name} from {source}",
            source=source_kind,
            record_sha256=content_sha256({"name": name, "model_name": model_name, "blind_labellers": blind_labellers}),
        ),
        session=db,
        at=now,
    )
    return row


def is_blind(label_set: LabelSetRecord) -> bool:
    return label_set.blind_labellers >= 2


def head_event(db: Session, label_set: LabelSetRecord, image_id: int, user_id: int) -> LabelEventRecord | None:
    """The event that holds the current label in this labeller's scope (the image's, in an open set)."""
    query = select(LabelEventRecord).where(
        LabelEventRecord.image_id == image_id, LabelEventRecord.kind.in_(("label", "undo"))
    )
    if is_blind(label_set):
        query = query.where(LabelEventRecord.user_id == user_id)
    return db.scalar(query.order_by(LabelEventRecord.id.desc()).limit(1))


def _image(db: Session, label_set: LabelSetRecord, image_id: int) -> LabelImageRecord:
    image = db.get(LabelImageRecord, image_id)
    if image is None or image.set_id != label_set.id:
        raise DatasetError(f"image {image_id} is not in set {label_set.name}")
    return image


def _checked(label: str, regions: object, image: LabelImageRecord, catalogue: Sequence[str]) -> str:
    if label != GOOD and label not in catalogue:
        raise DatasetError(
            f"label {label!r} is not {GOOD!r} or a code of the product's catalogue ({', '.join(catalogue)})"
        )
    parsed = parse_regions(regions, width=image.width, height=image.height, catalogue=catalogue)
    if label == GOOD and parsed:
        raise DatasetError(
            f"a good image has no defect regions: remove the {len(parsed)} region(s) or give a defect code"
        )
    return canonical_json(regions_json(parsed)).decode()


def _append(
    db: Session,
    label_set: LabelSetRecord,
    image: LabelImageRecord,
    who: Labeller,
    *,
    kind: str,
    label: str | None,
    regions: str,
    catalogue: Sequence[str],
    previous: LabelEventRecord | None,
    previous_label: str | None,
    source: str,
    now: datetime | None,
) -> LabelEventRecord:
    when = now or datetime.now(UTC)
    event = LabelEventRecord(
        set_id=label_set.id,
        image_id=image.id,
        user_id=who.user_id,
        kind=kind,
        label=label,
        regions=regions,
        catalogue_version=catalogue_version(catalogue),
        previous_event_id=previous.id if previous is not None else None,
        previous_label=previous_label,
        at=when,
    )
    db.add(event)
    db.flush()
    append_audit(
        AuditEntry(
            actor=f"user:{who.user_id}",
            action=f"label.{kind}",
            entity="label_event",
            entity_id=str(event.id),
            field="label",
            old_value=previous_label,
            new_value=label,
            reason=f"set {label_set.name} image {image.ordinal} ({image.sha256[:12]}); catalogue "
            f"{event.catalogue_version}",
            source=source,
            record_sha256=event_sha256(event),
        ),
        session=db,
        at=when,
    )
    return event


def record_label(
    db: Session,
    label_set: LabelSetRecord,
    image_id: int,
    who: Labeller,
    *,
    label: str,
    regions: object,
    catalogue: Sequence[str],
    source: str,
    now: datetime | None = None,
) -> LabelEventRecord:
    """Give ``image_id`` a label (``good`` or a catalogue code) and regions; returns the event (the
    current one, unchanged, when the label and regions are what the labeller already gave).

    Raises:
        DatasetError: the image is not in the set, a code not in the catalogue, a region outside
            the image or malformed, regions on a good image. Nothing is written then.
    """
    image = _image(db, label_set, image_id)
    stored = _checked(label, regions, image, catalogue)
    lock_writers(db)
    head = head_event(db, label_set, image_id, who.user_id)
    if head is not None and head.label == label and head.regions == stored and head.user_id == who.user_id:
        return head
    return _append(
        db,
        label_set,
        image,
        who,
        kind="label",
        label=label,
        regions=stored,
        catalogue=catalogue,
        previous=head,
        previous_label=head.label if head is not None else None,
        source=source,
        now=now,
    )


def undo_label(
    db: Session,
    label_set: LabelSetRecord,
    image_id: int,
    who: Labeller,
    *,
    catalogue: Sequence[str],
    source: str,
    now: datetime | None = None,
) -> LabelEventRecord | None:
    """Restore the label before the current one (None when there is nothing to undo).

    The undo event carries the restored label and regions; its ``previous_event_id`` points
    where a further undo goes (the event before the restored one), so undo repeats backwards.
    """
    image = _image(db, label_set, image_id)
    lock_writers(db)
    head = head_event(db, label_set, image_id, who.user_id)
    if head is None or (head.label is None and head.previous_event_id is None):
        return None
    restored = db.get(LabelEventRecord, head.previous_event_id) if head.previous_event_id is not None else None
    back = (
        db.get(LabelEventRecord, restored.previous_event_id)
        if restored is not None and restored.previous_event_id is not None
        else None
    )
    return _append(
        db,
        label_set,
        image,
        who,
        kind="undo",
        label=restored.label if restored is not None else None,
        regions=restored.regions if restored is not None else "[]",
        catalogue=catalogue,
        previous=back,
        previous_label=head.label,
        source=source,
        now=now,
    )


def image_labels(db: Session, label_set: LabelSetRecord, image_id: int) -> dict[int, LabelEventRecord]:
    """Each labeller's current label event of an image in a blind set (labelled ones only)."""
    rows = db.scalars(
        select(LabelEventRecord)
        .where(LabelEventRecord.image_id == image_id, LabelEventRecord.kind.in_(("label", "undo")))
        .order_by(LabelEventRecord.id)
    )
    heads: dict[int, LabelEventRecord] = {}
    for row in rows:
        heads[row.user_id] = row
    return {user: event for user, event in heads.items() if event.label is not None}


def settle_label(
    db: Session,
    label_set: LabelSetRecord,
    image_id: int,
    who: Labeller,
    *,
    label: str,
    regions: object,
    catalogue: Sequence[str],
    source: str,
    now: datetime | None = None,
) -> LabelEventRecord:
    """A third person's label for an image the blind labellers disagree on.

    Raises:
        StateError: the set is not blind, the image has fewer labels than the set needs or no
            disagreement, or the settler labelled it.
        DatasetError: as :func:`record_label`.
    """
    image = _image(db, label_set, image_id)
    if not is_blind(label_set):
        raise StateError(f"set {label_set.name} is labelled openly: there is nothing to settle")
    stored = _checked(label, regions, image, catalogue)
    lock_writers(db)
    labels = image_labels(db, label_set, image_id)
    if len(labels) < label_set.blind_labellers:
        raise StateError(
            f"image {image.ordinal} has {len(labels)} of {label_set.blind_labellers} blind labels: "
            "settle it once everyone has labelled it"
        )
    if len({e.label for e in labels.values()}) < 2:
        raise StateError(f"image {image.ordinal}: the labellers agree; there is nothing to settle")
    if who.user_id in labels:
        raise StateError(f"you labelled image {image.ordinal}: a disagreement is settled by a third person")
    last = db.scalar(
        select(LabelEventRecord)
        .where(LabelEventRecord.image_id == image_id, LabelEventRecord.kind == "settle")
        .order_by(LabelEventRecord.id.desc())
        .limit(1)
    )
    previous = " | ".join(sorted({str(e.label) for e in labels.values()}))[:64] if last is None else last.label
    return _append(
        db,
        label_set,
        image,
        who,
        kind="settle",
        label=label,
        regions=stored,
        catalogue=catalogue,
        previous=last,
        previous_label=previous,
        source=source,
        now=now,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageScore:
    """A model's score of one image and how unsure it was (0 = on a threshold)."""

    image_id: int
    score: float
    uncertainty: float


def add_scores(
    db: Session,
    label_set: LabelSetRecord,
    scores: Sequence[ImageScore],
    *,
    model_name: str,
    model_version: str,
    model_sha256: str,
    now: datetime,
) -> None:
    """Store a model's scores of a set's images (newest model's scores order the workspace)."""
    if not scores:
        return
    db.execute(
        LabelScoreRecord.__table__.insert(),  # type: ignore[attr-defined]
        [
            {
                "set_id": label_set.id,
                "image_id": s.image_id,
                "model_name": model_name[:128],
                "model_version": model_version[:64],
                "model_sha256": model_sha256,
                "score": s.score,
                "uncertainty": s.uncertainty,
                "scored_at": now,
            }
            for s in scores
        ],
    )
