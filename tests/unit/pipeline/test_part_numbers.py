"""The admitted part-number mark (issue 16): survives a process kill, keeps a durable ceiling ahead,
and the restart plan for a kill, a clean stop and a power cut."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from vinspect.pipeline.decide import DecisionPolicy
from vinspect.pipeline.part_numbers import (
    CRASH_REASON,
    MarkState,
    PartNumbers,
    boot_id,
    crash_inspections,
    mark_path,
    plan_restart,
    read_mark,
)
from vinspect.types import Verdict


def test_admit_is_visible_in_the_file_before_close(tmp_path: Path) -> None:
    path = tmp_path / "m.mark"
    numbers = PartNumbers(path, start=7, block=16, boot="boot-a")
    try:
        numbers.admit(7)
        numbers.admit(8)
        mark = read_mark(path)
        assert mark == MarkState(boot_id="boot-a", run_first=7, next=9, reserved_to=23, clean=False)
    finally:
        numbers.close()
    closed = read_mark(path)
    assert closed is not None and closed.clean and closed.next == 9


def test_the_mark_survives_a_process_kill(tmp_path: Path) -> None:
    path = tmp_path / "m.mark"
    code = (
        "import os, sys; from pathlib import Path; from vinspect.pipeline.part_numbers import PartNumbers\n"
        "n = PartNumbers(Path(sys.argv[1]), start=100, block=64)\n"
        "[n.admit(s) for s in range(100, 250)]\n"
        "os._exit(137)\n"
    )  # no close, no flush, no finally: as after SIGKILL
    done = subprocess.run([sys.executable, "-c", code, str(path)], timeout=60)
    assert done.returncode == 137
    mark = read_mark(path)
    assert mark is not None and mark.next == 250 and not mark.clean and mark.boot_id == boot_id()
    assert mark.reserved_to >= 250  # the helper thread kept the durable ceiling ahead of the numbers


def test_the_reservation_moves_ahead_in_blocks(tmp_path: Path) -> None:
    path = tmp_path / "m.mark"
    with PartNumbers(path, start=0, block=16) as numbers:
        for seq in range(9):  # past half of the first block
            numbers.admit(seq)
        deadline = time.monotonic() + 5
        while (m := read_mark(path)) is not None and m.reserved_to < 32 and time.monotonic() < deadline:
            time.sleep(0.01)
        mark = read_mark(path)
        assert mark is not None and mark.reserved_to >= 9 + 16
        assert numbers.beyond_reservation == 0


def test_a_file_that_is_not_a_mark_is_refused_by_name(tmp_path: Path) -> None:
    path = mark_path(tmp_path, "line 1/st")
    assert path.parent == tmp_path and "/" not in path.name
    assert read_mark(path) is None
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=str(path.name)):
        read_mark(path)


def _mark(
    *, boot: str = "b1", run_first: int = 10, nxt: int = 20, reserved: int = 1034, clean: bool = False
) -> MarkState:
    return MarkState(boot_id=boot, run_first=run_first, next=nxt, reserved_to=reserved, clean=clean)


def test_plan_after_a_kill_is_exact() -> None:
    plan = plan_restart(_mark(), recorded_next=15, current_boot="b1")
    assert (plan.scan_from, plan.known_next, plan.start, plan.exact, plan.skipped) == (10, 20, 20, True, None)


def test_plan_after_a_clean_stop_on_another_boot_is_exact() -> None:
    plan = plan_restart(_mark(clean=True), recorded_next=20, current_boot="b2")
    assert plan.start == 20 and plan.skipped is None


def test_plan_after_a_power_cut_skips_to_the_durable_ceiling() -> None:
    plan = plan_restart(_mark(nxt=12), recorded_next=18, current_boot="b2")
    # records up to 17 prove 12..17 were handed out; 18..1033 may have been: skipped, never reused
    assert (plan.scan_from, plan.known_next, plan.start, plan.exact, plan.skipped) == (10, 18, 1034, False, (18, 1034))


def test_plan_with_an_unknown_boot_id_trusts_only_the_ceiling() -> None:
    plan = plan_restart(_mark(boot=""), recorded_next=20, current_boot="")
    assert not plan.exact and plan.start == 1034


def test_plan_without_a_mark_continues_from_the_records() -> None:
    plan = plan_restart(None, recorded_next=42, current_boot="b1")
    assert (plan.scan_from, plan.known_next, plan.start, plan.skipped) == (42, 42, 42, None)


def test_crash_records_are_faults_never_a_pass() -> None:
    policy = DecisionPolicy(fail_at=0.6, review_at=0.5, policy_id="p")
    records = crash_inspections("t1", [3, 5], policy=policy)
    assert [r.part_seq for r in records] == [3, 5]
    assert all(r.decision.verdict is Verdict.FAIL and r.decision.reasons == (CRASH_REASON,) for r in records)
    assert all(r.error and "crash" in r.error and r.frame is None for r in records)
    assert len({r.inspection_id for r in records}) == 2
