"""A signal while a refresh is in flight never loses the rotated tokens.

The fake server rotates the lineage at once and holds its answer for a second; the signal
arrives in that second. Afterwards the store holds the chain's live link (or the answer was
rescued to its 0600 file and the error said so), and the next refresh succeeds: the spent
refresh token was never presented again (the fake would have revoked the whole chain).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acct.services import oauth
from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic
from tests.test_custody import tool_refresh
from tests.test_interrupts import exec_env

COMMANDS = {
    "refresh": ["refresh", "work"],
    "use": ["use", "work", "--target", "pi"],
    "list --usage": ["list", "--usage"],
    "exec": ["exec", "--target", "pi", "--", "pi", "-p", "hi"],
}
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}


def _wait_for_rotation(fake: FakeAnthropic, proc: subprocess.Popen[str]) -> None:
    """Until the server has rotated the lineage (its answer is now held back for a second)."""
    deadline = time.monotonic() + 60
    while not fake.log("token_refresh"):
        assert proc.poll() is None, "acct ended before it refreshed"
        assert time.monotonic() < deadline, "acct never refreshed"
        time.sleep(0.02)


@pytest.mark.parametrize("sig_name", list(SIGNALS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_signal_during_an_in_flight_refresh_lost_the_rotated_tokens(
    fake: FakeAnthropic,
    ctx: Ctx,
    env: dict[str, str],
    tmp_path: Path,
    command: str,
    sig_name: str,
) -> None:
    sig = SIGNALS[sig_name]
    # Thirty seconds left: every one of the commands refreshes before it goes on.
    acc = seed_account(fake, ctx, "work", expires_in=30, five_hour=1, seven_day=1)
    assert acc.tokens is not None
    ctx.state.close()
    xenv = exec_env(env, fake, tmp_path, tmp_path / "tool.jsonl")
    fake.reset_log()
    fake.configure(token_delay_ms=1000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "acct", *COMMANDS[command]],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=xenv,
        cwd=xenv["HOME"],
    )
    try:
        _wait_for_rotation(fake, proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    fake.configure(token_delay_ms=0)
    assert "Traceback" not in err, err
    assert fake.stats()["token_refresh"] == 1
    live = fake.lineage(acc.uuid)
    assert not live["revoked"]
    stored = Ctx(env=env).store.read().get("work")
    rescue = oauth.rescue_path(ctx, acc.id)
    if rescue.exists():
        assert str(rescue) in err  # rescued, and said so
    else:
        assert stored.tokens is not None and stored.tokens.refresh
        assert fake.sha8(stored.tokens.refresh) == live["live_refresh_sha8"]
    # The process did stop for the signal, once the answer was safe.
    assert proc.returncode != 0
    assert proc.returncode in (128 + sig, -sig), (proc.returncode, err)
    # The next refresh goes on from the live link: acct's (which stores a rescued answer, or
    # finds the tokens fresh), then one that spends the stored refresh token.
    if stored.holder is not None:
        AcctRunner(env)("use", "work", "--target", "claude-code", check=True)
    again = AcctRunner(env)("refresh", "work")
    assert again.returncode == 0, again.stderr
    after = Ctx(env=env).store.read().get("work")
    assert after.tokens is not None and after.tokens.refresh
    assert fake.sha8(after.tokens.refresh) == fake.lineage(acc.uuid)["live_refresh_sha8"]
    answer = tool_refresh(fake, after.tokens.refresh)  # 400 (and a revoked chain) if spent
    assert answer["refresh_token"] and not fake.lineage(acc.uuid)["revoked"]
    assert_no_secrets([out, err, again.stdout, again.stderr], store_secrets(Ctx(env=env)))
