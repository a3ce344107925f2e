"""A running ``acct exec`` on the pool: heartbeats, pushed copies of the tool's rotated tokens,
a machine silenced, reclaimed and brought back, and a pool that goes away mid-session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import exec_env
from tests.fake_anthropic.client import FakeAnthropic
from tests.pool.test_commands import Env, listed, local, ok, seed

DEADLINE = 60.0  # generous: a bound for a condition, not a timing assertion


def until(what: str, check: Callable[[], Any]) -> Any:
    end = time.monotonic() + DEADLINE
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.1)


@pytest.fixture
def machines(machine_env, fake: FakeAnthropic, tmp_path: Path) -> Callable[[str], Env]:  # type: ignore[no-untyped-def]
    key: dict[str, str] = {}

    def make(host: str) -> Env:
        env = {**machine_env(host), **fake.env()}
        key.setdefault("path", str(Path(env["ACCT_HOME"]) / "config" / "pool.key"))
        env["ACCT_POOL_KEY"] = key["path"]
        env = exec_env(env, fake, tmp_path / host, tmp_path / f"{host}-tool.jsonl")
        config = Path(env["ACCT_HOME"]) / "config" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("lease_timeout = 5\n")  # a heartbeat a second
        return env

    return make


def db(env: Env) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(env["ACCT_POOL"], autocommit=True)


def one(env: Env, sql: str, *args: object) -> Any:
    with db(env) as conn:
        row = conn.execute(sql.encode(), args).fetchone()
    return row


def credentials(env: Env) -> Path:
    return Path(env["HOME"]) / ".claude" / ".credentials.json"


def file_refresh(env: Env) -> str | None:
    path = credentials(env)
    if not path.exists():
        return None
    entry = json.loads(path.read_text()).get("claudeAiOauth") or {}
    return entry.get("refreshToken")


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            with __import__("contextlib").suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
            p.kill()
            p.wait(timeout=30)


def exec_session(
    env: Env, gate: Path, started: list[subprocess.Popen[str]], **knobs: str
) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-m", "acct", "exec", "--no-proxy", "--", "claude", "-p", "hi"],
        env={**env, "FAKE_TOOL_GATE": str(gate), **knobs}, cwd=env["HOME"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    started.append(p)
    return p


def sha8(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()[:8]


def test_a_running_session_heartbeats_and_pushes_the_tools_rotated_tokens_as_a_copy(
    machines, fake: FakeAnthropic, tmp_path: Path, started
) -> None:  # type: ignore[no-untyped-def]
    laptop = machines("laptop")
    (work,) = seed(fake, laptop, "work")
    ok(laptop, "pool", "init")
    gate = tmp_path / "gate"
    p = exec_session(laptop, gate, started, FAKE_TOOL_REFRESH="1")
    # The tool rotated its lineage in its file; the pool gets a copy while custody stays there.
    rotated = until("the tool rotates its tokens", lambda: (
        (t := file_refresh(laptop)) and work.tokens and t != work.tokens.refresh and t))  # fmt: skip
    pushed = until("a push of the rotated pair", lambda: one(
        laptop, "SELECT pushed_lineage FROM custody WHERE host_id = 'laptop' "
        "AND pushed_lineage = %s", sha8(rotated)))  # fmt: skip
    assert pushed == (sha8(rotated),)
    assert until("the session's row in the pool", lambda: one(
        laptop, "SELECT pid FROM sessions WHERE host_id = 'laptop'")) == (p.pid,)  # fmt: skip
    st = json.loads(ok(laptop, "pool", "status", "--json").stdout)
    (me,) = [m for m in st["machines"] if m["host_id"] == "laptop"]
    assert [(x["pid"], x["account"]) for x in me["live"]] == [(p.pid, "work")]
    assert [h["account"] for h in me["holds"]] == ["work"]
    beat = one(laptop, "SELECT heartbeat_at FROM sessions WHERE host_id = 'laptop'")[0]
    until("a later heartbeat", lambda: one(
        laptop, "SELECT heartbeat_at > %s FROM sessions", beat)[0])  # fmt: skip
    # Only a copy: the pool's own tokens are not the pushed ones while the file holds them.
    with db(laptop) as conn:
        lineage = conn.execute("SELECT lineage FROM accounts").fetchone()
    assert lineage == (sha8(work.tokens.refresh or ""),)
    gate.touch()
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    # At the end the harvest took the file's rotated lineage into the pool; the file (which
    # the tool goes on using after acct exec) stays its one holder.
    assert one(laptop, "SELECT host_id, lineage FROM custody") == ("laptop", sha8(rotated))
    assert one(laptop, "SELECT lineage FROM accounts") == (sha8(rotated),)
    assert one(laptop, "SELECT count(*) FROM sessions") == (0,)
    assert not fake.lineage(uuid=work.uuid)["revoked"]


def test_a_machine_silenced_reclaimed_and_brought_back_reports_it_lost_the_account(
    machines, fake: FakeAnthropic, tmp_path: Path, started
) -> None:  # type: ignore[no-untyped-def]
    laptop = machines("laptop")
    (work,) = seed(fake, laptop, "work")
    ok(laptop, "pool", "init")
    desk = machines("desk")
    gate = tmp_path / "gate"
    p = exec_session(laptop, gate, started, FAKE_TOOL_REFRESH="1")
    rotated = until("the tool rotates its tokens", lambda: (
        (t := file_refresh(laptop)) and work.tokens and t != work.tokens.refresh and t))  # fmt: skip
    until("a push of the rotated pair", lambda: one(
        laptop, "SELECT 1 FROM custody WHERE pushed_lineage = %s", sha8(rotated)))  # fmt: skip
    # The laptop goes silent (its acct stopped; the tool waits on), past the lease.
    os.kill(p.pid, signal.SIGSTOP)
    with db(laptop) as conn:
        conn.execute("UPDATE machines SET last_contact = now() - interval '1 hour' "
                     "WHERE host_id = 'laptop'")  # fmt: skip
    st = json.loads(ok(desk, "pool", "status", "--json").stdout)
    silent = {m["host_id"]: m["silent"] for m in st["machines"]}
    assert silent["laptop"] is True
    refused = subprocess.run(
        [sys.executable, "-m", "acct", "use", "work", "--target", "claude-code"],
        env=desk, capture_output=True, text=True, timeout=60, cwd=desk["HOME"],
    )  # fmt: skip
    assert refused.returncode != 0 and "on machine laptop (silent)" in refused.stderr
    r = ok(desk, "pool", "reclaim", "laptop")
    assert "work: back in the pool, with the tokens laptop last pushed" in r.stdout
    ok(desk, "use", "work", "--target", "claude-code")
    assert file_refresh(desk) == rotated
    # The laptop comes back: it finds out, stops using that lineage and says so.
    os.kill(p.pid, signal.SIGCONT)
    gate.touch()
    _, err = p.communicate(timeout=120)
    assert "this machine lost account work" in err
    assert file_refresh(laptop) is None, err  # its copy is out of the file
    custody = one(laptop, "SELECT host_id, lineage FROM custody")
    assert custody == ("desk", sha8(rotated))
    assert not fake.lineage(uuid=work.uuid)["revoked"]
    # The next command on each machine works, and the desk can refresh the account.
    ok(laptop, "list")
    ok(desk, "use", "work", "--target", "claude-code")
    assert sorted(listed(local(desk) | {"ACCT_POOL": desk["ACCT_POOL"]})) == ["work"]


def test_a_session_keeps_running_while_the_pool_is_down_and_catches_up(
    machines, fake: FakeAnthropic, tmp_path: Path, started, pg
) -> None:  # type: ignore[no-untyped-def]
    laptop = machines("laptop")
    (work,) = seed(fake, laptop, "work")
    ok(laptop, "pool", "init")
    gate = tmp_path / "gate"
    p = exec_session(laptop, gate, started, FAKE_TOOL_REFRESH="1")
    until("the tool runs and rotates its tokens", lambda: (
        (t := file_refresh(laptop)) and work.tokens and t != work.tokens.refresh))  # fmt: skip
    pg.halt()
    try:
        down = subprocess.run(
            [sys.executable, "-m", "acct", "list"], env=laptop, capture_output=True, text=True,
            timeout=60, cwd=laptop["HOME"],
        )  # fmt: skip
        assert down.returncode == 7
        assert len(down.stderr.strip().splitlines()) == 1 and "is unreachable" in down.stderr
        before = credentials(laptop).read_bytes()
        use = subprocess.run(
            [sys.executable, "-m", "acct", "use", "work", "--target", "pi"], env=laptop,
            capture_output=True, text=True, timeout=60, cwd=laptop["HOME"],
        )  # fmt: skip
        assert use.returncode == 7 and use.stderr.count("\n") == 1
        assert not (Path(laptop["HOME"]) / ".pi" / "agent" / "auth.json").exists()
        assert credentials(laptop).read_bytes() == before  # nothing local touched
        prompt = subprocess.run(
            [sys.executable, "-m", "acct", "prompt"], env=laptop, capture_output=True,
            text=True, timeout=60, cwd=laptop["HOME"],
        )  # fmt: skip
        assert prompt.returncode == 0
    finally:
        pg.resume()
    assert p.poll() is None  # the session went on
    gate.touch()
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    # Down between two heartbeats ("is unreachable") or in the middle of one ("lost the connection").
    assert ("unreachable" in err or "lost the connection" in err) and "reachable again" in err
    assert one(laptop, "SELECT lineage FROM custody") == (sha8(file_refresh(laptop) or ""),)
    assert not fake.lineage(uuid=work.uuid)["revoked"]


def test_a_bench_set_on_one_machine_steers_the_next_pick_on_another(
    machines, fake: FakeAnthropic, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from acct.services.context import Ctx

    laptop = machines("laptop")
    a, b = seed(fake, laptop, "a", "b")
    ok(laptop, "pool", "init")
    desk = machines("desk")
    c = Ctx(env=laptop)
    for acc in (a, b):
        c.state.bench(acc.id, time.time() + 3600, kind="quota", reason="weekly limit")
    argv = [sys.executable, "-m", "acct", "exec", "--no-proxy", "--", "claude", "-p", "hi"]
    r = subprocess.run(argv, env=desk, capture_output=True, text=True, timeout=120,
                       cwd=desk["HOME"], stdin=subprocess.DEVNULL)  # fmt: skip
    assert r.returncode == 5 and "rate-limited" in r.stderr
    c.state.unbench(b.id)
    c.state.close()
    r = subprocess.run(argv, env=desk, capture_output=True, text=True, timeout=120,
                       cwd=desk["HOME"], stdin=subprocess.DEVNULL)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert one(desk, "SELECT a.name FROM custody c JOIN accounts a ON a.id = c.account_id") == (
        "b",
    )


def test_leave_is_refused_while_a_running_session_holds_a_lineage_and_says_why(
    machines, fake: FakeAnthropic, tmp_path: Path, started
) -> None:  # type: ignore[no-untyped-def]
    laptop = machines("laptop")
    (work,) = seed(fake, laptop, "work")
    ok(laptop, "pool", "init")
    gate = tmp_path / "gate"
    p = exec_session(laptop, gate, started)
    until("the session's custody", lambda: one(laptop, "SELECT 1 FROM custody"))
    until("the tool runs", lambda: (tmp_path / "laptop-tool.jsonl").exists())
    r = subprocess.run(
        [sys.executable, "-m", "acct", "pool", "leave"], env=laptop, capture_output=True,
        text=True, timeout=60, cwd=laptop["HOME"],
    )  # fmt: skip
    assert r.returncode != 0 and "cannot leave the pool yet" in r.stderr
    assert "running acct exec" in r.stderr
    assert one(laptop, "SELECT left_at FROM machines WHERE host_id = 'laptop'") == (None,)
    gate.touch()
    p.communicate(timeout=120)


def test_reclaim_refuses_a_machine_in_contact_and_without_a_pushed_copy_marks_needs_login(
    machines, fake: FakeAnthropic
) -> None:  # type: ignore[no-untyped-def]
    laptop = machines("laptop")
    seed(fake, laptop, "work", "home")
    ok(laptop, "pool", "init")
    desk = machines("desk")
    ok(laptop, "use", "work", "--target", "claude-code")
    ok(laptop, "use", "home", "--target", "pi")
    r = subprocess.run(
        [sys.executable, "-m", "acct", "pool", "reclaim", "laptop"], env=desk,
        capture_output=True, text=True, timeout=60, cwd=desk["HOME"],
    )  # fmt: skip
    assert r.returncode != 0 and "was in contact" in r.stderr
    with db(laptop) as conn:
        conn.execute("UPDATE machines SET last_contact = now() - interval '1 hour' "
                     "WHERE host_id = 'laptop'")  # fmt: skip
    r = ok(desk, "pool", "reclaim", "laptop", "--account", "work")
    assert "work: taken from laptop; it needs a new login" in r.stdout
    assert listed(desk)["work"]["state"] == "needs_login"
    # home stays the laptop's; the laptop finds out about work at its next command.
    assert one(laptop, "SELECT h.host_id FROM custody h JOIN accounts a ON a.id = h.account_id "
               "WHERE a.name = 'home'") == ("laptop",)  # fmt: skip
    back = ok(laptop, "list")
    assert "this machine lost account work" in back.stderr
    assert file_refresh(laptop) is None
    again = ok(laptop, "list")
    assert "lost account" not in again.stderr  # said once
