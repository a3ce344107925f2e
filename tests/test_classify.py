"""How a run ended, from the tools' real wordings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from acct.base.config import TargetConfig
from acct.domain.classify import classify, parse_reset
from acct.services.targets import get_target

# Tue 2026-11-24 15:00:00 UTC
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC).timestamp()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


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


# The rest of what Claude Code 2.1.197 prints when the unified limit rejects a request (its
# rate-limit message builder, read in the shipped binary): each one ends the run for this account.
CASES += [
    (
        "Fable 5 limit (a digit in the label)",
        CC,
        1,
        "You've hit your Fable 5 limit · resets Nov 28, 1am (UTC)",
        "quota",
        utc(2026, 11, 28, 1, 0),
        "Fable 5 weekly",
    ),
    (
        "org's monthly spend limit",
        CC,
        1,
        "You've hit your org's monthly spend limit · ask your admin to raise it at claude.ai/settings/usage",
        "quota",
        None,
        "monthly spend",
    ),
    (
        "monthly spend limit",
        CC,
        1,
        "You've hit your monthly spend limit · raise it at claude.ai/settings/usage",
        "quota",
        None,
        "monthly spend",
    ),
    (
        "org's monthly usage limit",
        CC,
        1,
        "You've hit your org's monthly usage limit · resets Dec 1, 12am (UTC)",
        "quota",
        utc(2026, 12, 1, 0, 0),
        "monthly usage",
    ),
    (
        "out of usage credits",
        CC,
        1,
        "You're out of usage credits · resets 9pm (UTC)",
        "quota",
        utc(2026, 11, 24, 21, 0),
        "usage credit",
    ),
    (
        "usage limit, ask the admin",
        CC,
        1,
        "You've hit your usage limit · contact your admin to increase it",
        "quota",
        None,
        None,
    ),
    (
        "org out of usage",
        CC,
        1,
        "Your org is out of usage · add funds to continue",
        "quota",
        None,
        None,
    ),
    ("out of extra usage", CC, 1, "You're out of extra usage", "quota", None, "extra usage"),
    (
        "seat without usage credits",
        CC,
        1,
        "Your seat type doesn't include usage credits",
        "quota",
        None,
        None,
    ),
    (
        "allocation disabled",
        CC,
        1,
        "Your usage allocation has been disabled by your admin · run /usage-credits to ask your admin for a higher limit",  # noqa: E501
        "quota",
        None,
        None,
    ),
    (
        "group limit $0",
        CC,
        1,
        "Your group's usage limit is set to $0 · run /usage-credits to ask your admin for a higher limit",
        "quota",
        None,
        None,
    ),
    ("service disabled", CC, 1, "This service is disabled for your org", "quota", None, None),
    (
        "typographic apostrophe",
        CC,
        1,
        "You’ve hit your weekly limit · resets Nov 26, 8:12am (UTC)",
        "quota",
        utc(2026, 11, 26, 8, 12),
        "7-day",
    ),
    # Warnings and the fast-mode cooldown: the run goes on, they are no ending.
    (
        "a warning is not a limit",
        CC,
        1,
        "You've used 91% of your session limit · resets 3pm (UTC)",
        "other",
        None,
        None,
    ),
    ("close to the limit", CC, 1, "You're close to your usage credit limit", "other", None, None),
    (
        "now on usage credits",
        CC,
        1,
        "You're now using usage credits · Your session limit resets 3pm (UTC)",
        "other",
        None,
        None,
    ),
    ("fast-mode cooldown", CC, 1, "You've hit your fast limit · resets in 5m", "other", None, None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_classify_table(
    case: tuple[str, str, int, str, str, float | None, str | None],
) -> None:
    _, target, status, tail, kind, reset_at, window = case
    ending = classify(get_target(target), status, tail, NOW)
    assert ending.kind == kind
    assert ending.reset_at == (pytest.approx(reset_at) if reset_at is not None else None)
    assert ending.window == window


def test_the_newest_line_decides() -> None:
    tail = "You've hit your session limit · resets 9:20am (UTC)\nworking...\nYou've hit your weekly limit · resets Nov 30, 2pm (UTC)"  # noqa: E501
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


# --- stream-json: the result decides; paid extra usage is no limit ----------------------------


def event(**info: object) -> str:
    """A ``rate_limit_event``: rejected, for the 5-hour window, resetting in an hour, unless told."""
    body = {"status": "rejected", "resetsAt": int(NOW) + 3600, "rateLimitType": "five_hour", **info}
    return json.dumps({"type": "rate_limit_event", "rate_limit_info": body})


def result(is_error: bool = True, status: int | None = None, text: str = "", **more: object) -> str:
    doc = {"type": "result", "is_error": is_error, "result": text, **more}
    if status is not None:
        doc["api_error_status"] = status
    return json.dumps(doc)


OVERAGE = {"overageStatus": "allowed", "isUsingOverage": True}


@pytest.mark.parametrize(
    ("lines", "kind"),
    [
        # Extra usage took the request, then the run failed on max turns.
        ([event(**OVERAGE), result(subtype="error_max_turns", text="max turns")], "other"),
        # Even a plain rejection is not how a run ended that then failed for another reason.
        ([event(), result(subtype="error_max_turns", text="max turns")], "other"),
        ([event(), result(subtype="error_during_execution", text="boom")], "other"),
        ([event(), result(is_error=False, subtype="success", text="done")], "other"),
        # Overage in use, in either of the shapes Claude Code sends it: no limit.
        ([event(**OVERAGE)], "other"),
        ([event(isUsingOverage=True)], "other"),
        ([event(overageStatus="allowed_warning")], "other"),
        ([event(status="allowed_warning")], "other"),
        # A rejection extra usage did not take over (overage rejected or not offered).
        ([event()], "quota"),
        ([event(overageStatus="rejected", overageDisabledReason="out_of_credits")], "quota"),
        ([event(**OVERAGE), result(status=429, text="You've hit your session limit")], "quota"),
        ([event(), result(status=429, text="API Error: (not your usage limit) · x")], "throttle"),
        ([event(), result(status=401, text="Invalid bearer token")], "auth"),
        # An error result without a status is read with the target's patterns.
        ([result(text="You've hit your org's monthly spend limit")], "quota"),
        ([result(text="Not logged in · Please run /login")], "auth"),
        # The newest result decides (a run that resumed inside the same tail).
        ([result(status=429, text="You've hit your limit"), result(text="max turns")], "other"),
    ],
)
def test_stream_json_endings(lines: list[str], kind: str) -> None:
    tail = "\n".join(['{"type":"system","subtype":"init"}', *lines, ""])
    assert classify(get_target(CC), 1, tail, NOW).kind == kind


def test_the_result_borrows_the_exact_reset_of_a_rejection_only() -> None:
    reset = int(NOW) + 1234
    rejected = event(resetsAt=reset, rateLimitType="seven_day_overage_included")
    ending = classify(
        get_target(CC), 1, f"{rejected}\n{result(status=429, text='You hit it')}", NOW
    )
    assert (ending.kind, ending.reset_at, ending.window) == ("quota", reset, "Fable 5 weekly")
    paid = event(resetsAt=reset, **OVERAGE)
    text = "You've hit your session limit · resets 4pm (UTC)"
    ending = classify(get_target(CC), 1, f"{paid}\n{result(status=429, text=text)}", NOW)
    assert ending.reset_at == utc(2026, 11, 24, 16, 0)


# --- reset times: years, zones, local time ----------------------------------------------------

BERLIN, NEW_YORK, TOKYO = (
    ZoneInfo("Europe/Berlin"),
    ZoneInfo("America/New_York"),
    ZoneInfo("Asia/Tokyo"),
)


def at(zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=zone).timestamp()


@pytest.mark.parametrize(
    ("text", "now", "local", "expected"),
    [
        # The year Claude Code adds when the reset is in another year, with its zone.
        ("resets Jan 2, 2027, 10am (Europe/Berlin)", NOW, None, utc(2027, 1, 2, 9, 0)),
        ("resets Jan 2, 2027, 10:30pm (America/New_York)", NOW, None, utc(2027, 1, 3, 3, 30)),
        ("resets Jan 2, 2027, 10am (UTC)", NOW, None, utc(2027, 1, 2, 10, 0)),
        # A year in the past is taken as written (no guessing over it).
        ("resets Nov 20, 2026, 10am (UTC)", NOW, None, utc(2026, 11, 20, 10, 0)),
        # New year's eve, 23:50 in the zone printed: "12:10am" and "Jan 1, 12:10am" are 20 min on.
        (
            "resets 12:10am (Asia/Tokyo)",
            at(TOKYO, 2026, 12, 31, 23, 50),
            None,
            at(TOKYO, 2027, 1, 1, 0, 10),
        ),
        (
            "resets Jan 1, 12:10am (Asia/Tokyo)",
            at(TOKYO, 2026, 12, 31, 23, 50),
            None,
            at(TOKYO, 2027, 1, 1, 0, 10),
        ),
        (
            "resets Jan 1, 2027, 12:10am (UTC)",
            utc(2026, 12, 31, 23, 50),
            None,
            utc(2027, 1, 1, 0, 10),
        ),
        # ... and read just after midnight, "Dec 31, 11:55pm" is the reset that just passed.
        ("resets Dec 31, 11:55pm (UTC)", utc(2027, 1, 1, 0, 5), None, utc(2026, 12, 31, 23, 55)),
        # Without a zone the time is local: the zone Claude Code prints in.
        ("resets 9:20am", NOW, NEW_YORK, at(NEW_YORK, 2026, 11, 25, 9, 20)),
        ("resets 11pm", NOW, TOKYO, at(TOKYO, 2026, 11, 25, 23, 0)),  # NOW is 0:00 there
        ("resets Jan 2, 2027, 10am", NOW, BERLIN, utc(2027, 1, 2, 9, 0)),
        (
            "resets Jan 1, 12:10am",
            at(NEW_YORK, 2026, 12, 31, 23, 50),
            NEW_YORK,
            at(NEW_YORK, 2027, 1, 1, 0, 10),
        ),
        # A zone in the text wins over the local one.
        ("resets 9:20am (UTC)", NOW, TOKYO, utc(2026, 11, 25, 9, 20)),
        # Daylight saving: the wall-clock time in the zone, on the day of the reset.
        (
            "resets Mar 30, 9am (Europe/Berlin)",
            utc(2027, 3, 27, 12, 0),
            None,
            utc(2027, 3, 30, 7, 0),
        ),
        # ICU puts a narrow no-break space before AM/PM.
        ("resets 9:20\u202fAM (UTC)", NOW, None, utc(2026, 11, 25, 9, 20)),
        ("resets Feb 30, 2027, 1am (UTC)", NOW, None, None),
        ("resets Feb 29, 2028, 1am (UTC)", NOW, None, utc(2028, 2, 29, 1, 0)),
    ],
)
def test_parse_reset_years_and_zones(
    text: str, now: float, local: ZoneInfo | None, expected: float | None
) -> None:
    assert parse_reset(text, now, local=local) == expected


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/New_York", "UTC"])
def test_a_time_without_a_zone_is_this_machines_local_time(zone: str) -> None:
    """The default reads the system's local time (a child with TZ set: nothing patched)."""
    code = (
        "import sys; from acct.domain.classify import parse_reset; "
        "print(parse_reset(sys.argv[1], float(sys.argv[2])))"
    )
    env = {**os.environ, "TZ": zone}
    out = subprocess.run(
        [sys.executable, "-c", code, "resets Jan 2, 2027, 10am", str(NOW)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert float(out) == at(ZoneInfo(zone), 2027, 1, 2, 10, 0)


# --- the newest releases (Claude Code 2.1.332, Pi 1.6.0 and 0.73.1, OpenCode 1.18.33) ----------

PI_REFRESH_400 = (
    "OAuth refresh failed for anthropic: Anthropic token refresh request failed. "
    "url=https://platform.claude.com/v1/oauth/token; details=Error: HTTP request failed. "
    "status=400\n    at refreshAnthropicToken (file:///pi/dist/auth/oauth/anthropic.js:88:15)\n"
    "    at async OAuthCredentialStore.refresh (file:///pi/dist/auth/store.js:41:9)"
)
DEAD_LOGINS = [
    (
        "cc 2.1.332 session expired",
        CC,
        "Failed to authenticate: OAuth session expired and could not be refreshed",
    ),
    (
        "cc 2.1.332 time limit",
        CC,
        "Failed to authenticate: this login reached its time limit and cannot be renewed",
    ),
    ("cc token revoked", CC, "OAuth token revoked · Please run /login"),
    ("cc login expired", CC, "Login expired · Please run /login"),
    ("pi 1.6.0 refresh 400 and its stack", PI, PI_REFRESH_400),
    ("pi 0.73.1 no key left", PI, "No API key for provider: anthropic"),
    ("opencode plugin refresh 400", OC, "Error: Token refresh failed: 400"),
]


@pytest.mark.parametrize(
    ("target", "tail"), [c[1:] for c in DEAD_LOGINS], ids=[c[0] for c in DEAD_LOGINS]
)
def test_a_dead_login_in_the_newest_wordings_needs_a_login_not_a_rest(
    target: str, tail: str
) -> None:
    ending = classify(get_target(target), 1, tail, NOW)
    assert ending.kind == "login", ending
    assert ending.message in tail


def test_a_dead_login_in_claude_codes_json_result_needs_a_login() -> None:
    doc = {
        "type": "result",
        "is_error": True,
        "result": "Failed to authenticate: OAuth session expired and could not be refreshed",
    }
    assert classify(get_target(CC), 1, json.dumps(doc), NOW).kind == "login"


@pytest.mark.parametrize(
    ("tail", "window", "reset_at"),
    [
        (
            "You've reached your session limit · resets 9:20am (UTC)",
            "5-hour",
            utc(2026, 11, 25, 9, 20),
        ),
        (
            "You’ve reached your weekly limit · resets Nov 26, 8:12am (UTC)",
            "7-day",
            utc(2026, 11, 26, 8, 12),
        ),
        ("Opus 5 requires usage credits. Run /usage-credits to buy more", None, None),
        ("claude-opus-5 requires usage credits.", None, None),
    ],
)
def test_claude_code_2_1_332_quota_prefixes(
    tail: str, window: str | None, reset_at: float | None
) -> None:
    ending = classify(get_target(CC), 1, tail, NOW)
    assert (ending.kind, ending.window) == ("quota", window)
    assert ending.reset_at == (pytest.approx(reset_at) if reset_at is not None else None)


def test_words_near_the_new_prefixes_are_no_limit() -> None:
    for tail in (
        "You've reached your fast limit · resets in 5m",
        "the tests show this module requires usage credits. to be enabled",
        "You've reached the end of the file",
    ):
        assert classify(get_target(CC), 1, tail, NOW).kind == "other", tail


def test_login_patterns_extend_from_the_config() -> None:
    extra = TargetConfig(login_patterns=(r"session is gone",))
    assert classify(get_target(PI), 1, "session is gone", NOW).kind == "other"
    assert classify(get_target(PI), 1, "session is gone", NOW, extra=extra).kind == "login"


def test_claude_code_2_1_332_names_the_window_5_hour() -> None:
    ending = classify(get_target(CC), 1, "You've hit your 5-hour limit · resets 9:51am (UTC)", NOW)
    assert (ending.kind, ending.window) == ("quota", "5-hour")
    assert ending.reset_at == pytest.approx(utc(2026, 11, 25, 9, 51))
