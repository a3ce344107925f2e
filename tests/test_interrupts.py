"""Ctrl-C: acct ends at once and says so; a tool's own 130 passes through without a word."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from acct.base.fsio import atomic_write
from acct.base.models import Account
from acct.services.context import Ctx
from tests.conftest import AcctRunner, seed_account
from tests.fake_anthropic.client import FakeAnthropic
from tests.fake_tool import install


def exec_env(env: dict[str, str], fake: FakeAnthropic, tmp_path: Path, log: Path) -> dict[str, str]:
    """The fake tools first on PATH, talking to the fake server, logging to ``log``."""
    bin_dir = install(tmp_path / "bin")
    return {
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "ANTHROPIC_BASE_URL": fake.base_url,
        "FAKE_TOOL_LOG": str(log),
    }


def started(log: Path) -> bool:
    """Whether the fake tool has answered and gone to sleep (FAKE_TOOL_SLEEP)."""
    if not log.exists():
        return False
    return any(json.loads(x)["event"] == "sleeping" for x in log.read_text().splitlines() if x)


def _stderr_lines(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for_line(lines: queue.Queue[str | None], text: str, seen: list[str]) -> None:
    while True:
        line = lines.get(timeout=30)
        assert line is not None, "ended before printing " + repr(text) + ":\n" + "".join(seen)
        seen.append(line)
        if text in line:
            return


def _interrupt_a_hanging_poll(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx, *, once_sent: bool
) -> Account:
    """`acct list --usage` against a usage endpoint that hangs, Ctrl-C'd once the poll says it
    started (``once_sent``: once its request is at the fake); it must end at once, 130, saying
    so. Returns the polled account."""
    acc = seed_account(fake, ctx, "work")
    atomic_write(ctx.paths.config_file, "usage_timeout = 300\n")
    fake.configure(usage_hang_s=300)
    proc = subprocess.Popen(
        [sys.executable, "-m", "acct", "list", "--usage"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=env["HOME"],
    )
    seen: list[str] = []
    lines = _stderr_lines(proc)
    try:
        _wait_for_line(lines, "polling usage", seen)
        # The request is at the fake once it is logged (it logs a request as it arrives, then
        # hangs): a fixed pause was too short on a loaded machine, where the signal then came
        # before the request (during the HTTP client's import).
        deadline = time.monotonic() + 60
        while once_sent and not fake.log("usage"):
            assert time.monotonic() < deadline, "the usage request never reached the fake"
            assert proc.poll() is None, "acct ended before its usage request"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    assert status == 130
    assert "acct: interrupted\n" in seen and not any("Traceback" in s for s in seen)
    return acc


def test_ctrl_c_during_a_usage_poll_ends_it_at_once_and_says_so(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx, acct: AcctRunner
) -> None:
    """The usage endpoint hangs: Ctrl-C must not wait for the request to time out."""
    acc = _interrupt_a_hanging_poll(fake, env, ctx, once_sent=True)
    record = ctx.state.usage(acc.id)
    assert record is not None and record.usage is None
    # The claim was given back: the next poll asks at once instead of waiting out a lease.
    assert ctx.state.claim_poll(acc.id, min_age=0, lease=1)


def test_ctrl_c_before_the_usage_request_is_sent_gives_the_claim_back(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx
) -> None:
    """Ctrl-C as soon as the poll says it started, before its request is on the wire (the HTTP
    client is still being imported): the claim on the account was kept for a whole lease
    (over ten minutes), so every other process skipped the account meanwhile."""
    acc = _interrupt_a_hanging_poll(fake, env, ctx, once_sent=False)
    assert ctx.state.claim_poll(acc.id, min_age=0, lease=1)


def test_a_tools_own_130_passes_through_without_a_word(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx, tmp_path: Path
) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    xenv = exec_env(env, fake, tmp_path, tmp_path / "tool.jsonl")
    proc = AcctRunner(xenv)("exec", "--", "claude", "-p", "hi", env={"FAKE_TOOL_SIGNAL": "INT"})
    assert proc.returncode == 130, proc.stderr
    assert "interrupted" not in proc.stderr


def test_ctrl_c_passed_on_to_the_tool_is_the_tools_to_report(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx, tmp_path: Path
) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    log = tmp_path / "tool.jsonl"
    xenv = exec_env(env, fake, tmp_path, log)
    proc = subprocess.Popen(
        [sys.executable, "-m", "acct", "exec", "--", "claude", "-p", "hi"],
        env={**xenv, "FAKE_TOOL_SLEEP": "60"},
        cwd=xenv["HOME"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not started(log):
            assert time.monotonic() < deadline, "the tool never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "acct: interrupted" not in err
