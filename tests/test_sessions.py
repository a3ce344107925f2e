"""Parallel ``acct exec`` sessions: a Claude Code session of its own file when another runs, the
login given back when it ends (or at the next sweep when acct was killed), OpenCode and Pi
sharing. acct and the fake tool run as real processes against the fake Anthropic server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from acct.services import procs, sessions
from acct.services.context import Ctx
from acct.services.targets import get_target
from tests.conftest import AcctRunner, seed_account
from tests.test_exec import events, message_tokens, no_leaks

WAIT = 60.0


@pytest.fixture
def background(xenv: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``acct ARGS...`` without waiting; every one left is killed at the end."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, **knobs: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "acct", *args],
            env={**xenv, **knobs},
            cwd=xenv["HOME"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_until(check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def waiting(tool_log: Path, n: int) -> None:
    wait_until(lambda: len(events(tool_log, "waiting")) >= n, f"{n} tools waiting")


def finish(proc: subprocess.Popen[str], gate: Path) -> tuple[str, str]:
    gate.touch()
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    return out, err


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def session_dirs(ctx: Ctx) -> list[Path]:
    root = ctx.paths.sessions_dir
    return sorted(root.iterdir()) if root.exists() else []


def status_sessions(run: AcctRunner) -> list[dict]:
    p = run("status", "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["sessions"]


def alive_with(fake, acc_uuid: str, refresh: str | None) -> bool:
    lineage = fake.lineage(acc_uuid)
    return not lineage["revoked"] and lineage["live_refresh_sha8"] == fake.sha8(refresh or "")


def test_parallel_claude_sessions_run_on_different_accounts(
    fake, ctx, run, background, tool_log, tmp_path
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    default = get_target("claude-code").path(ctx.env)
    gate1, gate2 = tmp_path / "gate1", tmp_path / "gate2"
    first = background(
        "exec", "--", "claude", "-p", "one", FAKE_TOOL_GATE=str(gate1), FAKE_TOOL_AGAIN="1"
    )
    waiting(tool_log, 1)
    before = snapshot(default)
    second = background("exec", "--", "claude", "-p", "two", FAKE_TOOL_GATE=str(gate2))
    waiting(tool_log, 2)

    running = status_sessions(run)
    assert [(s["account"], s["isolated"]) for s in running] == [("a", False), ("b", True)]
    assert running[1]["path"].startswith(str(ctx.paths.sessions_dir))
    assert [d.name for d in session_dirs(ctx)] == [running[1]["id"]]

    out2, err2 = finish(second, gate2)
    assert "Hello from b@example.com" in out2
    assert "this one gets a credentials file of its own" in err2
    assert snapshot(default) == before  # never rewritten under the first session
    assert session_dirs(ctx) == []
    assert ctx.store.read().get("b").holder is None  # back in the store

    out1, _ = finish(first, gate1)
    # The first tool read its file again after the second session: still its own account.
    assert out1.count("Hello from a@example.com") == 2
    assert message_tokens(fake) == [fake.sha8(x.tokens.access) for x in (a, b, a)]

    stored = ctx.store.read()
    assert stored.get("a").holder is not None and stored.get("a").holder.path == str(default)
    assert stored.get("b").holder is None
    for acc in (stored.get("a"), stored.get("b")):
        assert alive_with(fake, acc.uuid, acc.tokens.refresh)
    assert ctx.state.sessions() == []
    assert status_sessions(run) == []
    no_leaks(ctx, run, out1, out2, err2)


def test_quota_in_an_isolated_session_rotates_within_it(
    fake, ctx, run, background, tool_log, tmp_path
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    b = seed_account(fake, ctx, "b", five_hour=10, seven_day=10)
    c = seed_account(fake, ctx, "c", five_hour=30, seven_day=30)
    reset = int(time.time()) + 2 * 3600
    fake.set_messages(b.uuid, "quota", reset_epoch=reset)
    fake.set_usage(b.uuid, five_hour=100, five_hour_resets_at=reset)
    default = get_target("claude-code").path(ctx.env)
    gate = tmp_path / "gate"
    first = background("exec", "--", "claude", "-p", "one", FAKE_TOOL_GATE=str(gate))
    waiting(tool_log, 1)
    before = snapshot(default)

    # The exit-based loop (in flight, the proxy keeps c in the store: test_proxy_failover.py).
    p = run("exec", "--no-proxy", "--account", "b", "--", "claude", "-p", "two")
    assert p.returncode == 0, p.stderr
    assert "You've hit your session limit" in p.stdout
    assert "Hello from c@example.com" in p.stdout
    assert "acct: b hit its 5-hour limit" in p.stderr and "switching to c" in p.stderr
    assert snapshot(default) == before
    assert session_dirs(ctx) == []
    stored = ctx.store.read()
    assert stored.get("c").holder is None and stored.get("b").holder is None
    assert ctx.state.benches().get(b.id) is not None

    finish(first, gate)
    assert message_tokens(fake) == [fake.sha8(x.tokens.access) for x in (a, b, c)]
    assert ctx.store.read().get("a").holder.path == str(default)
    for acc in ctx.store.read():
        assert alive_with(fake, acc.uuid, acc.tokens.refresh)


def test_a_killed_session_is_swept_and_its_rotated_login_taken_back(
    fake, ctx, run, background, tool_log, tmp_path
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    gate = tmp_path / "gate"
    proc = background(
        "exec", "--isolate", "--", "claude", "-p", "hi",
        FAKE_TOOL_GATE=str(gate), FAKE_TOOL_REFRESH="1",
    )  # fmt: skip
    waiting(tool_log, 1)
    [own] = session_dirs(ctx)
    assert oct((own / ".credentials.json").stat().st_mode & 0o777) == "0o600"
    assert oct(own.stat().st_mode & 0o777) == "0o700"
    proc.kill()  # SIGKILL: acct cleans nothing up
    proc.communicate()

    # The tool outlives acct and still uses its file: the session is live, nothing is taken.
    [row] = status_sessions(run)
    assert row["isolated"] and row["account"] == "a" and row["pid"] == proc.pid
    assert session_dirs(ctx) == [own]
    assert not alive_with(fake, a.uuid, ctx.store.read().get("a").tokens.refresh)  # rotated

    gate.touch()
    tool_pid = events(tool_log, "start")[0]["pid"]
    wait_until(lambda: events(tool_log, "end"), "the tool to end")
    wait_until(lambda: not procs.running(tool_pid, None), "the tool's process to go")

    p = run("status")
    assert p.returncode == 0, p.stderr
    assert "ended without cleaning up; a's login is back in acct's store" in p.stderr
    assert session_dirs(ctx) == []
    assert ctx.state.sessions() == []
    stored = ctx.store.read().get("a")
    assert stored.holder is None
    assert alive_with(fake, a.uuid, stored.tokens.refresh)  # the rotated token, not lost

    p = run("exec", "--", "claude", "-p", "again")
    assert p.returncode == 0, p.stderr
    assert "Hello from a@example.com" in p.stdout
    no_leaks(ctx, run)


@pytest.mark.parametrize("isolated", [False, True])
def test_a_session_killed_before_its_tool_started_is_swept_quietly(
    fake, ctx, run, isolated
) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    own = ctx.paths.sessions_dir / "0123456789ab"
    env = {**ctx.env, sessions.STORAGE_VAR: str(own)} if isolated else ctx.env
    if isolated:
        own.mkdir(parents=True)
    row = sessions.SessionRow(
        own.name, dead.pid, None, None, None, "claude-code",
        str(get_target("claude-code").path(env)), isolated, None, time.time(),
    )  # fmt: skip
    ctx.state.add_session(lambda rows: row)
    assert ctx.state.sessions() == [row]

    p = run("status", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["sessions"] == []
    assert "session" not in p.stderr and "store" not in p.stderr  # nothing was lent: nothing said
    assert ctx.state.sessions() == []
    assert session_dirs(ctx) == []


def test_isolate_is_a_usage_error_for_pi(fake, ctx, run, tool_log) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    p = run("exec", "--isolate", "--", "pi", "-p", "hi")
    assert p.returncode == 2
    assert "--isolate works for claude-code only" in p.stderr
    assert "PI_CODING_AGENT_DIR moves Pi's sessions" in p.stderr
    assert events(tool_log, "start") == []
    assert ctx.state.sessions() == []


@pytest.mark.parametrize(("cmd", "args"), [("pi", ["-p"]), ("opencode", ["run"])])
def test_a_second_session_of_opencode_or_pi_shares_the_account(
    fake, ctx, run, background, tool_log, tmp_path, cmd, args
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    target = get_target(cmd)
    gate = tmp_path / "gate"
    first = background("exec", "--", cmd, *args, "one", FAKE_TOOL_GATE=str(gate))
    waiting(tool_log, 1)
    before = snapshot(target.path(ctx.env))

    p = run("exec", "--", cmd, *args, "two")
    assert p.returncode == 0, p.stderr
    assert "this session shares it" in p.stderr and "runs " + target.name + " on a" in p.stderr
    assert snapshot(target.path(ctx.env)) == before
    p = run("exec", "--account", "b", "--", cmd, *args, "three")
    assert p.returncode == 2
    assert "--account b would switch its file under it" in p.stderr

    finish(first, gate)
    assert message_tokens(fake) == [fake.sha8(a.tokens.access)] * 2
    assert session_dirs(ctx) == []
    assert ctx.state.sessions() == []


def test_sessions_end_one_after_another_use_the_default_file(fake, ctx, run) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    for _ in range(2):
        p = run("exec", "--", "claude", "-p", "hi")
        assert p.returncode == 0, p.stderr
        assert "credentials file of its own" not in p.stderr
    assert session_dirs(ctx) == []
    assert os.path.exists(get_target("claude-code").path(ctx.env))


# --- regressions ---------------------------------------------------------------------------------


def test_use_does_not_pull_an_account_out_of_a_live_session_nor_switch_its_file(
    fake, ctx, run, background, tool_log, tmp_path
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    seed_account(fake, ctx, "c", five_hour=50, seven_day=50)
    default = get_target("claude-code").path(ctx.env)
    gate1, gate2 = tmp_path / "gate1", tmp_path / "gate2"
    first = background("exec", "--", "claude", "-p", "one", FAKE_TOOL_GATE=str(gate1))
    waiting(tool_log, 1)
    second = background(
        "exec", "--", "claude", "-p", "two", FAKE_TOOL_GATE=str(gate2), FAKE_TOOL_AGAIN="1"
    )
    waiting(tool_log, 2)
    [own] = session_dirs(ctx)
    own_file = own / ".credentials.json"
    before_own, before_default = snapshot(own_file), snapshot(default)

    p = run("use", "b", "--target", "claude-code")
    assert p.returncode != 0
    assert f"'b' is in use by a running acct exec (pid {second.pid})" in p.stderr
    assert "claude-code" in p.stderr and "wait for that session to end" in p.stderr
    assert snapshot(own_file) == before_own and snapshot(default) == before_default

    p = run("use", "c")
    assert p.returncode != 0
    assert f"claude-code's file is in use by a running acct exec (pid {first.pid})" in p.stderr
    assert "--force" in p.stderr
    assert snapshot(default) == before_default
    assert run("use", "a").returncode == 0  # already there: nothing switches

    out2, _ = finish(second, gate2)
    assert out2.count("Hello from b@example.com") == 2  # its tool kept its login throughout
    out1, _ = finish(first, gate1)
    assert "Hello from a@example.com" in out1
    stored = ctx.store.read()
    assert stored.get("b").holder is None and stored.get("c").holder is None
    for acc in (a, b):
        assert alive_with(fake, acc.uuid, ctx.store.read().get(acc.name).tokens.refresh)


def _mcp_login_during(
    run_in_background: Callable[..., subprocess.Popen[str]],
    tool_log: Path,
    ctx: Ctx,
    gate: Path,
    keys: dict,
) -> tuple[subprocess.Popen[str], Path]:
    """An isolated session whose tool logs in to MCP servers while it runs (into its own file)."""
    proc = run_in_background(
        "exec", "--isolate", "--", "claude", "-p", "x", FAKE_TOOL_GATE=str(gate)
    )
    waiting(tool_log, 1)
    [own] = session_dirs(ctx)
    path = own / ".credentials.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, **keys}))
    return proc, own


def test_mcp_logins_made_in_an_isolated_session_survive_its_end(
    fake, ctx, background, tool_log, tmp_path
) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    default = get_target("claude-code").path(ctx.env)
    default.parent.mkdir(parents=True, exist_ok=True)
    default.write_text(json.dumps({"mcpOAuth": {"old|1": {"accessToken": "m0"}}, "x": 1}))
    made = {
        "mcpOAuth": {"github|4f1c": {"accessToken": "m1", "refreshToken": "r1"}},
        "pluginSecrets": {"p": {"key": "s"}},
    }
    gate = tmp_path / "gate"
    proc, _ = _mcp_login_during(background, tool_log, ctx, gate, made)
    _, err = finish(proc, gate)
    assert "kept" not in err
    assert session_dirs(ctx) == [] and ctx.state.sessions() == []
    doc = json.loads(default.read_text())
    assert doc["mcpOAuth"] == {
        "old|1": {"accessToken": "m0"},
        "github|4f1c": {"accessToken": "m1", "refreshToken": "r1"},
    }
    assert doc["pluginSecrets"] == made["pluginSecrets"] and doc["x"] == 1
    assert "claudeAiOauth" not in doc  # the session's login went back to the store, not here
    assert ctx.store.read().get("a").holder is None


def test_an_mcp_login_that_differs_from_the_default_files_keeps_the_session_file(
    fake, ctx, run, background, tool_log, tmp_path
) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    default = get_target("claude-code").path(ctx.env)
    default.parent.mkdir(parents=True, exist_ok=True)
    default.write_text(json.dumps({"mcpOAuth": {"srv|1": {"accessToken": "outside"}}}))
    made = {"mcpOAuth": {"srv|1": {"accessToken": "inside"}, "new|2": {"accessToken": "n"}}}
    gate = tmp_path / "gate"
    proc, own = _mcp_login_during(background, tool_log, ctx, gate, made)
    _, err = finish(proc, gate)
    assert "mcpOAuth['srv|1']" in err and str(own) in err and "neither is lost" in err
    assert session_dirs(ctx) == [own]
    assert json.loads((own / ".credentials.json").read_text())["mcpOAuth"] == made["mcpOAuth"]
    assert json.loads(default.read_text())["mcpOAuth"] == {
        "srv|1": {"accessToken": "outside"},
        "new|2": {"accessToken": "n"},
    }
    assert ctx.store.read().get("a").holder is None  # the account itself is back

    p = run("status")
    assert p.returncode == 0 and "mcpOAuth['srv|1']" in p.stderr  # said again until resolved
    shutil.rmtree(own)
    p = run("status")
    assert p.returncode == 0 and "session" not in p.stderr
    assert ctx.state.sessions() == []


def test_a_session_directory_without_a_record_is_swept(fake, ctx, run) -> None:
    from acct.services import custody

    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    root = ctx.paths.sessions_dir
    lent, stranger = root / "aaaaaaaaaaaa", root / "bbbbbbbbbbbb"
    custody.lend(ctx, a.id, "claude-code", {**ctx.env, sessions.STORAGE_VAR: str(lent)})
    assert ctx.store.read().get("a").holder is not None
    other = fake.add_account(email="stranger@example.com")
    answer = fake.mint(other["uuid"])
    stranger.mkdir()
    entry = {
        "accessToken": answer["access_token"],
        "refreshToken": answer["refresh_token"],
        "expiresAt": int(time.time() + 3600) * 1000,
        "scopes": ["user:inference", "user:profile"],
    }
    (stranger / ".credentials.json").write_text(json.dumps({"claudeAiOauth": entry}))
    assert ctx.state.sessions() == []  # as after the state database was moved aside

    p = run("status")
    assert p.returncode == 0, p.stderr
    assert f"{lent} was left by an acct exec session; a's login is back in acct's store" in p.stderr
    assert "holds a login acct does not track" in p.stderr and str(stranger) in p.stderr
    assert session_dirs(ctx) == [stranger]
    acc = ctx.store.read().get("a")
    assert acc.holder is None and alive_with(fake, a.uuid, acc.tokens.refresh)


HOLD_LOCK = """\
import sys
from pathlib import Path
from acct.base.fsio import file_lock
with file_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_sweep_leaves_a_session_another_process_is_ending(fake, ctx) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    row = sessions.SessionRow(
        "0123456789ab", dead.pid, None, None, None, "claude-code",
        str(get_target("claude-code").path(ctx.env)), False, None, time.time(),
    )  # fmt: skip
    ctx.state.add_session(lambda rows: row)
    lock = ctx.paths.locks_dir / f"session-{row.id}"
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            HOLD_LOCK,
            str(lock),
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        [message] = sessions.sweep(ctx, wait=0.1)
        assert f"left an acct exec session of claude-code (pid {dead.pid}) for later" in message
        assert ctx.state.sessions() == [row]
    finally:
        holder.communicate("")
    assert sessions.sweep(ctx) == []
    assert ctx.state.sessions() == []
