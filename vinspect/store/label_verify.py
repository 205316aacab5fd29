"""Label events against their audit links: each event's content hash must match the link that
recorded it, and every link must still have its event (to be called by ``audit verify``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

from sqlalchemy import select
from sqlalchemy.orm import Session

from vinspect.store.labelling import event_sha256
from vinspect.store.tables import AuditRecord, LabelEventRecord

__all__ = ["label_event_problems"]


def label_event_problems(session: Session) -> Iterator[str]:
    """One line per label event that was edited, inserted outside the application or deleted."""
    links = {
        entity_id: (seq, digest)
        for entity_id, seq, digest in session.execute(
            select(AuditRecord.entity_id, AuditRecord.seq, AuditRecord.record_sha256).where(
                AuditRecord.entity == "label_event"
            )
        )
    }
    events = select(LabelEventRecord).order_by(LabelEventRecord.id).execution_options(yield_per=2000)
    with closing(session.scalars(events)) as rows:
        for event in rows:
            link = links.pop(str(event.id), None)
            if link is None:
                yield f"label_event {event.id}: no audit link covers it (inserted outside the application)"
            elif link[1] != event_sha256(event):
                yield f"label_event {event.id}: content differs from audit seq {link[0]} (edited)"
    for entity_id, (seq, _) in sorted(links.items(), key=lambda item: item[1][0]):
        yield f"label_event {entity_id}: covered by audit seq {seq} but missing (deleted)"
