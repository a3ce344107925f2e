"""A tool that says its login is dead (its refresh was refused) marks the account "needs login"
and the session moves on to the next account, instead of resting the account for a while."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import AcctRunner, exec_env, seed_account
from tests.test_exec import bench_of, no_leaks

CASES = {
    "opencode": (["opencode", "run", "hi"], "Token refresh failed: 400"),
    "pi": (["pi", "-p", "hi"], "OAuth refresh failed for anthropic"),
}


@pytest.fixture
def run(env, fake, tmp_path) -> AcctRunner:
    return AcctRunner(exec_env(env, fake, tmp_path, tmp_path / "tool.jsonl"))


@pytest.mark.parametrize("tool", sorted(CASES))
def test_a_refused_refresh_marks_needs_login_and_switches(fake, ctx, run, tool) -> None:
    argv, words = CASES[tool]
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=40, seven_day=40)
    fake.revoke(a.uuid)
    p = run("exec", "--account", "a", "--", *argv, env={"FAKE_TOOL_REFRESH": "1"})
    assert words in p.stderr
    assert "acct: a needs a new login → switching to b" in p.stderr, p.stderr
    assert ctx.store.read().get("a").needs_login
    assert bench_of(ctx, "a") is None, "a dead login is no 15-minute rest"
    assert p.returncode == 0 and "Hello from b@example.com" in p.stdout
    no_leaks(ctx, run)


def test_opencode_racing_its_own_refresh_is_not_a_dead_login(fake, ctx, run, home: Path) -> None:
    """The plugin's first refresh wrote a live pair; its second one was refused: the account's
    login lives on in the file, so it only rests."""
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=40, seven_day=40)
    race = str(home.parent / "raced")
    p = run("exec", "--account", "a", "--", "opencode", "run", "hi", env={"FAKE_TOOL_RACE": race})
    assert "Token refresh failed: 400" in p.stderr
    assert not ctx.store.read().get("a").needs_login
    bench = bench_of(ctx, "a")
    assert bench is not None and bench.kind == "auth", p.stderr
    assert p.returncode == 0 and "Hello from b@example.com" in p.stdout
    no_leaks(ctx, run)
