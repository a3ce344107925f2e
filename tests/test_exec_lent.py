"""``acct exec`` and accounts lent to another tool's file: never taken from there.

Only ``acct use`` moves an account between files; exec runs another account instead, says why
with ``--explain``, and refuses ``--account NAME`` for an account lent elsewhere.
"""

from __future__ import annotations

from acct.services import custody
from acct.services.targets import get_target
from tests.conftest import seed_account
from tests.test_custody import tool_rotates
from tests.test_exec import events, message_tokens, no_leaks


def test_exec_falls_back_when_pi_holds_and_rotated_the_best_account(fake, ctx, run) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    custody.lend(ctx, a.id, "pi")
    tool_rotates(fake, ctx, "pi")  # pi refreshed it: the live lineage is only in pi's file
    pi_before = get_target("pi").path(ctx.env).read_bytes()
    p = run("exec", "--explain", "--", "claude", "-p", "hi")
    assert p.returncode == 0, p.stderr
    assert "Hello from b@example.com" in p.stdout
    assert message_tokens(fake) == [fake.sha8(b.tokens.access)]
    pi_path = custody.holder_path(get_target("pi").path(ctx.env))
    assert f"acct:  - a: lent to pi ({pi_path})" in p.stderr
    assert get_target("pi").path(ctx.env).read_bytes() == pi_before
    assert ctx.store.read().get("a").holder.target == "pi"
    assert not fake.lineage(a.uuid)["revoked"]
    no_leaks(ctx, run)


def test_exec_does_not_log_pi_out_by_moving_its_account(fake, ctx, run) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    custody.lend(ctx, a.id, "pi")  # pi has not refreshed it: a move would be possible, and wrong
    pi_before = get_target("pi").path(ctx.env).read_bytes()
    p = run("exec", "--", "claude", "-p", "hi")
    assert p.returncode == 0, p.stderr
    assert "Hello from b@example.com" in p.stdout
    assert get_target("pi").path(ctx.env).read_bytes() == pi_before
    entry = get_target("pi").read(ctx.env)
    assert entry is not None and entry.tokens.access == a.tokens.access
    assert ctx.store.read().get("a").holder.target == "pi"


def test_account_flag_naming_an_account_lent_elsewhere_is_a_clear_error(
    fake, ctx, run, tool_log
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    custody.lend(ctx, a.id, "pi")
    pi_before = get_target("pi").path(ctx.env).read_bytes()
    p = run("exec", "--account", "a", "--", "claude", "-p", "hi")
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("acct: account 'a' is lent to pi (")
    assert "acct exec does not take it from there" in last
    assert "`acct use a --target claude-code`" in last
    assert events(tool_log, "start") == []
    assert get_target("pi").path(ctx.env).read_bytes() == pi_before


def test_every_account_lent_elsewhere_says_how_to_move_one(fake, ctx, run, tool_log) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    custody.lend(ctx, a.id, "pi")
    p = run("exec", "--", "claude", "-p", "hi")
    assert p.returncode == 1
    assert "no account can run: a lent to pi" in p.stderr
    assert "`acct use NAME --target claude-code` moves an account here" in p.stderr
    assert events(tool_log, "start") == []


def test_account_lent_to_this_same_file_is_the_one_in_use(fake, ctx, run) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    custody.lend(ctx, a.id, "claude-code")
    tool_rotates(fake, ctx, "claude-code")  # Claude Code itself refreshed it: still its own
    p = run("exec", "--account", "a", "--", "claude", "-p", "hi")
    assert p.returncode == 0, p.stderr
    assert "Hello from a@example.com" in p.stdout
    p = run("exec", "--", "claude", "-p", "hi")
    assert p.returncode == 0, p.stderr
    assert "Hello from a@example.com" in p.stdout
