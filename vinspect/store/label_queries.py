"""Reads of labelling sets: the sets, a page of images, one image, its history, the agreement
between blind labellers and each image's final label (what an export writes)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vinspect.dataset.agreement import cohen_kappa, confusion, fleiss_kappa
from vinspect.store.labelling import image_labels, is_blind
from vinspect.store.tables import (
    LabelEventRecord,
    LabelImageRecord,
    LabelScoreRecord,
    LabelSetRecord,
    UserRecord,
)

__all__ = [
    "Agreement",
    "FinalLabel",
    "ImageRow",
    "LabelSetSummary",
    "SetLabels",
    "agreement",
    "get_set",
    "image_history",
    "image_page",
    "image_row",
    "labels_by_name",
    "latest_settle",
    "list_sets",
    "neighbours",
    "set_images",
    "set_labels",
]

Order = Literal["import", "uncertain"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelSetSummary:
    name: str
    blind_labellers: int
    model_name: str | None
    images: int
    created_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRow:
    """An image with its current label in the viewer's scope (None: not labelled)."""

    id: int
    ordinal: int
    sha256: str
    suffix: str
    file_name: str
    width: int
    height: int
    label: str | None
    regions: list[dict[str, Any]]
    uncertainty: float | None = None
    score: float | None = None


def get_set(db: Session, name: str) -> LabelSetRecord | None:
    return db.scalar(select(LabelSetRecord).where(LabelSetRecord.name == name))


def list_sets(db: Session) -> list[LabelSetSummary]:
    counts = dict(db.execute(select(LabelImageRecord.set_id, func.count()).group_by(LabelImageRecord.set_id)).all())
    return [
        LabelSetSummary(
            name=s.name,
            blind_labellers=s.blind_labellers,
            model_name=s.model_name,
            images=int(counts.get(s.id, 0)),
            created_at=s.created_at,
            created_by=s.created_by,
        )
        for s in db.scalars(select(LabelSetRecord).order_by(LabelSetRecord.name))
    ]


def _heads(
    db: Session, label_set: LabelSetRecord, image_ids: Sequence[int], user_id: int
) -> dict[int, LabelEventRecord]:
    if not image_ids:
        return {}
    query = select(LabelEventRecord).where(
        LabelEventRecord.image_id.in_(image_ids), LabelEventRecord.kind.in_(("label", "undo"))
    )
    if is_blind(label_set):
        query = query.where(LabelEventRecord.user_id == user_id)
    heads: dict[int, LabelEventRecord] = {}
    for event in db.scalars(query.order_by(LabelEventRecord.id)):
        heads[event.image_id] = event
    return heads


def _latest_model(db: Session, label_set: LabelSetRecord) -> str | None:
    return db.scalar(
        select(LabelScoreRecord.model_sha256)
        .where(LabelScoreRecord.set_id == label_set.id)
        .order_by(LabelScoreRecord.id.desc())
        .limit(1)
    )


def _ordered(query: Any, label_set: LabelSetRecord, model: str | None) -> Any:
    """``query`` over the set's images in import order, or least certain first under ``model``."""
    query = query.where(LabelImageRecord.set_id == label_set.id)
    if model is None:
        return query.order_by(LabelImageRecord.ordinal)
    scored = (
        select(LabelScoreRecord.image_id, func.min(LabelScoreRecord.uncertainty).label("u"))
        .where(LabelScoreRecord.set_id == label_set.id, LabelScoreRecord.model_sha256 == model)
        .group_by(LabelScoreRecord.image_id)
        .subquery()
    )
    return query.outerjoin(scored, scored.c.image_id == LabelImageRecord.id).order_by(
        scored.c.u.is_(None), scored.c.u, LabelImageRecord.ordinal
    )


def image_page(
    db: Session, label_set: LabelSetRecord, *, user_id: int, offset: int, limit: int, order: Order = "import"
) -> tuple[list[ImageRow], int, bool]:
    """A page of images with the viewer's labels; (rows, total, ordered by uncertainty).

    ``uncertain`` puts the images the newest scoring model was least sure of first (those
    without a score last); without scores it is import order.
    """
    total = (
        db.scalar(select(func.count()).select_from(LabelImageRecord).where(LabelImageRecord.set_id == label_set.id))
        or 0
    )
    model = _latest_model(db, label_set) if order == "uncertain" else None
    scores: dict[int, tuple[float, float]] = {}
    images = list(db.scalars(_ordered(select(LabelImageRecord), label_set, model).offset(offset).limit(limit)))
    if model is not None and images:
        for image_id, uncertainty, score in db.execute(
            select(LabelScoreRecord.image_id, LabelScoreRecord.uncertainty, LabelScoreRecord.score).where(
                LabelScoreRecord.model_sha256 == model, LabelScoreRecord.image_id.in_([i.id for i in images])
            )
        ):
            scores[image_id] = (uncertainty, score)
    heads = _heads(db, label_set, [i.id for i in images], user_id)
    rows = []
    for image in images:
        head = heads.get(image.id)
        scored_pair = scores.get(image.id)
        rows.append(
            ImageRow(
                id=image.id,
                ordinal=image.ordinal,
                sha256=image.sha256,
                suffix=image.suffix,
                file_name=image.file_name,
                width=image.width,
                height=image.height,
                label=head.label if head is not None else None,
                regions=json.loads(head.regions) if head is not None else [],
                uncertainty=scored_pair[0] if scored_pair else None,
                score=scored_pair[1] if scored_pair else None,
            )
        )
    return rows, int(total), model is not None


