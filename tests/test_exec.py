"""``acct exec`` end to end: acct as a real process, the fake tool as its real child, the fake
Anthropic server for tokens, usage and messages."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acct.base.config import DEFAULT_CONTINUATION_PROMPT
from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic


def events(log: Path, kind: str | None = None) -> list[dict]:
    if not log.exists():
        return []
    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    return [r for r in rows if kind is None or r["event"] == kind]


def message_tokens(fake: FakeAnthropic) -> list[str]:
    return [e["token_sha8"] for e in fake.log("messages")]


def bench_of(ctx: Ctx, name: str):
    acc = ctx.store.read().get(name)
    return ctx.state.benches().get(acc.id)


def no_leaks(ctx: Ctx, run: AcctRunner, *extra: str) -> None:
    texts = [p.stdout for p in run.calls] + [p.stderr for p in run.calls] + list(extra)
    assert_no_secrets(texts, store_secrets(ctx))


def test_runs_the_tool_on_the_account_with_most_headroom(fake, ctx, run, tool_log) -> None:
    seed_account(fake, ctx, "busy", five_hour=70, seven_day=20)
    idle = seed_account(fake, ctx, "idle", five_hour=5, seven_day=10)
    p = run("exec", "--explain", "--", "claude", "-p", "hello")
    assert p.returncode == 0, p.stderr
    assert "Hello from idle@example.com" in p.stdout
    assert "chose idle" in p.stderr and "busy" in p.stderr
    assert message_tokens(fake) == [fake.sha8(idle.tokens.access)]
    start = events(tool_log, "start")[0]
    assert start["argv"] == ["claude", "-p", "hello"]
    no_leaks(ctx, run)


def test_quota_rotates_to_the_next_account_and_resumes(fake, ctx, run, tool_log) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    reset = int(time.time()) + 2 * 3600
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    # The exit-based loop (the proxy would have switched in flight: test_proxy_failover.py).
    p = run("exec", "--no-proxy", "--account", "a", "--", "claude", "-p", "write the report")
    assert p.returncode == 0, p.stderr
    assert "Hello from b@example.com" in p.stdout
    assert "You've hit your session limit" in p.stdout  # the first run's words passed through
    switch = [ln for ln in p.stderr.splitlines() if "switching" in ln]
    assert len(switch) == 1 and switch[0].startswith("acct: a hit its 5-hour limit (resets ")
    assert switch[0].endswith("→ switching to b")
    starts = events(tool_log, "start")
    assert [s["argv"] for s in starts] == [
        ["claude", "-p", "write the report"],
        ["claude", "--continue", "-p", DEFAULT_CONTINUATION_PROMPT],
    ]
    assert message_tokens(fake) == [fake.sha8(a.tokens.access), fake.sha8(b.tokens.access)]
    bench = bench_of(ctx, "a")
    assert bench is not None and bench.kind == "quota" and abs(bench.until - reset) <= 60
    assert bench_of(ctx, "b") is None
    rotate = [h for h in ctx.state.history() if h["event"] == "rotate"]
    assert rotate and rotate[0]["account_id"] == a.id and rotate[0]["to"] == b.id
    no_leaks(ctx, run)


def test_limit_that_usage_does_not_confirm_rests_only_for_the_cooloff(fake, ctx, run) -> None:
    a = seed_account(fake, ctx, "a", five_hour=12, seven_day=10)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 4 * 3600)
    before = time.time()
    p = run("exec", "--no-proxy", "--", "claude", "-p", "hi")
    assert p.returncode == 0, p.stderr
    bench = bench_of(ctx, "a")
    assert bench is not None and bench.kind == "cooloff"
    assert before + 800 < bench.until < time.time() + 1000  # config.cooloff, 900 s
    assert "usage shows 12%" in p.stderr


def test_throttle_neither_benches_nor_rotates(fake, ctx, run, tool_log) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=50, seven_day=50)
    fake.set_messages(a.uuid, "throttle")
    p = run("exec", "--", "claude", "-p", "hi")
    assert p.returncode == 1
    assert "not your usage limit" in p.stdout
    assert "throttled" in p.stderr
    assert len(events(tool_log, "start")) == 1
    assert ctx.state.benches() == {}


@pytest.mark.parametrize(
    ("knobs", "status"),
    [
        ({}, 0),
        ({"FAKE_TOOL_EXIT": "3"}, 3),
        ({"FAKE_TOOL_SIGNAL": "INT"}, 130),
        ({"FAKE_TOOL_SIGNAL": "TERM"}, 143),
    ],
)
def test_exit_status_is_the_tools(fake, ctx, run, tool_log, knobs, status) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=2, seven_day=2)
    p = run("exec", "--", "claude", "-p", "hi", env=knobs)
    assert p.returncode == status, p.stderr
    assert len(events(tool_log, "start")) == 1  # nothing to rotate for


def test_sigterm_is_forwarded_and_reported_as_143(fake, ctx, xenv, tool_log) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "acct", "exec", "--", "claude", "-p", "hi"],
        env={**xenv, "FAKE_TOOL_SLEEP": "60"},
        cwd=xenv["HOME"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not events(tool_log, "sleeping"):
            assert time.monotonic() < deadline, "the tool never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert [e["signum"] for e in events(tool_log, "signal")] == [int(signal.SIGTERM)]


def test_all_limited_exits_5_naming_the_earliest_reset(fake, ctx, run, tool_log) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    b = seed_account(fake, ctx, "b", five_hour=2, seven_day=2)
    now = int(time.time())
    for acc, reset in ((a, now + 3 * 3600), (b, now + 2 * 3600)):
        fake.set_messages(acc.uuid, "quota", reset_epoch=reset)
        fake.set_usage(acc.uuid, five_hour=100, five_hour_resets_at=reset)
    p = run("exec", "--no-proxy", "--", "claude", "-p", "hi")
    assert p.returncode == 5, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("acct: every account is rate-limited; the earliest reset is b at ")
    assert "--wait" in last
    assert len(events(tool_log, "start")) == 2
    # A later run sees the benches and does not start the tool at all.
    p = run("exec", "--", "claude", "-p", "hi")
    assert p.returncode == 5
    assert len(events(tool_log, "start")) == 2
    no_leaks(ctx, run)


def test_wait_resumes_after_the_reset(fake, ctx, xenv, tool_log) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    reset = int(time.time()) + 8
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "acct",
            "exec",
            "--no-proxy",
            "--wait",
            "--",
            "claude",
            "-p",
            "hi",
            "--output-format",
            "stream-json",
        ],
        env=xenv,
        cwd=xenv["HOME"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not events(tool_log, "end"):
            assert time.monotonic() < deadline, "the first run never ended"
            time.sleep(0.02)
        fake.set_messages(a.uuid, "ok")  # the reset: acct waits for it before the next run
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "waiting for a's reset at" in err
    assert "waited for its reset → resuming on it" in err and "switching to a" not in err
    starts = events(tool_log, "start")
    assert len(starts) == 2 and "--continue" in starts[1]["argv"]
    assert starts[1]["t"] >= reset - 1


def test_rotated_refresh_token_is_harvested_and_never_spent_twice(fake, ctx, run) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    for _ in range(3):
        p = run("exec", "--", "claude", "-p", "hi", env={"FAKE_TOOL_REFRESH": "1"})
        assert p.returncode == 0, p.stderr
        lineage = fake.lineage(a.uuid)
        assert not lineage["revoked"]
        stored = ctx.store.read().get("a")
        assert stored.tokens.refresh != a.tokens.refresh
        assert lineage["live_refresh_sha8"] == fake.sha8(stored.tokens.refresh)
    assert fake.lineage(a.uuid)["refresh_count"] == 3
    refreshes = fake.log("token_refresh")
    assert all(r["status"] == 200 for r in refreshes)
    no_leaks(ctx, run)


def test_blanked_file_marks_needs_login_and_rotates(fake, ctx, run, tool_log) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=40, seven_day=40)
    fake.revoke(a.uuid)
    p = run("exec", "--account", "a", "--", "claude", "-p", "hi", env={"FAKE_TOOL_REFRESH": "1"})
    assert "Not logged in" in p.stdout
    assert "acct: a needs a new login → switching to b" in p.stderr
    assert ctx.store.read().get("a").needs_login
    assert p.returncode == 0 and "Hello from b@example.com" in p.stdout
    no_leaks(ctx, run)


def test_foreign_keys_survive_in_every_tool_file(fake, ctx, run, home) -> None:
    # One account per tool: exec never takes an account lent to another tool's file.
    for i, name in enumerate(("a", "b", "c")):
        seed_account(fake, ctx, name, five_hour=1 + i, seven_day=1 + i)
    files = {
        "claude": (
            home / ".claude/.credentials.json",
            {"mcpOAuth": {"srv": {"token": "x"}}, "pluginSecrets": {"p": 1}},
        ),
        "opencode": (
            home / ".local/share/opencode/auth.json",
            {"openai": {"type": "api", "key": "k"}},
        ),
        "pi": (home / ".pi/agent/auth.json", {"openrouter": {"type": "api_key", "key": "k"}}),
    }
    for cmd, (path, doc) in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
        path.chmod(0o600)
        args = ["run", "hi"] if cmd == "opencode" else ["-p", "hi"]
        p = run("exec", "--", cmd, *args, env={"FAKE_TOOL_REFRESH": "1"})
        assert p.returncode == 0, (cmd, p.stderr)
        # Third-party harnesses are billed as extra usage: say so, and only for them.
        assert ("extra usage" in p.stderr) == (cmd != "claude"), (cmd, p.stderr)
        after = json.loads(path.read_text())
        for key, value in doc.items():
            assert after[key] == value, (cmd, key)
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    no_leaks(ctx, run)


def test_nested_exec_is_refused_unless_asked(fake, ctx, run) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    p = run("exec", "--", "claude", "-p", "hi", env={"ACCT_EXEC": "1"})
    assert p.returncode == 2 and "--nested" in p.stderr
    p = run("exec", "--nested", "--", "claude", "-p", "hi", env={"ACCT_EXEC": "1"})
    assert p.returncode == 0, p.stderr


def test_env_tokens_that_would_win_over_the_file_are_removed(fake, ctx, run) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    bogus = {
        "ANTHROPIC_API_KEY": "sk-ant-api03-bogus",
        "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-bogus",
    }
    p = run("exec", "--", "claude", "-p", "hi", env=bogus)
    assert p.returncode == 0, p.stderr
    warnings = [ln for ln in p.stderr.splitlines() if "removed for this run" in ln]
    assert len(warnings) == 2 and any("ANTHROPIC_API_KEY" in w for w in warnings)
    assert message_tokens(fake) == [fake.sha8(a.tokens.access)]
    no_leaks(ctx, run)


def test_child_sees_the_account_and_target(fake, ctx, run, tmp_path) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    out = tmp_path / "env.txt"
    p = run(
        "exec",
        "--target",
        "claude-code",
        "--",
        "sh",
        "-c",
        f'echo "$ACCT_ACCOUNT $ACCT_TARGET $ACCT_EXEC" > {out}',
    )
    assert p.returncode == 0, p.stderr
    assert out.read_text().split() == ["a", "claude-code", "1"]


def test_unknown_command_needs_a_target(fake, ctx, run) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    p = run("exec", "--", "true")
    assert p.returncode == 2 and "--target" in p.stderr
    assert run("exec", "--target", "claude-code", "--", "true").returncode == 0


def test_no_rotate_and_max_rotations_stop_after_a_limit(fake, ctx, run, tool_log) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=50, seven_day=50)
    reset = int(time.time()) + 3600
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    p = run("exec", "--account", "a", "--no-rotate", "--", "claude", "-p", "hi")
    assert p.returncode == 1 and "not rotating" in p.stderr
    assert len(events(tool_log, "start")) == 1
    assert bench_of(ctx, "a") is not None  # benched all the same: the next run avoids it
    ctx.state.unbench(a.id)
    p = run("exec", "--account", "a", "--max-rotations", "0", "--", "claude", "-p", "hi")
    assert p.returncode == 1 and "stopping after 0 rotations" in p.stderr
    assert len(events(tool_log, "start")) == 2


def test_on_a_terminal_a_full_window_in_usage_reveals_the_limit(fake, ctx, xenv, tool_log) -> None:
    """On a terminal acct does not see the tool's words; one usage fetch tells a limit apart."""
    import pexpect

    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    reset = int(time.time()) + 3600
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    term = pexpect.spawn(
        sys.executable,
        ["-m", "acct", "exec", "--no-proxy", "--account", "a", "--", "claude", "-p", "hi"],
        env=xenv,
        cwd=xenv["HOME"],
        timeout=60,
        encoding="utf-8",
    )
    term.expect(pexpect.EOF)
    term.close()
    assert term.exitstatus == 0, term.before
    assert "a hit its 5-hour limit" in term.before and "switching to b" in term.before
    assert "Hello from b@example.com" in term.before
    assert len(events(tool_log, "start")) == 2


