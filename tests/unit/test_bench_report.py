"""bench/'s judging and reporting, on made-up figures (no measurement runs here): sizes given on
the command line, which goals a set of figures meets, and the ratios the report prints."""

from __future__ import annotations

import pytest

from bench import goals, report
from bench.results import FLOOR, NODE, OURS, Results
from bench.scale import key, points
from bench.settings import BACKENDS, PARTS, Settings, Sizes, override


def settings() -> Settings:
    return Settings(sizes=Sizes.quick(), quick=True, repeat=3, backends=BACKENDS, parts=PARTS)


def test_sizes_from_the_command_line() -> None:
    sizes = override(Sizes.quick(), ["drain_jobs=7_000", "backlogs=10,20,30"])
    assert (sizes.drain_jobs, sizes.backlogs) == (7000, (10, 20, 30))


@pytest.mark.parametrize(("assignment", "message"), [
    ("drains=5", "no size 'drains'"),
    ("drain_jobs=many", "drain_jobs takes whole numbers"),
    ("drain_jobs=1,2", "drain_jobs takes one number"),
    ("memory_jobs=5", "memory_jobs takes two numbers"),
])
def test_bad_sizes_are_refused_by_name(assignment: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        override(Sizes.quick(), [assignment])


def test_figures_are_medians_of_the_runs() -> None:
    results = Results()
    for drain in (900, 5000, 4100):
        results.add(OURS, "postgres", {"drain_jobs_s": drain})
    assert results.get(OURS, "postgres", "drain_jobs_s") == 4100
    assert results.get(OURS, "redis", "drain_jobs_s") is None


def headline_goal(results: Results, text: str) -> goals.Goal:
    return next(goal for goal in goals.headline(results) if goal.text == text)


def test_headline_goals_are_judged_against_the_issue() -> None:
    results = Results()
    results.add(OURS, "postgres", {"drain_jobs_s": 4200, "e2s_p50_ms": 2.6})
    assert headline_goal(results, "PostgreSQL drain >= 4,000 jobs/s").met is True
    assert headline_goal(results, "PostgreSQL enqueue -> start p50 <= 2.5 ms").met is False
    assert headline_goal(results, "Redis drain >= 6,000 jobs/s").met is None


def test_claims_count_as_flat_within_one_and_a_half_times() -> None:
    sizes = settings().sizes
    *backlogs, completed, other = points(sizes)
    results = Results()
    results.add(OURS, "sqlite", {
        key(backlogs[0], "claim_ms"): 2.0, key(backlogs[-1], "claim_ms"): 2.9,
        key(backlogs[0], "drain_jobs_s"): 3000, key(backlogs[-1], "drain_jobs_s"): 1900,
        key(completed, "claim_ms"): 3.1, key(other, "claim_ms"): 2.2,
    })
    judged = [(goal.observed, goal.met) for goal in goals.scale(results, sizes, ("sqlite",))]
    assert judged == [("1.45x", True), ("1.58x", False), ("1.55x", False), ("1.10x", True)]


def test_duplicates_and_memory_growth_miss_the_goals() -> None:
    sizes = settings().sizes
    results = Results()
    results.add(OURS, "redis", {"duplicates@1": 0, "missing@1": 0, "duplicates@2": 1,
                                "missing@2": 0, "rss_mb@first": 40, "rss_mb@last": 50})
    judged = [goal.met for goal in goals.workers(results, sizes, ("redis",))]
    assert judged == [False, False]


def test_the_report_shows_the_ratio_to_agenda() -> None:
    results = Results()
    results.add(OURS, "redis", {"drain_jobs_s": 6000, "enqueue_call_p50_ms": 0.9})
    results.add(NODE, "redis", {"drain_jobs_s": 150, "enqueue_call_p50_ms": 0.9})
    lines = report.headline(results, "redis")
    assert "| drain, jobs/s | 6,000 | 150 | 40.00 |" in lines
    assert "| enqueue call p50, ms | 0.90 | 0.90 | 1.00 |" in lines
    rendered = report.render(results, settings(), [])
    assert "| 1 | Redis drain >= 6,000 jobs/s | 6,000 jobs/s | met |" in rendered


def test_the_drivers_floor_is_a_column_of_the_latency_rows_only() -> None:
    results = Results()
    results.add(OURS, "postgres", {"drain_jobs_s": 4000, "e2s_p50_ms": 3.0})
    results.add(NODE, "postgres", {"drain_jobs_s": 400, "e2s_p50_ms": 6.0})
    results.add(FLOOR, "postgres", {"e2s_p50_ms": 1.75})
    lines = report.headline(results, "postgres")
    assert f"|  | {OURS} | {NODE} | agenda-decl / Agenda | {FLOOR} |" in lines
    assert "| drain, jobs/s | 4,000 | 400 | 10.00 | - |" in lines
    assert "| enqueue -> handler start p50, ms | 3.00 | 6.00 | 0.50 | 1.75 |" in lines
