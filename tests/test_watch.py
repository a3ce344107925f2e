"""`acct watch`: every account with bars at 80 columns and with NO_COLOR, a rotation made
elsewhere shows up, keys switch the sort and `q` quits with 0."""

from __future__ import annotations

import re
import sys
import time

import pytest

from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_once_shows_every_account_with_bars_in_80_columns(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work", five_hour=37.0, seven_day=12.0)
    seed_account(fake, ctx, "a-rather-long-account-name", five_hour=90.0, seven_day=100.0)
    seed_account(fake, ctx, "fresh")
    acct("list", "--usage", check=True)
    proc = acct("watch", "--once", env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert not ANSI.search(text)  # NO_COLOR, not a terminal
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    rows = {
        line.split()[0]: line for line in lines if line and line.split()[0] in ("work", "fresh")
    }
    assert "███" in rows["work"] and "37%" in rows["work"] and "12%" in rows["work"]
    assert any(line.startswith("a-rather-long") and "100%" in line for line in lines)
    assert "fresh" in rows and "-" in rows["fresh"]
    assert lines[0].startswith("acct watch") and "none in the last 24 hours" in text
    assert_no_secrets(text, store_secrets(ctx))
    piped = acct("watch", env={"COLUMNS": "80"}, timeout=30)  # not a terminal: one frame
    assert piped.returncode == 0 and piped.stdout.count("acct watch") == 1


def test_dashboard_follows_a_rotation_and_quits_on_q(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str]
) -> None:
    pexpect = pytest.importorskip("pexpect")
    a = seed_account(fake, ctx, "alpha", five_hour=10.0)
    b = seed_account(fake, ctx, "beta", five_hour=20.0)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "acct", "watch"],
        env={**env, "TERM": "xterm-256color"},
        cwd=env["HOME"],
        dimensions=(30, 80),
        encoding="utf-8",
        timeout=30,
    )
    try:
        child.expect("sort: usage")
        child.expect("alpha")
        ctx.state.bench(a.id, time.time() + 3600, kind="quota", reason="5-hour limit")
        ctx.state.record("bench", account_id=a.id, kind="quota", reason="5-hour limit")
        ctx.state.record("rotate", account_id=a.id, to=b.id, reason="quota", target="claude-code")
        child.expect("alpha → beta \\(quota\\)")
        child.send("s")
        child.expect("sort: reset")
        child.send("q")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