def image_row(db: Session, label_set: LabelSetRecord, image_id: int, *, user_id: int) -> ImageRow | None:
    image = db.get(LabelImageRecord, image_id)
    if image is None or image.set_id != label_set.id:
        return None
    head = _heads(db, label_set, [image.id], user_id).get(image.id)
    return ImageRow(
        id=image.id,
        ordinal=image.ordinal,
        sha256=image.sha256,
        suffix=image.suffix,
        file_name=image.file_name,
        width=image.width,
        height=image.height,
        label=head.label if head is not None else None,
        regions=json.loads(head.regions) if head is not None else [],
    )


def neighbours(
    db: Session, label_set: LabelSetRecord, ordinal: int, *, image_id: int = 0, order: Order = "import"
) -> tuple[int | None, int | None]:
    """Ids of the images before and after this one: in import order, or (``uncertain``, once a model
    has scored the set) in the grid's least-certain-first order."""
    model = _latest_model(db, label_set) if order == "uncertain" else None
    if model is not None:
        ids = list(db.scalars(_ordered(select(LabelImageRecord.id), label_set, model)))
        at = ids.index(image_id) if image_id in ids else -1
        if at >= 0:
            return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None)
    before = db.scalar(
        select(LabelImageRecord.id)
        .where(LabelImageRecord.set_id == label_set.id, LabelImageRecord.ordinal < ordinal)
        .order_by(LabelImageRecord.ordinal.desc())
        .limit(1)
    )
    after = db.scalar(
        select(LabelImageRecord.id)
        .where(LabelImageRecord.set_id == label_set.id, LabelImageRecord.ordinal > ordinal)
        .order_by(LabelImageRecord.ordinal)
        .limit(1)
    )
    return before, after


def _names(db: Session) -> dict[int, str]:
    return {uid: name for uid, name in db.execute(select(UserRecord.id, UserRecord.username))}