def test_exec_start_up_leaves_login_rich_and_accounting_unimported(fake, ctx, env) -> None:
    """`acct exec` stays lean on its way to the tool: no Rich (nothing to draw; httpx would
    bring it too), no browser login server, no token accounting before an answer, no HTTP
    client to check a plain endpoint URL; each cost 5 to 60 ms of every start (bench/exec.py)."""
    from acct.base.models import Usage, Window

    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    # Usage polled a minute ago: the run has nothing to ask the network.
    ctx.state.put_usage(a.id, Usage(Window(10, None), Window(10, None)), now=time.time() - 60)
    lazy = [
        "rich",
        "acct.cli.render",
        "acct.services.oauth.loopback",
        "acct.services.accounting",
        "acct.domain.answers",
        "prometheus_client",
    ]
    code = (
        "import sys\n"
        "from acct.cli import run\n"
        "status = run(['exec', '--no-proxy', '--target', 'claude-code', '--', 'true'])\n"
        f"print(status, sorted(m for m in {lazy!r} if m in sys.modules))\n"
        "status = run(['exec', '--target', 'claude-code', '--', 'true'])\n"
        f"print(status, sorted(m for m in {lazy!r} if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=env["HOME"],
    )
    without_proxy, with_proxy = proc.stdout.strip().splitlines()[-2:]
    assert without_proxy == "0 []", proc.stdout + proc.stderr
    # Through the proxy, the HTTP client it builds in the background 0.3 s after start (httpx,
    # which imports Rich for its own command line) may come before `true` is done.
    assert with_proxy in ("0 []", "0 ['rich']"), proc.stdout + proc.stderr
