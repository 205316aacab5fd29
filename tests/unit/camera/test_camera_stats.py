"""Frame-id accounting and the source lifecycle (issue #3)."""

from __future__ import annotations

import pytest

from vinspect.camera.base import SourceState
from vinspect.camera.stats import FrameLedger, Lifecycle, StateChange
from vinspect.errors import StateError


@pytest.mark.parametrize(
    ("raw_ids", "frame_ids", "missing", "gaps"),
    [
        ([1, 2, 3], [1, 2, 3], [], 0),
        ([7, 8, 9], [1, 2, 3], [], 0),  # the first producer id of a run is whatever the producer says
        ([1, 2, 5, 6], [1, 2, 5, 6], [3, 4], 2),
        ([10, 11, 20], [1, 2, 11], list(range(3, 11)), 8),
        ([65534, 65535, 0, 1], [1, 2, 3, 4], [], 0),  # a wrap starts a new run, no gap invented
    ],
)
def test_ledger_ids_strictly_increase_and_gaps_are_counted(
    raw_ids: list[int], frame_ids: list[int], missing: list[int], gaps: int
) -> None:
    ledger = FrameLedger()
    admitted = [ledger.admit(raw) for raw in raw_ids]
    assert [a.frame_id for a in admitted] == frame_ids
    assert [i for a in admitted for i in a.missing] == missing
    assert ledger.counters.gaps == gaps
    assert ledger.counters.frames == len(raw_ids)


def test_ledger_restart_continues_ids_after_a_reconnect() -> None:
    ledger = FrameLedger()
    for raw in (1, 2, 3):
        ledger.admit(raw)
    ledger.restart()  # a new acquirer: viky counts from 1 again
    assert [ledger.admit(raw).frame_id for raw in (1, 2)] == [4, 5]
    assert ledger.counters.gaps == 0


def test_ledger_missing_ids_explained_by_incomplete_buffers_are_not_gaps() -> None:
    ledger = FrameLedger()
    ledger.admit(1)
    ledger.incomplete()
    admission = ledger.admit(4)  # ids 2 and 3 missing; one was the incomplete buffer
    assert admission.frame_id == 4
    assert admission.missing == (3,)
    assert (ledger.counters.incomplete, ledger.counters.gaps) == (1, 1)


def test_lifecycle_refuses_transitions_outside_the_table() -> None:
    life = Lifecycle("cam")
    with pytest.raises(StateError, match="CLOSED -> STREAMING"):
        life.enter(SourceState.STREAMING)


def test_lifecycle_reports_every_change_to_listeners_and_history() -> None:
    seen: list[StateChange] = []
    life = Lifecycle("cam", listeners=(seen.append,))
    for state in (
        SourceState.OPENING,
        SourceState.STREAMING,
        SourceState.FAILED,
        SourceState.OPENING,
        SourceState.STREAMING,
        SourceState.CLOSED,
    ):
        life.enter(state, reason=state.value.lower())
    assert [(c.old, c.new) for c in seen] == [
        (SourceState.CLOSED, SourceState.OPENING),
        (SourceState.OPENING, SourceState.STREAMING),
        (SourceState.STREAMING, SourceState.FAILED),
        (SourceState.FAILED, SourceState.OPENING),
        (SourceState.OPENING, SourceState.STREAMING),
        (SourceState.STREAMING, SourceState.CLOSED),
    ]
    assert list(life.history) == seen
    assert all(c.source_id == "cam" for c in seen)


def test_lifecycle_survives_a_failing_listener(caplog: pytest.LogCaptureFixture) -> None:
    def broken(change: StateChange) -> None:
        raise RuntimeError("observer bug")

    life = Lifecycle("cam", listeners=(broken,))
    life.enter(SourceState.OPENING)
    assert life.state == SourceState.OPENING
    assert "state listener failed" in caplog.text
