"""What ``acct exec`` does after a run when the ending is not what it seems: a file it cannot
read back, a per-model weekly cap, an account switched during the run, a user interrupt, a
stream on the terminal, a reader that went away, and environment tokens the tool ranks below
its file."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time

import pexpect

from acct.base.models import Usage, UsageRecord, Window
from acct.domain.classify import Ending
from acct.domain.limits import quota_rest
from tests.conftest import seed_account
from tests.test_exec import bench_of, events

LIMIT_LINE = "You've hit your session limit · resets 9:20am (UTC)"


def spawn(env: dict[str, str], shell: str) -> pexpect.spawn:
    """``shell`` run by /bin/sh on a terminal of its own, in the test's HOME."""
    return pexpect.spawn(
        "/bin/sh", ["-c", shell], env=env, cwd=env["HOME"], timeout=60, encoding="utf-8"
    )


def acct_cmd(*args: str) -> str:
    return shlex.join([sys.executable, "-m", "acct", *args])


def test_child_status_survives_a_file_acct_cannot_read_back(fake, ctx, run, home) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cred = home / ".claude/.credentials.json"
    script = f"echo {shlex.quote(LIMIT_LINE)}; echo '{{bad' > {shlex.quote(str(cred))}; exit 7"
    p = run("exec", "--account", "a", "--target", "claude-code", "--", "sh", "-c", script)
    assert p.returncode == 7, p.stderr
    warnings = [ln for ln in p.stderr.splitlines() if ln.startswith("acct:")]
    assert len(warnings) == 1, p.stderr
    assert "is not valid JSON" in warnings[0] and "not benching or rotating" in warnings[0]
    assert bench_of(ctx, "a") is None
    assert cred.read_text() == "{bad\n"  # never overwritten
    assert ctx.store.read().get("a").holder is not None  # custody kept: the lineage may be there


def test_full_opus_weekly_cap_does_not_bench_for_days_on_a_terminal(
    fake, ctx, xenv, tool_log
) -> None:
    """On a terminal any exit 1 asks the usage endpoint; a per-model cap must not read as a limit."""
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    fake.set_usage(a.uuid, seven_day_opus=100)
    cmd = acct_cmd("exec", "--account", "a", "--", "claude", "-p", "hi")
    term = spawn(xenv, f"FAKE_TOOL_EXIT=1 {cmd}")  # answered, then failed for another reason
    term.expect(pexpect.EOF)
    term.close()
    assert term.exitstatus == 1, term.before
    assert "switching" not in term.before
    assert bench_of(ctx, "a") is None
    assert len(events(tool_log, "start")) == 1


def test_tool_naming_its_5_hour_limit_rests_until_that_reset_not_the_opus_weekly_one() -> None:
    now = 1_800_000_000.0
    five, opus = now + 3600, now + 5 * 86400
    usage = Usage(Window(100, five), Window(40, now + 6 * 86400), (("Opus", 100.0, opus),))
    rec = UsageRecord("id-a", usage, fetched_at=now)
    rest = quota_rest(Ending("quota", five, LIMIT_LINE, "5-hour"), rec, now, 900)
    assert (rest.kind, rest.until, rest.label) == ("quota", five, "5-hour")
    # The tool saying its Opus limit stopped it: that cap's reset counts.
    opus_ending = Ending("quota", None, "You've hit your Opus limit", "Opus weekly")
    rest = quota_rest(opus_ending, rec, now, 900)
    assert (rest.kind, rest.until) == ("quota", opus)


def test_account_switched_during_the_run_is_not_benched(fake, ctx, run, xenv) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    reset = int(time.time()) + 3600
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)  # would confirm a's limit
    switch = acct_cmd("use", "b", "--target", "claude-code", "--force")
    script = f"{switch} >/dev/null 2>&1 || exit 99; echo {shlex.quote(LIMIT_LINE)}; exit 1"
    p = run("exec", "--account", "a", "--target", "claude-code", "--", "sh", "-c", script)
    assert p.returncode == 1, p.stderr
    assert "held b when the run ended, not a" in p.stderr
    assert "not benching a or rotating" in p.stderr
    assert bench_of(ctx, "a") is None and bench_of(ctx, "b") is None
    accounts = ctx.store.read()
    assert accounts.get("b").holder is not None and accounts.get("a").holder is None


def test_ctrl_c_on_a_terminal_never_rotates(fake, ctx, xenv, tmp_path) -> None:
    """A tool that catches Ctrl-C and exits 1 looks like a limit on a terminal; the user meant stop."""
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    reset = int(time.time()) + 3600
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    ready = tmp_path / "ready"
    tool = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda n, f: sys.exit(1))\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(60)\n"
    )
    term = pexpect.spawn(
        sys.executable,
        ["-m", "acct", "exec", "--account", "a", "--target", "claude-code", "--"]
        + [sys.executable, "-c", tool],
        env=xenv,
        cwd=xenv["HOME"],
        timeout=60,
        encoding="utf-8",
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline, "the tool never started"
            time.sleep(0.02)
        term.sendintr()
        term.expect(pexpect.EOF)
    finally:
        term.close(force=True)
    assert term.exitstatus == 1, term.before
    assert "switching" not in term.before
    assert bench_of(ctx, "a") is None


def test_limit_on_a_terminal_stdout_is_caught_when_only_stderr_is_redirected(
    fake, ctx, xenv, tool_log, tmp_path
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    reset = int(time.time()) + 3600
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    errors = tmp_path / "stderr.txt"
    # The exit-based loop reading the tool's words (the proxy would switch in flight).
    cmd = acct_cmd("exec", "--no-proxy", "--account", "a", "--", "claude", "-p", "hi")
    term = spawn(xenv, f"{cmd} 2>{shlex.quote(str(errors))}")
    term.expect(pexpect.EOF)
    term.close()
    assert term.exitstatus == 0, errors.read_text()
    assert "Hello from b@example.com" in term.before
    assert "a hit its 5-hour limit" in errors.read_text()
    assert len(events(tool_log, "start")) == 2


def test_reader_going_away_stops_the_tool(fake, ctx, xenv) -> None:
    """``acct exec -- claude -p x | head -1``: the tool stops once head has its line."""
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "acct", "exec", "--target", "claude-code", "--", "yes", "y"],
        env=xenv,
        cwd=xenv["HOME"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"y\n"
        proc.stdout.close()  # what head does after its first line
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGPIPE, err
    assert b"switching" not in err


def test_pi_keeps_its_env_tokens_since_its_file_wins_over_them(fake, ctx, run, tmp_path) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    out = tmp_path / "env.txt"
    env = {"ANTHROPIC_OAUTH_TOKEN": "pi-env-oauth", "ANTHROPIC_API_KEY": "pi-env-key"}
    script = f'echo "$ANTHROPIC_OAUTH_TOKEN $ANTHROPIC_API_KEY" > {shlex.quote(str(out))}'
    p = run("exec", "--target", "pi", "--", "sh", "-c", script, env=env)
    assert p.returncode == 0, p.stderr
    assert "removed for this run" not in p.stderr
    assert out.read_text().split() == ["pi-env-oauth", "pi-env-key"]
