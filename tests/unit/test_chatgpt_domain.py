"""ChatGPT documents and the Codex CLI's words, read without I/O (acct.domain.chatgpt)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from acct.domain.chatgpt import (
    AUTH_CLAIM,
    PATTERNS,
    codex_reset_at,
    parse_codex_headers,
    parse_id_claims,
    parse_limit_body,
    parse_wham_usage,
    window_label,
)
from acct.domain.classify import Patterns, classify

NOW = 1_800_000_000.0


def jwt(claims: dict[str, Any]) -> str:
    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def test_id_token_claims_give_account_plan_and_email() -> None:
    token = jwt(
        {
            "email": "me@example.com",
            "exp": 1_800_003_600,
            AUTH_CLAIM: {
                "chatgpt_account_id": "acc-1",
                "chatgpt_plan_type": "pro",
                "chatgpt_user_id": "user-9",
            },
        }
    )
    c = parse_id_claims(token)
    assert (c.account_id, c.plan_type, c.email, c.user_id) == (
        "acc-1",
        "pro",
        "me@example.com",
        "user-9",
    )
    assert c.expires_at == 1_800_003_600


@pytest.mark.parametrize("token", [None, "", "not-a-jwt", "a.!!!.c", "a.bnVsbA.c", "a..c"])
def test_an_id_token_that_does_not_decode_gives_empty_claims(token: str | None) -> None:
    assert parse_id_claims(token).account_id is None


def test_claims_of_the_wrong_type_are_ignored() -> None:
    c = parse_id_claims(jwt({"email": 5, AUTH_CLAIM: {"chatgpt_account_id": ["x"]}}))
    assert c.email is None and c.account_id is None


@pytest.mark.parametrize(
    ("seconds", "label"),
    [(18000, "5-hour"), (604800, "7-day"), (86400, "1-day"), (2700, "45-minute"), (None, "window")],
)
def test_windows_are_labelled_by_their_real_length(seconds: int | None, label: str) -> None:
    assert window_label(seconds) == label


def wham(primary: dict[str, Any] | None, secondary: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "plan_type": "plus",
        "rate_limit": {
            "allowed": True,
            "limit_reached": False,
            "primary_window": primary,
            "secondary_window": secondary,
        },
        "credits": {"has_credits": False, "unlimited": False, "balance": None},
        "rate_limit_reached_type": None,
    }


def test_wham_usage_maps_primary_and_secondary_to_the_two_columns() -> None:
    doc = wham(
        {
            "used_percent": 42,
            "limit_window_seconds": 18000,
            "reset_after_seconds": 100,
            "reset_at": 1_800_000_100,
        },
        {"used_percent": 7.5, "limit_window_seconds": 604800, "reset_at": 1_800_500_000},
    )
    got = parse_wham_usage(doc, NOW)
    assert got.usage.five_hour is not None and got.usage.five_hour.utilization == 42.0
    assert got.usage.five_hour.resets_at == 1_800_000_100
    assert got.usage.seven_day is not None and got.usage.seven_day.utilization == 7.5
    assert got.labels == {"five_hour": "5-hour", "seven_day": "7-day"}
    assert got.usage.peak == 42.0 and got.plan_type == "plus" and got.limit_reached is False


def test_a_window_of_another_length_is_not_called_five_hour() -> None:
    doc = wham({"used_percent": 3, "limit_window_seconds": 10800, "reset_after_seconds": 60}, None)
    got = parse_wham_usage(doc, NOW)
    assert got.labels == {"five_hour": "3-hour"}
    assert got.usage.five_hour is not None and got.usage.five_hour.resets_at == NOW + 60
    assert got.usage.seven_day is None
    daily = parse_wham_usage(wham(None, {"used_percent": 1, "limit_window_seconds": 86400}), NOW)
    assert daily.labels == {"seven_day": "1-day"}


def test_wham_usage_of_another_shape_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_wham_usage([], NOW)
    with pytest.raises(ValueError):
        parse_wham_usage({"rate_limit": "x"}, NOW)


def test_codex_headers_give_live_usage() -> None:
    headers = {
        "X-Codex-Primary-Used-Percent": "81.5",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": "1800003600",
        "x-codex-secondary-used-percent": "12",
        "x-codex-secondary-window-minutes": "10080",
        "x-codex-secondary-reset-at": "1800500000",
    }
    got = parse_codex_headers(headers)
    assert got is not None and got.usage.five_hour is not None
    assert (got.usage.five_hour.utilization, got.usage.five_hour.resets_at) == (81.5, 1800003600)
    assert got.labels == {"five_hour": "5-hour", "seven_day": "7-day"}


def test_no_codex_headers_or_garbage_give_nothing() -> None:
    assert parse_codex_headers({"content-type": "text/event-stream"}) is None
    assert parse_codex_headers({"x-codex-primary-used-percent": "nan?"}) is None


def test_the_limit_body_gives_the_reset() -> None:
    body = {
        "error": {
            "type": "usage_limit_reached",
            "message": "The usage limit has been reached",
            "plan_type": "plus",
            "resets_at": 1_800_007_200,
            "resets_in_seconds": 7200,
        }
    }
    got = parse_limit_body(body, NOW)
    assert got is not None and got.resets_at == 1_800_007_200 and got.plan_type == "plus"
    only_in = {"error": {"type": "usage_limit_reached", "resets_in_seconds": 60}}
    assert parse_limit_body(only_in, NOW).resets_at == NOW + 60  # type: ignore[union-attr]


def test_a_throttle_429_is_not_a_limit() -> None:
    assert parse_limit_body({"error": {"type": "rate_limit_exceeded"}}, NOW) is None
    assert parse_limit_body("Too Many Requests", NOW) is None


@dataclass
class Codex:
    patterns: Patterns = PATTERNS


# Lines as `codex exec` 0.171.0 printed them against the fake (docs/codex.md).
LIMIT = (
    "ERROR: You\u2019ve hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro),"
    " visit https://chatgpt.com/settings/usage to purchase more credits or try again at"
    " 9:39 AM."
)
LIMIT_JSON = json.dumps(
    {"type": "turn.failed", "error": {"message": LIMIT[7:]}}, ensure_ascii=False
)
THROTTLE = "ERROR: exceeded retry limit, last status: 429 Too Many Requests"
DEAD = (
    "ERROR: Your access token could not be refreshed because your refresh token was already"
    " used. Please log out and sign in again."
)


@pytest.mark.parametrize(
    ("tail", "kind"),
    [
        (LIMIT, "quota"),
        (LIMIT_JSON, "quota"),
        (THROTTLE, "throttle"),
        (DEAD, "login"),
        ("ERROR: Your workspace is out of credits. Add credits to continue.", "quota"),
        ("ERROR: something else broke", "other"),
        (
            "ERROR: Your access token could not be refreshed because you have since logged out"
            " or signed in to another account. Please sign in again.",
            "auth",
        ),
    ],
)
def test_codex_endings_classify_by_their_words(tail: str, kind: str) -> None:
    assert classify(Codex(), 1, "OpenAI Codex v0.171.0\n" + tail, NOW).kind == kind


def test_codex_dead_refresh_token_is_a_dead_login_not_a_passing_refusal() -> None:
    # Codex leaves its file as it was on a spent lineage (it does not blank it): these words
    # are the only sign that the account needs a new login.
    for reason in ("was already used", "was revoked", "has expired"):
        text = DEAD.replace("was already used", reason)
        assert classify(Codex(), 1, text, NOW).kind == "login", reason


def test_codex_quota_ending_carries_the_reset_codex_named(monkeypatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    import time as _time

    _time.tzset()
    try:
        now = datetime(2026, 12, 2, 7, 49, tzinfo=UTC).timestamp()
        ending = classify(Codex(), 1, LIMIT, now)
        assert ending.kind == "quota"
        assert ending.reset_at == datetime(2026, 12, 2, 9, 39, tzinfo=UTC).timestamp()
        from_json = classify(Codex(), 1, LIMIT_JSON, now)
        assert from_json.reset_at == ending.reset_at
    finally:
        monkeypatch.undo()
        _time.tzset()


def test_codex_exit_0_is_ok_whatever_it_printed() -> None:
    assert classify(Codex(), 0, LIMIT, NOW).kind == "ok"


# --- the reset time in Codex's limit message (seen: 0.171.0, TZ unset and Europe/Berlin) ---


def at(text: str) -> str:
    now = datetime(2026, 12, 2, 7, 49, tzinfo=UTC).timestamp()
    got = codex_reset_at(text, now, UTC)
    return "-" if got is None else datetime.fromtimestamp(got, UTC).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("or try again at 9:49 AM.", "2026-12-02 09:49"),
        ("Try again at 9:49 PM.", "2026-12-02 21:49"),
        ("or try again at 7:30 AM.", "2026-12-03 07:30"),  # earlier today: tomorrow's
        ("or try again at 12:05 AM.", "2026-12-03 00:05"),
        ("or try again at Dec 5th, 2026 8:02 AM.", "2026-12-05 08:02"),
        ("or try again at Jan 1st, 2027 12:00 PM.", "2027-01-01 12:00"),
        ("You've hit your usage limit.", "-"),
        ("try again at 25:99 PM", "-"),
    ],
)
def test_codex_reset_time_is_read_from_its_limit_message(text: str, want: str) -> None:
    assert at(text) == want


def test_codex_reset_time_is_read_in_the_zone_codex_ran_in() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 12, 2, 7, 49, tzinfo=UTC).timestamp()
    got = codex_reset_at("try again at Dec 5th, 2026 9:02 AM.", now, berlin)
    assert got == datetime(2026, 12, 5, 8, 2, tzinfo=UTC).timestamp()


def test_a_weekly_primary_window_goes_to_the_weekly_column() -> None:
    # Seen in public reports: some plans answer with a weekly primary window and no short one.
    doc = wham({"used_percent": 5, "limit_window_seconds": 604800, "reset_at": 1_801_000_000}, None)
    got = parse_wham_usage(doc, NOW)
    assert got.usage.five_hour is None
    assert got.usage.seven_day is not None and got.usage.seven_day.utilization == 5.0
    assert got.labels == {"seven_day": "7-day"}
    headers = {
        "x-codex-primary-used-percent": "5",
        "x-codex-primary-window-minutes": "10080",
        "x-codex-primary-reset-at": "1801000000",
        "x-codex-plan-type": "pro",
    }
    live = parse_codex_headers(headers)
    assert live is not None and live.usage.five_hour is None and live.plan_type == "pro"
    assert live.usage.seven_day is not None and live.usage.seven_day.resets_at == 1_801_000_000


def test_swapped_windows_are_placed_by_length() -> None:
    doc = wham(
        {"used_percent": 70, "limit_window_seconds": 604800},
        {"used_percent": 10, "limit_window_seconds": 18000},
    )
    got = parse_wham_usage(doc, NOW)
    assert got.usage.five_hour is not None and got.usage.five_hour.utilization == 10.0
    assert got.usage.seven_day is not None and got.usage.seven_day.utilization == 70.0


def test_header_reset_after_seconds_counts_from_now() -> None:
    headers = {
        "x-codex-primary-used-percent": "80",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-after-seconds": "600",
    }
    got = parse_codex_headers(headers, NOW)
    assert got is not None and got.usage.five_hour is not None
    assert got.usage.five_hour.resets_at == NOW + 600
