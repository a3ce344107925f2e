"""Usage polling: parsing every answer shape, concurrency, the shared cache and its back-offs.

Polls run in real `acct list --usage` processes against the fake Anthropic server; what reached
the server is read from the fake's request log.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acct.base.errors import ProtocolError, RateLimited
from acct.base.fsio import atomic_write
from acct.base.models import Tokens, Window
from acct.services.context import Ctx
from acct.services.usage import backoff_for, confirm, parse_usage
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic

LATENCY_S = 0.3


def write_config(ctx: Ctx, **values: float) -> None:
    atomic_write(ctx.paths.config_file, "".join(f"{k} = {v}\n" for k, v in values.items()))


def list_json(acct: AcctRunner, *args: str) -> dict[str, Any]:
    proc = acct("list", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    return {a["name"]: a for a in doc["accounts"]}


def usage_requests(fake: FakeAnthropic) -> list[dict[str, Any]]:
    return fake.log("usage")


# --- parse_usage -----------------------------------------------------------------------------


def test_parse_full_answer() -> None:
    doc = {
        "five_hour": {"utilization": 19.0, "resets_at": "2025-11-25T22:00:00.288792+00:00"},
        "seven_day": {"utilization": 72.5, "resets_at": "2025-11-28T10:00:00.000001+00:00"},
        "seven_day_opus": None,
        "seven_day_sonnet": {"utilization": 40.0, "resets_at": "2025-11-28T10:00:00+00:00"},
        "seven_day_oauth_apps": {"utilization": 0.0, "resets_at": None},
        "extra_usage": {
            "is_enabled": True,
            "monthly_limit": 5000,
            "used_credits": 120,
            "utilization": 2.4,
        },
        "limits": [
            {"kind": "session", "percent": 19, "resets_at": None},
            {
                "kind": "weekly_scoped",
                "percent": 100,
                "scope": {"model": {"display_name": "Opus"}},
                "resets_at": "2025-11-28T10:00:00+00:00",
            },
        ],
    }
    u = parse_usage(doc)
    want = datetime(2025, 11, 25, 22, 0, 0, 288792, tzinfo=UTC).timestamp()
    assert u.five_hour == Window(19.0, want)
    assert u.seven_day is not None and u.seven_day.utilization == 72.5
    labels = {label: p for label, p, _ in u.scoped}
    assert labels == {"Opus": 100.0, "Sonnet": 40.0}
    assert u.extra_usage_enabled is True
    assert u.peak == 72.5


def test_parse_limits_only_answer() -> None:
    week = "2025-11-28T10:00:00.5+00:00"
    u = parse_usage(
        {
            "limits": [
                {"kind": "session", "percent": 7, "resets_at": None},
                {"kind": "weekly_all", "percent": 72, "resets_at": week},
                {
                    "kind": "weekly_scoped",
                    "percent": 100,
                    "scope": {"model": {"display_name": "Opus"}},
                },
                {"kind": "something_new", "percent": 3},
            ]
        }
    )
    assert u.five_hour == Window(7.0, None)
    assert u.seven_day == Window(72.0, datetime.fromisoformat(week).timestamp())
    assert u.scoped == (("Opus", 100.0, None),)


def test_parse_null_answer() -> None:
    u = parse_usage({"five_hour": None, "seven_day": None, "extra_usage": None, "limits": []})
    assert u.five_hour is None and u.seven_day is None and u.peak is None


@pytest.mark.parametrize(
    "doc", [None, [], "x", 3, {"error": {"type": "api_error"}}, {"unrelated": 1}]
)
def test_parse_refuses_what_is_not_a_usage_answer(doc: Any) -> None:
    with pytest.raises(ProtocolError):
        parse_usage(doc)


def test_parse_keeps_the_good_parts_of_a_damaged_answer() -> None:
    u = parse_usage(
        {
            "five_hour": {"utilization": "high", "resets_at": "not a date"},
            "seven_day": {"utilization": 12, "resets_at": 1764000000000},
            "limits": "nope",
        }
    )
    assert u.five_hour is None
    assert u.seven_day == Window(12.0, 1764000000.0)


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_like = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
key = st.sampled_from(
    [
        "five_hour",
        "seven_day",
        "limits",
        "extra_usage",
        "seven_day_opus",
        "kind",
        "percent",
        "utilization",
        "resets_at",
        "scope",
        "model",
        "display_name",
    ]
)
usage_like = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(key | st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(doc=json_like | usage_like)
def test_parse_never_crashes(doc: Any) -> None:
    try:
        u = parse_usage(doc)
    except ProtocolError:
        return
    for w in (u.five_hour, u.seven_day):
        if w is not None:
            assert w.utilization is None or math.isfinite(w.utilization)


@settings(max_examples=200, deadline=None)
@given(
    five=st.floats(min_value=0, max_value=1000, allow_nan=False),
    seven=st.floats(min_value=0, max_value=1000, allow_nan=False),
    when=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2100, 1, 1)),
)
def test_parse_preserves_utilization_and_reset(five: float, seven: float, when: datetime) -> None:
    stamp = when.replace(tzinfo=UTC)
    doc = {
        "five_hour": {"utilization": five, "resets_at": stamp.isoformat()},
        "seven_day": {"utilization": seven, "resets_at": stamp.isoformat(timespec="microseconds")},
    }
    u = parse_usage(json.loads(json.dumps(doc)))
    assert u.five_hour == Window(five, stamp.timestamp())
    assert u.seven_day == Window(seven, stamp.timestamp())


def test_backoff_doubles_and_honours_a_long_retry_after() -> None:
    assert backoff_for(RateLimited("x", retry_after=0), 0) == 300
    assert backoff_for(RateLimited("x"), 1) == 600
    assert backoff_for(RateLimited("x"), 10) == 3600
    assert backoff_for(RateLimited("x", retry_after=7200), 0) == 7200


# --- polling through `acct list --usage` -----------------------------------------------------


def peak_overlap(requests: list[dict[str, Any]], latency: float) -> int:
    """How many requests were in flight at once: the fake logs each on arrival and answers no
    sooner than ``latency`` later, so request i is open during [t_i, t_i + latency)."""
    events = sorted([(r["t"], 1) for r in requests] + [(r["t"] + latency, -1) for r in requests])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def test_twenty_accounts_are_polled_concurrently(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    for i in range(20):
        seed_account(fake, ctx, f"a{i:02d}", five_hour=float(i), seven_day=50.0)
    fake.configure(usage_latency_ms=int(LATENCY_S * 1000))
    proc = acct("list", "--usage", check=True)
    requests = usage_requests(fake)
    assert len(requests) == 20
    assert {r["status"] for r in requests} == {200}
    # Sequential polling would never have two requests open at once.
    assert peak_overlap(requests, LATENCY_S) >= 10
    assert "19%" in proc.stdout and "50%" in proc.stdout
    assert_no_secrets([proc.stdout, proc.stderr], store_secrets(ctx))


def test_fresh_cache_is_not_polled_again(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    seed_account(fake, ctx, "work", five_hour=37.0)
    seed_account(fake, ctx, "home", five_hour=5.0)
    acct("list", "--usage", check=True)
    assert len(usage_requests(fake)) == 2
    second = acct("list", "--usage", check=True)
    assert len(usage_requests(fake)) == 2
    assert "37%" in second.stdout


def test_min_age_comes_from_config(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    seed_account(fake, ctx, "work", five_hour=37.0)
    write_config(ctx, usage_min_age=0)
    acct("list", "--usage", check=True)
    acct("list", "--usage", check=True)
    assert len(usage_requests(fake)) == 2


def test_concurrent_processes_poll_each_account_once(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, env: dict[str, str]
) -> None:
    for i in range(5):
        seed_account(fake, ctx, f"a{i}", five_hour=float(i))
    ctx.state.all_usage()  # create the state database before the race
    fake.configure(usage_latency_ms=500)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "acct", "list", "--usage", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=env["HOME"],
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    per_account: dict[str, int] = {}
    for r in usage_requests(fake):
        per_account[r["account_uuid"]] = per_account.get(r["account_uuid"], 0) + 1
    assert len(per_account) == 5
    assert set(per_account.values()) == {1}
    # Each process shows every account's usage, whichever process fetched it.
    for out, _ in outputs:
        rows = json.loads(out)["accounts"]
        assert sorted(r["usage"]["five_hour"]["utilization"] for r in rows) == [0, 1, 2, 3, 4]


def test_rate_limit_keeps_last_values_and_backs_off(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work", five_hour=37.0, seven_day=12.0)
    write_config(ctx, usage_min_age=0)
    fake.configure(usage_limit=1)
    acct("list", "--usage", check=True)
    limited = acct("list", "--usage")
    assert limited.returncode == 0, limited.stderr
    assert "usage: rate-limited, retry in" in limited.stdout
    assert "37%" in limited.stdout and "12%" in limited.stdout
    assert [r["status"] for r in usage_requests(fake)] == [200, 429]

    row = list_json(acct, "--usage")["work"]
    assert len(usage_requests(fake)) == 2  # backing off: no request
    assert row["usage"]["five_hour"]["utilization"] == 37.0
    assert row["usage"]["error"]["code"] == "rate_limited"
    assert row["usage"]["error"]["retry_at_epoch"] > row["usage"]["fetched_at_epoch"] + 250
    assert row["usage"]["age_seconds"] is not None
    assert row["state"] == "ok"


def test_server_error_is_a_row_state(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    seed_account(fake, ctx, "work", five_hour=37.0)
    fake.configure(usage_fail_status=503)
    proc = acct("list", "--usage")
    assert proc.returncode == 0
    assert "usage: server error, retry in" in proc.stdout
    row = list_json(acct)["work"]
    assert row["usage"]["error"]["code"] == "server_error"
    assert row["usage"]["five_hour"] is None
    assert len(usage_requests(fake)) == 1


def test_hanging_endpoint_times_out(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    seed_account(fake, ctx, "work", five_hour=37.0)
    seed_account(fake, ctx, "home", five_hour=3.0)
    write_config(ctx, usage_timeout=0.5)
    fake.configure(usage_hang_s=30)
    proc = acct("list", "--usage", timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("usage: timed out, retry in") == 2
    rows = list_json(acct)
    assert {r["usage"]["error"]["code"] for r in rows.values()} == {"timeout"}


def test_revoked_account_needs_login(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    acc = seed_account(fake, ctx, "work", five_hour=37.0)
    seed_account(fake, ctx, "home", five_hour=3.0)
    fake.revoke(acc.uuid)
    proc = acct("list", "--usage")
    assert proc.returncode == 0, proc.stderr
    rows = list_json(acct)
    assert rows["work"]["state"] == "needs_login"
    assert rows["work"]["usable"] is False
    assert rows["home"]["usage"]["five_hour"]["utilization"] == 3.0
    assert "needs login" in proc.stdout and "usage: needs login" not in proc.stdout
    assert_no_secrets([proc.stdout, proc.stderr], store_secrets(ctx))


def test_refused_token_is_refreshed_once(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    """An access token the server no longer accepts, on a live lineage: refresh, then poll."""
    acc = seed_account(fake, ctx, "work", five_hour=37.0, expires_in=-10)
    with ctx.store.transaction() as accounts:  # the store believes the token is still good
        a = accounts.get("work")
        t = a.tokens
        assert t is not None
        accounts.put(a.copy(tokens=Tokens(t.access, t.refresh, t.expires_at + 3600, t.scopes)))
    proc = acct("list", "--usage", check=True)
    assert "37%" in proc.stdout
    assert [r["status"] for r in usage_requests(fake)] == [401, 200]
    assert len(fake.log("token_refresh")) == 1
    renewed = ctx.store.read().get("work")
    assert renewed.fingerprint != acc.fingerprint
    assert renewed.fingerprint in proc.stdout


def test_expired_token_is_refreshed_before_polling(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work", five_hour=37.0, expires_in=-10)
    proc = acct("list", "--usage", check=True)
    assert "37%" in proc.stdout
    assert [r["status"] for r in usage_requests(fake)] == [200]
    assert len(fake.log("token_refresh")) == 1


def test_setup_tokens_and_api_keys_are_not_polled(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "setup", scopes=["user:inference"])
    proc = acct("list", "--usage", check=True)
    assert usage_requests(fake) == []
    assert "setup token: usage not readable" in proc.stdout


def test_limits_only_and_null_answers_in_the_listing(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    lim = seed_account(fake, ctx, "lim", five_hour=7.0, seven_day=72.0)
    nul = seed_account(fake, ctx, "nul", five_hour=1.0, seven_day=2.0)
    fake.set_usage(lim.uuid, variant="limits_only", weekly_scoped={"Opus": 100})
    fake.set_usage(nul.uuid, variant="nulls")
    rows = list_json(acct, "--usage")
    assert rows["lim"]["usage"]["five_hour"]["utilization"] == 7.0
    assert rows["lim"]["usage"]["seven_day"]["utilization"] == 72.0
    assert rows["lim"]["usage"]["scoped"][0]["label"] == "Opus"
    assert rows["nul"]["usage"]["five_hour"] is None and rows["nul"]["usage"]["error"] is None
    assert rows["nul"]["usage"]["fetched_at_epoch"] is not None


def test_confirm_respects_back_off_and_fresh_values(fake: FakeAnthropic, ctx: Ctx) -> None:
    acc = seed_account(fake, ctx, "work", five_hour=99.0)
    first = confirm(ctx, acc)
    assert first.usage is not None and first.usage.five_hour is not None
    assert first.usage.five_hour.utilization == 99.0
    again = confirm(ctx, acc)  # fresh enough: the same record, no request
    assert again.fetched_at == first.fetched_at
    assert len(usage_requests(fake)) == 1
    fake.configure(usage_limit=1)
    limited = confirm(ctx, acc, max_age=0)
    assert limited.error == "rate_limited" and limited.usage == first.usage
    confirm(ctx, acc, max_age=0)  # backing off
    assert [r["status"] for r in usage_requests(fake)] == [200, 429]


def test_resets_in_the_past_count_as_zero(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    acc = seed_account(fake, ctx, "work", five_hour=80.0, seven_day=10.0)
    fake.set_usage(acc.uuid, five_hour_resets_at=datetime.now(UTC) - timedelta(minutes=5))
    row = list_json(acct, "--usage")["work"]
    assert row["usage"]["five_hour"]["utilization"] == 80.0
    assert row["usage"]["five_hour"]["utilization_now"] == 0.0


def test_the_poll_lease_outlasts_a_poll_that_refreshes_the_token_twice(ctx: Ctx) -> None:
    """Another process must not poll (and refresh) the account while this poll may still run:
    a refresh before the request, a 401, another refresh and a second request."""
    from acct.services import oauth
    from acct.services.usage import _lease

    one_refresh = oauth.refresh_worst_case()
    assert one_refresh >= oauth.REFRESH_TIMEOUT + oauth.STORE_WAIT
    assert _lease(ctx) >= 2 * (ctx.config.usage_timeout + one_refresh)