def image_history(db: Session, image_id: int, *, user_id: int | None) -> list[dict[str, Any]]:
    """The label events of an image, oldest first (only ``user_id``'s own and settlements when
    given: blind labellers never see each other's labels)."""
    names = _names(db)
    query = select(LabelEventRecord).where(LabelEventRecord.image_id == image_id)
    if user_id is not None:
        query = query.where((LabelEventRecord.user_id == user_id) | (LabelEventRecord.kind == "settle"))
    return [
        {
            "id": e.id,
            "kind": e.kind,
            "label": e.label,
            "previous_label": e.previous_label,
            "user": names.get(e.user_id, str(e.user_id)),
            "at": e.at,
            "catalogue_version": e.catalogue_version,
            "regions": len(json.loads(e.regions)),
        }
        for e in db.scalars(query.order_by(LabelEventRecord.id))
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalLabel:
    """An image's label as an export writes it."""

    image: LabelImageRecord
    label: str
    regions: list[dict[str, Any]]
    labeller: str
    labelled_at: datetime
    labellers: dict[str, str] = field(default_factory=dict)  # blind sets: each labeller's label
    settled_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetLabels:
    """Every image's state: final labels, unsettled disagreements, images still needing labels."""

    final: list[FinalLabel]
    unsettled: list[tuple[LabelImageRecord, dict[str, str]]]
    incomplete: list[LabelImageRecord]
    # blind sets: labeller name -> image id -> label (for agreement)
    by_labeller: dict[str, dict[int, str]]


def set_labels(db: Session, label_set: LabelSetRecord) -> SetLabels:
    """Each image's final label: the current one in an open set; in a blind set the agreed one once
    every labeller has labelled it, or the newest settlement of a disagreement."""
    names = _names(db)
    images = list(
        db.scalars(
            select(LabelImageRecord).where(LabelImageRecord.set_id == label_set.id).order_by(LabelImageRecord.ordinal)
        )
    )
    heads: dict[int, dict[int, LabelEventRecord]] = {}
    first_seen: dict[int, int] = {}
    settles: dict[int, LabelEventRecord] = {}
    blind = is_blind(label_set)
    for e in db.scalars(
        select(LabelEventRecord).where(LabelEventRecord.set_id == label_set.id).order_by(LabelEventRecord.id)
    ):
        if e.kind == "settle":
            settles[e.image_id] = e
            continue
        first_seen.setdefault(e.user_id, e.id)
        heads.setdefault(e.image_id, {})[e.user_id if blind else 0] = e
    final: list[FinalLabel] = []
    unsettled: list[tuple[LabelImageRecord, dict[str, str]]] = []
    incomplete: list[LabelImageRecord] = []
    by_labeller: dict[str, dict[int, str]] = {}
    for image in images:
        current = {u: e for u, e in heads.get(image.id, {}).items() if e.label is not None}
        if not blind:
            event = current.get(0)
            if event is None or event.label is None:
                incomplete.append(image)
            else:
                final.append(
                    FinalLabel(
                        image=image,
                        label=event.label,
                        regions=json.loads(event.regions),
                        labeller=names.get(event.user_id, "?"),
                        labelled_at=event.at,
                    )
                )
            continue
        given = {names.get(u, str(u)): str(e.label) for u, e in current.items()}
        for who, label in given.items():
            by_labeller.setdefault(who, {})[image.id] = label
        settle = settles.get(image.id)
        if len(current) < label_set.blind_labellers:
            incomplete.append(image)
        elif settle is not None and settle.label is not None:
            final.append(
                FinalLabel(
                    image=image,
                    label=settle.label,
                    regions=json.loads(settle.regions),
                    labeller=names.get(settle.user_id, "?"),
                    labelled_at=settle.at,
                    labellers=given,
                    settled_by=names.get(settle.user_id, "?"),
                )
            )
        elif len(set(given.values())) > 1:
            unsettled.append((image, given))
        else:
            # Agreement: the regions of whoever labelled first in this set.
            event = min(current.values(), key=lambda e: first_seen.get(e.user_id, e.id))
            final.append(
                FinalLabel(
                    image=image,
                    label=str(event.label),
                    regions=json.loads(event.regions),
                    labeller=names.get(event.user_id, "?"),
                    labelled_at=event.at,
                    labellers=given,
                )
            )
    return SetLabels(final=final, unsettled=unsettled, incomplete=incomplete, by_labeller=by_labeller)


@dataclass(frozen=True, slots=True, kw_only=True)
class Agreement:
    """Agreement between a blind set's labellers."""

    labellers: list[str]
    method: str  # "Cohen's kappa" (two labellers) or "Fleiss' kappa" (more)
    kappa: float | None
    compared: int  # images labelled by every labeller compared
    confusions: list[tuple[str, str, list[str], list[list[int]]]]  # (a, b, classes, counts) per pair
    unsettled: int
    settled: int


def agreement(labels: SetLabels, *, raters: int) -> Agreement:
    """Kappa between the labellers (Cohen's for two, Fleiss' over images with ``raters`` labels
    for more) and the confusion of every pair on the images both labelled."""
    people = sorted(labels.by_labeller)
    confusions = []
    for a, b in combinations(people, 2):
        both = sorted(set(labels.by_labeller[a]) & set(labels.by_labeller[b]))
        classes, counts = confusion([labels.by_labeller[a][i] for i in both], [labels.by_labeller[b][i] for i in both])
        confusions.append((a, b, classes, counts))
    settled = sum(1 for f in labels.final if f.settled_by is not None)
    if len(people) == 2:
        a, b = people
        both = sorted(set(labels.by_labeller[a]) & set(labels.by_labeller[b]))
        kappa = cohen_kappa([labels.by_labeller[a][i] for i in both], [labels.by_labeller[b][i] for i in both])
        return Agreement(
            labellers=people,
            method="Cohen's kappa",
            kappa=kappa,
            compared=len(both),
            confusions=confusions,
            unsettled=len(labels.unsettled),
            settled=settled,
        )
    per_image: dict[int, list[str]] = {}
    for who in people:
        for image_id, label in labels.by_labeller[who].items():
            per_image.setdefault(image_id, []).append(label)
    rated = [v[:raters] for v in per_image.values() if len(v) >= raters]
    kappa = fleiss_kappa(rated) if rated and raters >= 2 else None
    return Agreement(
        labellers=people,
        method="Fleiss' kappa",
        kappa=kappa,
        compared=len(rated),
        confusions=confusions,
        unsettled=len(labels.unsettled),
        settled=settled,
    )


def set_images(db: Session, label_set: LabelSetRecord) -> list[LabelImageRecord]:
    """Every image of a set in import order."""
    return list(
        db.scalars(
            select(LabelImageRecord).where(LabelImageRecord.set_id == label_set.id).order_by(LabelImageRecord.ordinal)
        )
    )


def labels_by_name(db: Session, label_set: LabelSetRecord, image_id: int) -> dict[str, str]:
    """Each labeller's current label of an image of a blind set, by username (shown to a settler)."""
    names = _names(db)
    return {names.get(uid, str(uid)): str(e.label) for uid, e in sorted(image_labels(db, label_set, image_id).items())}


def latest_settle(db: Session, image_id: int) -> dict[str, Any] | None:
    """The newest settlement of an image (label, regions, who, when), or None."""
    event = db.scalar(
        select(LabelEventRecord)
        .where(LabelEventRecord.image_id == image_id, LabelEventRecord.kind == "settle")
        .order_by(LabelEventRecord.id.desc())
        .limit(1)
    )
    if event is None:
        return None
    return {
        "label": event.label,
        "regions": json.loads(event.regions),
        "user": _names(db).get(event.user_id, "?"),
        "at": event.at,
    }
