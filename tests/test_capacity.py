"""`acct capacity`: green, yellow and red pools, their exit statuses, and no network by default."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from acct.base.config import config_from_dict
from acct.base.errors import ConfigError
from acct.domain.capacity import PoolAccount, assess
from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic


def capacity(acct: AcctRunner, *args: str) -> tuple[int, dict[str, Any]]:
    proc = acct("capacity", "--json", *args)
    assert proc.stderr == "" or "polling" in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_green_pool_exits_0(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    seed_account(fake, ctx, "work", five_hour=10.0, seven_day=20.0)
    seed_account(fake, ctx, "home", five_hour=30.0, seven_day=5.0)
    status, doc = capacity(acct, "--refresh")
    assert doc["kind"] == "capacity" and doc["verdict"] == "green", doc
    assert status == 0 and doc["exit_status"] == 0
    assert doc["reasons"] == []
    assert doc["headroom"] == {"five_hour": pytest.approx(1.6), "seven_day": pytest.approx(1.75)}
    assert sorted(doc["usable"]) == ["home", "work"] and sorted(doc["idle"]) == ["home", "work"]
    assert doc["soonest_reset_at_epoch"] > time.time()
    rows = {a["name"]: a for a in doc["accounts"]}
    assert rows["work"]["five_hour"] == 10.0 and rows["work"]["sessions"] == 0
    assert_no_secrets([c.stdout + c.stderr for c in acct.calls], store_secrets(ctx))


def test_capacity_reads_local_data_only_without_refresh(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work", five_hour=10.0, seven_day=20.0)
    status, doc = capacity(acct)
    assert fake.log("usage") == []
    # Never polled: counts as a whole account's headroom, green.
    assert status == 0 and doc["headroom"]["five_hour"] == 1.0
    capacity(acct, "--refresh")
    assert len(fake.log("usage")) == 1


def test_yellow_pool_exits_10_and_says_why(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    seed_account(fake, ctx, "work", five_hour=85.0, seven_day=60.0)
    seed_account(fake, ctx, "home", five_hour=20.0, seven_day=95.0)
    status, doc = capacity(acct, "--refresh")
    assert status == 10 and doc["verdict"] == "yellow"
    assert any("80% or more" in r for r in doc["reasons"]), doc["reasons"]
    assert any("7-day headroom is 0.45" in r for r in doc["reasons"]), doc["reasons"]
    assert not any("5-hour headroom" in r for r in doc["reasons"])
    text = acct("capacity")
    assert text.returncode == 10
    assert text.stdout.startswith("yellow") and "80% or more" in text.stdout


def test_thresholds_come_from_the_config(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    seed_account(fake, ctx, "work", five_hour=85.0, seven_day=40.0)
    seed_account(fake, ctx, "home", five_hour=20.0, seven_day=90.0)
    assert capacity(acct, "--refresh")[0] == 10
    ctx.paths.config_dir.mkdir(parents=True, exist_ok=True)
    ctx.paths.config_file.write_text("capacity_low = 95\ncapacity_min_headroom = 0.2\n")
    assert capacity(acct)[0] == 0
    ctx.paths.config_file.write_text("capacity_low = 150\n")
    bad = acct("capacity")
    assert bad.returncode == 1 and "capacity_low" in bad.stderr and bad.stdout == ""


def test_red_pool_exits_20_and_names_the_first_back(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    work = seed_account(fake, ctx, "work", five_hour=10.0)
    seed_account(fake, ctx, "home", five_hour=100.0, seven_day=50.0)
    gone = seed_account(fake, ctx, "gone")
    capacity(acct, "--refresh")
    soon = time.time() + 1800
    ctx.state.bench(work.id, soon, kind="quota", reason="5-hour limit")
    with ctx.store.transaction() as accounts:
        accounts.put(accounts.get_by_id(gone.id).copy(needs_login=True))
    status, doc = capacity(acct)
    assert status == 20 and doc["verdict"] == "red"
    assert doc["back_account"] == "work" and abs(doc["back_at_epoch"] - soon) <= 1
    assert doc["usable"] == []
    assert {a["name"]: a["state"] for a in doc["accounts"]} == {
        "work": "benched",
        "home": "full",
        "gone": "needs_login",
    }
    text = acct("capacity")
    assert text.returncode == 20 and text.stdout.startswith("red: work is back at")


def test_no_accounts_is_red(acct: AcctRunner) -> None:
    status, doc = capacity(acct)
    assert status == 20 and "acct login" in doc["reasons"][0]
    assert doc["headroom"] == {"five_hour": 0.0, "seven_day": 0.0}


# --- the pure verdict ----------------------------------------------------------------------------


def test_every_usable_account_busy_is_yellow() -> None:
    now = 1_000_000.0
    pool = [PoolAccount("a", "ok", five_hour=1, sessions=1), PoolAccount("b", "held", sessions=2)]
    c = assess(pool, now=now)
    assert c.verdict == "yellow" and c.idle == ()
    assert any("live session" in r for r in c.reasons)
    assert assess([*pool, PoolAccount("c", "ok")], now=now).verdict == "green"


def test_only_api_keys_left_is_yellow() -> None:
    c = assess(
        [PoolAccount("key", "ok", api_key=True), PoolAccount("a", "benched", back_at=5.0)], now=1.0
    )
    assert c.verdict == "yellow" and c.reasons == ("only API-key accounts are usable",)
    assert c.headroom == {"five_hour": 0.0, "seven_day": 0.0}


def test_red_without_a_wait_says_so() -> None:
    c = assess([PoolAccount("a", "needs_login"), PoolAccount("b", "disabled")], now=1.0)
    assert c.verdict == "red" and c.back_at is None and "log in" in c.reasons[0]
    assert c.exit_status == 20


def test_a_passed_bench_does_not_count_as_coming_back() -> None:
    c = assess(
        [PoolAccount("a", "full", back_at=0.5), PoolAccount("b", "full", back_at=9.0)], now=1.0
    )
    assert c.back_name == "b" and c.back_at == 9.0


@pytest.mark.parametrize(
    "doc",
    [
        {"capacity_low": 0},
        {"capacity_low": "high"},
        {"capacity_min_headroom": -1},
        {"metrics_textfile": ""},
        {"notify": ["pager"]},
        {"notify": [{"url": "ftp://x"}]},
        {"notify": [{"url": "http://x", "format": "teams"}]},
        {"notify_utilization": [0]},
        {"pricing": {"claude-x": {"input": 1}}},
        {"pricing": {"claude-x": {"input": 1, "output": 2, "cahce_read": 1}}},
    ],
)
def test_bad_observability_keys_are_config_errors(doc: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        config_from_dict(doc)


def test_observability_keys_parse() -> None:
    c = config_from_dict(
        {
            "capacity_low": 70,
            "metrics_textfile": "~/m/acct.prom",
            "notify": ["desktop", {"url": "http://127.0.0.1:9/x", "format": "ntfy"}],
            "notify_utilization": [95, 80],
            "pricing": {"claude-x": {"input": 2, "output": 10}},
        }
    )
    assert c.capacity_low == 70.0 and not c.metrics_textfile.startswith("~")  # type: ignore[union-attr]
    assert [n.kind for n in c.notify] == ["desktop", "webhook"] and c.notify[1].format == "ntfy"
    assert c.notify_utilization == (80.0, 95.0)
    assert c.pricing["claude-x"].cache_read == pytest.approx(0.2)


def test_live_sessions_count_per_account_while_a_session_runs(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str], tmp_path: Any
) -> None:
    import subprocess
    import sys

    from tests.conftest import exec_env
    from tests.test_metrics import value, wait_for

    seed_account(fake, ctx, "work", five_hour=10.0)
    seed_account(fake, ctx, "spare", five_hour=50.0)
    run = AcctRunner(exec_env(env, fake, tmp_path, tmp_path / "tool.jsonl"))
    gate = tmp_path / "gate"
    session = subprocess.Popen(
        [sys.executable, "-m", "acct", "exec", "--account", "work", "--", "claude", "-p", "hi"],
        env={**run.env, "FAKE_TOOL_GATE": str(gate)},
        cwd=env["HOME"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def busy() -> dict[str, Any] | None:
            doc = json.loads(run("capacity", "--json").stdout)
            return doc if {a["name"]: a["sessions"] for a in doc["accounts"]}["work"] else None

        doc = wait_for(busy, "the session to register its account")
        assert doc["idle"] == ["spare"] and sorted(doc["usable"]) == ["spare", "work"]
        metrics = run("metrics", check=True).stdout
        assert value(metrics, "acct_account_live_sessions", account="work") == 1
        assert value(metrics, "acct_account_live_sessions", account="spare") == 0
    finally:
        gate.touch()
        _, err = session.communicate(timeout=120)
    assert session.returncode == 0, err
    after = json.loads(run("capacity", "--json").stdout)
    assert all(a["sessions"] == 0 for a in after["accounts"])
