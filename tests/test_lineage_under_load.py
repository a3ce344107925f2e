"""A running session's login is its tool's: concurrent lends of the same account never take it.

An ``acct exec --target pi`` session runs on account A with an access token below
``refresh_margin`` (the fake issues every token for 15 minutes, so it stays short). Its tool
refreshes with the tokens it holds in memory round after round, as a long-running tool does,
and reads its file again each round. Meanwhile, every round, other processes run ``acct use A
--target pi``, ``acct exec --target pi`` (a second session, which shares the file's account)
and ``acct refresh A``. Against the fake that revokes a chain when a spent refresh token comes
back, any acct process that took the login out of the file and refreshed it would make the
tool read an empty file or present a spent token.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

from acct.services.context import Ctx
from tests.conftest import assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic
from tests.test_interrupts import exec_env

TRIALS = 50
SHORT = 900  # seconds: below refresh_margin (1800), above the tool's own margin (300)
OTHERS = (
    ["use", "work", "--target", "pi"],
    ["exec", "--no-proxy", "--target", "pi", "--", "pi", "-p", "hi"],
    ["refresh", "work"],
)


def _popen(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "acct", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=env["HOME"],
    )


def _events(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(x) for x in log.read_text().splitlines() if x]


def _wait_for(path: Path, session: subprocess.Popen[str], log: Path, what: str) -> None:
    deadline = time.monotonic() + 120  # a guard against a hang, not a timing assertion
    while not path.exists():
        assert session.poll() is None, f"the session ended before {what}: {_events(log)[-2:]}"
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.01)


def test_lends_of_a_running_sessions_account_never_take_its_login(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str], tmp_path: Path
) -> None:
    fake.configure(expires_in=SHORT)
    acc = seed_account(fake, ctx, "work", expires_in=SHORT, five_hour=1, seven_day=1)
    ctx.state.close()
    log = tmp_path / "tool.jsonl"
    xenv = exec_env(env, fake, tmp_path, log)
    gate = tmp_path / "gate"
    session = _popen(
        ["exec", "--no-proxy", "--target", "pi", "--", "pi", "-p", "hi"],
        {**xenv, "FAKE_TOOL_ROUNDS": str(TRIALS + 1), "FAKE_TOOL_GATE": str(gate)},
    )
    rng = random.Random(11)
    outputs: list[str] = []
    others_env = {**xenv, "FAKE_TOOL_LOG": str(tmp_path / "others.jsonl")}
    running: list[subprocess.Popen[str]] = []
    finished: list[tuple[list[str], int, str]] = []

    def collect(p: subprocess.Popen[str]) -> None:
        out, err = p.communicate(timeout=120)
        outputs.extend((out, err))
        finished.append((list(p.args[3:]), p.returncode, err))  # type: ignore[index]

    try:
        deadline = time.monotonic() + 120
        while not any(e["event"] == "start" for e in _events(log)):  # the lend is done
            assert session.poll() is None and time.monotonic() < deadline, session.stderr
            time.sleep(0.02)
        # Each trial starts one more command (use, exec, refresh in turn; up to three run at
        # once), then lets the tool's round happen somewhere among those running.
        for trial in range(1, TRIALS + 1):
            if len(running) == 3:
                collect(running.pop(0))
            running.append(_popen(OTHERS[trial % 3], others_env))
            time.sleep(rng.uniform(0.0, 0.3))
            Path(f"{gate}.{trial}").touch()
            _wait_for(Path(f"{gate}.{trial}.done"), session, log, f"finished round {trial}")
        while running:
            collect(running.pop(0))
        # One last round once nothing else runs, then the session ends.
        Path(f"{gate}.{TRIALS + 1}").touch()
        out, err = session.communicate(timeout=120)
        outputs += [out, err]
    finally:
        for p in [session, *running]:
            if p.poll() is None:
                p.kill()
                p.wait()
    for args, code, text in finished:
        assert "Traceback" not in text, text
        if args[0] == "refresh":
            assert code != 0 and "lent to pi" in text, text  # held by the tool: nothing sent
        else:
            assert code == 0, (args, text)
    assert len(finished) == TRIALS
    events = _events(log) + _events(tmp_path / "others.jsonl")
    assert not [e for e in events if e["event"] in ("no_login", "refresh_refused")], events
    assert session.returncode == 0, err
    rounds = [e for e in _events(log) if e["event"] == "messages" and e.get("round")]
    assert len(rounds) == TRIALS + 1 and all(e["status"] == 200 for e in rounds)
    # 0 chains revoked: every lineage the account ever had is alive, and the tool's rounds are
    # the only refreshes the chain saw.
    lineages = fake.lineage(acc.uuid)["lineages"]
    assert [lin for lin in lineages if lin["revoked"]] == []
    # The first lend's refresh, then only the tool's rounds.
    assert sum(lin["refresh_count"] for lin in lineages) == 1 + TRIALS + 1
    assert_no_secrets(outputs, store_secrets(Ctx(env=env)))
