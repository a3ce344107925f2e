"""domain.limits: which windows are full and until when a limited account rests (pure)."""

from __future__ import annotations

import pytest

from acct.base.models import Usage, UsageRecord, Window
from acct.domain.classify import Ending
from acct.domain.limits import fresh, full_windows, quota_rest

NOW = 1_800_000_000.0
COOLOFF = 900.0


def record(usage: Usage | None, fetched_at: float | None = NOW) -> UsageRecord:
    return UsageRecord("id-a", usage, fetched_at=fetched_at)


@pytest.mark.parametrize(
    ("usage", "named", "expected"),
    [
        (None, None, []),
        (Usage(Window(99.9, NOW + 60), Window(50, NOW + 600)), None, []),
        (Usage(Window(100, NOW + 60), Window(50, NOW + 600)), None, [("5-hour", NOW + 60)]),
        (
            Usage(Window(100, NOW + 60), Window(120, NOW + 600)),
            None,
            [("5-hour", NOW + 60), ("7-day", NOW + 600)],
        ),
        # A per-model cap counts only when the tool named it.
        (Usage(Window(10, None), None, (("Opus", 100.0, NOW + 9),)), None, []),
        (
            Usage(Window(10, None), None, (("Opus", 100.0, NOW + 9),)),
            "opus WEEKLY",
            [("Opus weekly", NOW + 9)],
        ),
        (Usage(Window(None, NOW), Window(100, None)), None, [("7-day", None)]),
    ],
)
def test_full_windows(
    usage: Usage | None, named: str | None, expected: list[tuple[str, float | None]]
) -> None:
    assert full_windows(usage, named) == expected


def test_room_left_everywhere_means_a_cooloff_not_a_bench_until_the_reset() -> None:
    usage = Usage(Window(27, NOW + 3600), Window(40, NOW + 86400))
    rest = quota_rest(Ending("quota", NOW + 3600, "limit", None), record(usage), NOW, COOLOFF)
    assert (rest.kind, rest.until, rest.note) == ("cooloff", NOW + COOLOFF, "usage shows 40%")


def test_the_latest_of_the_named_reset_and_the_full_windows_wins() -> None:
    usage = Usage(Window(100, NOW + 3600), Window(100, NOW + 7200))
    rest = quota_rest(Ending("quota", NOW + 1800, "limit", None), record(usage), NOW, COOLOFF)
    assert (rest.kind, rest.until, rest.label) == ("quota", NOW + 7200, "7-day")


def test_without_usage_the_tools_reset_stands_and_without_one_a_cooloff() -> None:
    named = quota_rest(Ending("quota", NOW + 500, "limit", "5-hour"), None, NOW, COOLOFF)
    assert (named.kind, named.until, named.label) == ("quota", NOW + 500, "5-hour")
    past = quota_rest(Ending("quota", NOW - 5, "limit", None), None, NOW, COOLOFF)
    assert (past.kind, past.until, past.note) == ("cooloff", NOW + COOLOFF, "no reset time given")


def test_a_record_confirms_only_when_fetched_after_the_run_began() -> None:
    usage = Usage(Window(100, NOW + 60))
    assert fresh(record(usage, NOW), NOW)
    assert not fresh(record(usage, NOW - 1), NOW)
    assert not fresh(record(None, NOW), NOW)
    assert not fresh(record(usage, None), NOW)
