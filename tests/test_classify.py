"""How a run ended, from the tools' real wordings (FACTS §4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from acct.classify import classify, parse_reset
from acct.config import TargetConfig
from acct.targets import get_target

# Tue 2026-11-24 15:00:00 UTC
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC).timestamp()


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


CC, OC, PI = "claude-code", "opencode", "pi"
STREAM = json.dumps(
    {
        "type": "rate_limit_event",
        "rate_limit_info": {
            "status": "rejected",
            "resetsAt": 1795540000,
            "rateLimitType": "seven_day",
        },
    }
)
RESULT = json.dumps(
    {
        "type": "result",
        "is_error": True,
        "api_error_status": 429,
        "result": "You've hit your limit · resets 9:20am (UTC)",
    }
)

CASES = [
    # (id, target, status, tail, kind, reset_at, window)
    (
        "exit 0 wins over any text",
        CC,
        0,
        "You've hit your session limit · resets 9:20am (UTC)",
        "ok",
        None,
        None,
    ),
    (
        "session limit",
        CC,
        1,
        "You've hit your session limit · resets 9:20am (UTC)",
        "quota",
        utc(2026, 11, 25, 9, 20),
        "5-hour",
    ),
    (
        "later today",
        CC,
        1,
        "You've hit your session limit · resets 6:05pm (UTC)",
        "quota",
        utc(2026, 11, 24, 18, 5),
        "5-hour",
    ),
    (
        "plain limit",
        CC,
        1,
        "You've hit your limit · resets 4pm (UTC)",
        "quota",
        utc(2026, 11, 24, 16, 0),
        None,
    ),
    (
        "weekly, with a date",
        CC,
        1,
        "You've hit your weekly limit · resets Nov 26, 8:12am (UTC)",
        "quota",
        utc(2026, 11, 26, 8, 12),
        "7-day",
    ),
    (
        "Opus limit",
        CC,
        1,
        "You've hit your Opus limit · resets Nov 28, 1am (UTC)",
        "quota",
        utc(2026, 11, 28, 1, 0),
        "Opus weekly",
    ),
    ("Sonnet limit", CC, 1, "You've hit your Sonnet limit", "quota", None, "Sonnet weekly"),
    (
        "usage credit limit",
        CC,
        1,
        "You've hit your usage credit limit",
        "quota",
        None,
        "usage credit",
    ),
    (
        "usage limit",
        CC,
        1,
        "You've hit your usage limit · resets 9:20am (UTC)",
        "quota",
        utc(2026, 11, 25, 9, 20),
        None,
    ),
    (
        "IANA zone",
        CC,
        1,
        "You've hit your session limit · resets 9:20am (Europe/Berlin)",
        "quota",
        datetime(2026, 11, 25, 9, 20, tzinfo=ZoneInfo("Europe/Berlin")).timestamp(),
        "5-hour",
    ),
    (
        "legacy epoch",
        CC,
        1,
        "Claude AI usage limit reached|1795600000",
        "quota",
        1795600000.0,
        None,
    ),
    (
        "legacy epoch ms",
        CC,
        1,
        "Claude AI usage limit reached|1795600000000",
        "quota",
        1795600000.0,
        None,
    ),
    (
        "stream-json event",
        CC,
        1,
        f'{{"type":"system"}}\n{STREAM}\n',
        "quota",
        1795540000.0,
        "7-day",
    ),
    ("json result", CC, 1, RESULT, "quota", utc(2026, 11, 25, 9, 20), None),
    (
        "throttle is not a quota",
        CC,
        1,
        "API Error: Server is temporarily limiting requests (not your usage limit) · Rate limited",
        "throttle",
        None,
        None,
    ),
    (
        "json throttle",
        CC,
        1,
        json.dumps(
            {
                "type": "result",
                "is_error": True,
                "api_error_status": 429,
                "result": "API Error: Server is temporarily limiting requests (not your usage limit) · x",
            }
        ),
        "throttle",
        None,
        None,
    ),
    ("not logged in", CC, 1, "Not logged in · Please run /login", "auth", None, None),
    ("other failure", CC, 1, "Error: ENOSPC: no space left on device", "other", None, None),
    ("killed by a signal", CC, 143, "", "other", None, None),
    (
        "opencode quota",
        OC,
        1,
        "Error: This request would exceed your account's rate limit. Please try again later.",
        "quota",
        None,
        None,
    ),
    ("opencode auth", OC, 1, "Error: Invalid bearer token", "auth", None, None),
    (
        "pi quota",
        PI,
        1,
        '429 {"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed"}}',
        "quota",
        None,
        None,
    ),
    (
        "pi auth",
        PI,
        1,
        '401 {"type":"error","error":{"type":"authentication_error"}}',
        "auth",
        None,
        None,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_classify_table(case) -> None:
    _, target, status, tail, kind, reset_at, window = case
    ending = classify(get_target(target), status, tail, NOW)
    assert ending.kind == kind
    assert ending.reset_at == (pytest.approx(reset_at) if reset_at is not None else None)
    assert ending.window == window


def test_the_newest_line_decides() -> None:
    tail = "You've hit your session limit · resets 9:20am (UTC)\nworking...\nYou've hit your weekly limit · resets Nov 30, 2pm (UTC)"
    ending = classify(get_target(CC), 1, tail, NOW)
    assert ending.window == "7-day" and ending.reset_at == utc(2026, 11, 30, 14, 0)


def test_stream_event_lends_its_exact_reset_to_the_result() -> None:
    event = json.dumps(
        {
            "type": "rate_limit_event",
            "rate_limit_info": {
                "status": "rejected",
                "resetsAt": NOW + 3,
                "rateLimitType": "five_hour",
            },
        }
    )
    result = json.dumps(
        {
            "type": "result",
            "is_error": True,
            "api_error_status": 429,
            "result": "You've hit your session limit · resets 3pm (UTC)",
        }
    )
    ending = classify(get_target(CC), 1, f"{event}\n{result}\n", NOW)
    assert ending.kind == "quota" and ending.reset_at == NOW + 3 and ending.window == "5-hour"


def test_config_extras_add_patterns() -> None:
    extra = TargetConfig(quota_patterns=(r"plan exhausted",), auth_patterns=(r"who are you",))
    assert classify(get_target(PI), 1, "plan exhausted", NOW).kind == "other"
    assert classify(get_target(PI), 1, "plan exhausted", NOW, extra=extra).kind == "quota"
    assert classify(get_target(PI), 1, "who are you", NOW, extra=extra).kind == "auth"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("resets 3:00pm (UTC)", NOW),  # to the minute: this very reset, not tomorrow's
        ("resets 2:59pm (UTC)", utc(2026, 11, 24, 14, 59)),
        ("resets 2:57pm (UTC)", utc(2026, 11, 25, 14, 57)),
        ("resets 12am (UTC)", utc(2026, 11, 25, 0, 0)),
        ("resets 12:30pm (UTC)", utc(2026, 11, 25, 12, 30)),
        ("resets Jan 2, 10am (UTC)", utc(2027, 1, 2, 10, 0)),  # after the new year
        ("resets Nov 24, 2:30pm (UTC)", utc(2026, 11, 24, 14, 30)),  # a moment ago: this year's
        ("resets 9:20am (Mars/Olympus)", None),
        ("resets 13pm (UTC)", None),
        ("no reset here", None),
    ],
)
def test_parse_reset(text: str, expected: float | None) -> None:
    assert parse_reset(text, NOW) == expected
