"""The counting rules on made-up ledgers: each rule finds what it names, and only that."""

from __future__ import annotations

from typing import Any

from tests.faults.ledger import count

LOCK = 3.0  # seconds


def start(t: float, attempt: str, job: str, lock: float | None = None) -> dict[str, Any]:
    pid = int(attempt.split(".")[0])
    return {"t": t, "kind": "start", "attempt": attempt, "job": job, "pid": pid,
            "lock": t if lock is None else lock}


def event(t: float, kind: str, **fields: Any) -> dict[str, Any]:
    return {"t": t, "kind": kind, **fields}


def run(t: float, attempt: str, job: str, seconds: float = 0.1) -> list[dict[str, Any]]:
    """A healthy attempt: start, return, success."""
    return [start(t, attempt, job), event(t + seconds, "return", attempt=attempt),
            event(t + seconds + 0.01, "success", attempt=attempt)]


def test_healthy_runs_find_nothing() -> None:
    found = count([*run(0, "1.1", "a"), *run(0, "2.1", "b")], ["a", "b"], LOCK).summary()
    assert {k: v for k, v in found.items() if v not in (0, None, {})} == {"jobs": 2}


def test_a_killed_run_restarted_after_its_lease_is_explained_and_timed() -> None:
    events = [start(0, "1.1", "a"), event(1.0, "kill", pid=1), *run(3.5, "2.1", "a")]
    found = count(events, ["a"], LOCK)
    assert found.started_more_than_once == ["a"]
    assert found.kill_restart == [2.5]
    assert not (found.unexplained_restarts or found.lease_overlaps or found.lost
                or found.never_finished or found.completed_reruns)


def test_a_start_within_the_lease_of_a_live_run_is_a_lease_overlap() -> None:
    events = [start(0, "1.1", "a"), *run(2.0, "2.1", "a"), event(5.0, "return", attempt="1.1")]
    found = count(events, ["a"], LOCK)
    assert found.lease_overlaps == ["a"] and found.handler_overlaps == ["a"]


def test_a_run_past_its_lease_taken_over_is_two_handlers_not_two_holders() -> None:
    events = [start(0, "1.1", "a"), start(3.2, "2.1", "a"), event(6.0, "return", attempt="1.1"),
              event(6.01, "lost", attempt="1.1"), event(3.3, "return", attempt="2.1"),
              event(3.31, "success", attempt="2.1")]
    found = count(events, ["a"], LOCK)
    assert found.handler_overlaps == ["a"] and found.lost_locks == ["a"]
    assert not (found.lease_overlaps or found.unexplained_restarts or found.completed_reruns
                or found.lost)


def test_touch_extends_the_lease() -> None:
    events = [start(0, "1.1", "a"), event(2.0, "touch", attempt="1.1", lock=2.0),
              start(4.0, "2.1", "a")]
    assert count(events, ["a"], LOCK).lease_overlaps == ["a"]


def test_a_completed_job_that_runs_again_is_a_completed_rerun_without_a_cause() -> None:
    found = count([*run(0, "1.1", "a"), *run(5, "2.1", "a")], ["a"], LOCK)
    assert found.completed_reruns == ["a"] and found.unexplained_restarts == ["a"]


def test_a_job_never_completed_is_lost_and_a_run_without_return_never_finished() -> None:
    found = count([start(0, "1.1", "a")], ["a", "b"], LOCK)
    assert found.lost == ["a", "b"] and found.never_finished == ["1.1"]


def test_a_fenced_out_end_is_not_a_completion() -> None:
    events = [*run(0, "1.1", "a"), event(0.2, "lost", attempt="1.1")]
    assert count(events, ["a"], LOCK).lost == ["a"]


def test_an_end_not_stored_explains_the_next_run_and_the_store_can_tell_completion() -> None:
    events = [start(0, "1.1", "a"), event(0.1, "stop", pid=1, running=["1.1"]),
              event(1.0, "return", attempt="1.1"), event(1.01, "unstored", attempt="1.1"),
              *run(3.5, "2.1", "a"), start(0, "3.1", "b"), event(0.1, "return", attempt="3.1")]
    found = count(events, ["a", "b"], LOCK, stored={"b"})
    assert found.unstored == ["a"] and found.running_at_stop == ["a"]
    assert not (found.unexplained_restarts or found.completed_reruns or found.lost)


def test_a_kill_between_return_and_success_explains_the_next_run() -> None:
    events = [start(0, "1.1", "a"), event(0.2, "return", attempt="1.1"),
              event(0.25, "kill", pid=1), *run(3.5, "2.1", "a")]
    found = count(events, ["a"], LOCK)
    assert found.started_more_than_once == ["a"] and not found.unexplained_restarts
    assert found.kill_restart == []  # not killed while running
