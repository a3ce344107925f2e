"""The exec session as a use case, in-process: no CLI, no terminal, a reporter that records.

The session (``acct.app.exec_session``) tells a :class:`Reporter` what happens instead of
printing; these tests run it from Python with the fake tool as its real child and read what it
reported, as any other front end would.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from acct.app.exec_session import ExecOptions, SilentReporter, run_exec
from acct.base.errors import AllLimited, UsageError
from acct.services.context import Ctx
from tests.conftest import exec_env, seed_account
from tests.fake_anthropic.client import FakeAnthropic
from tests.test_exec import events


class Recorder(SilentReporter):
    """Keeps notes and warnings apart, and refuses to wait (a test never sleeps for a reset)."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []
        self.warnings: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def wait(self, until: float, message: str) -> None:
        raise AssertionError(f"the session waited: {message}")


@pytest.fixture
def session_ctx(env: dict[str, str], fake: FakeAnthropic, tmp_path: Path) -> Ctx:
    return Ctx(env=exec_env(env, fake, tmp_path, tmp_path / "tool.jsonl"))


def test_a_rotation_is_reported_as_news_and_the_run_ends_with_the_tools_status(
    fake: FakeAnthropic, session_ctx: Ctx, tmp_path: Path
) -> None:
    a = seed_account(fake, session_ctx, "a", five_hour=10, seven_day=10)
    seed_account(fake, session_ctx, "b", five_hour=30, seven_day=30)
    reset = int(time.time()) + 2 * 3600
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    out = Recorder()
    opts = ExecOptions(argv=["claude", "-p", "write the report"], account="a", proxy=False)
    assert run_exec(session_ctx, opts, out) == 0
    switches = [n for n in out.notes if "switching" in n]
    assert len(switches) == 1 and switches[0].startswith("a hit its 5-hour limit (resets ")
    assert switches[0].endswith("→ switching to b")
    assert not any(n.startswith("acct:") for n in out.notes), "the reporter adds the prefix"
    starts = events(tmp_path / "tool.jsonl", "start")
    assert [s["argv"][1] for s in starts] == ["-p", "--continue"]


def test_explain_lines_reach_the_reporter_not_stderr(
    fake: FakeAnthropic, session_ctx: Ctx, capfd: pytest.CaptureFixture[str]
) -> None:
    seed_account(fake, session_ctx, "busy", five_hour=70, seven_day=20)
    seed_account(fake, session_ctx, "idle", five_hour=5, seven_day=10)
    out = Recorder()
    opts = ExecOptions(argv=["claude", "-p", "hi"], explain=True, proxy=False)
    assert run_exec(session_ctx, opts, out) == 0
    assert out.notes[-1].startswith("chose idle (")
    ranked = [n for n in out.notes if re.match(r"^ ?\d+\. \w+: ", n)]
    assert [n.split(".", 1)[1].split(":")[0].strip() for n in ranked] == ["idle", "busy"]
    assert "chose idle" not in capfd.readouterr().err


def test_every_account_limited_without_wait_raises_with_the_earliest_reset(
    fake: FakeAnthropic, session_ctx: Ctx
) -> None:
    a = seed_account(fake, session_ctx, "a", five_hour=10, seven_day=10)
    session_ctx.state.bench(a.id, time.time() + 3600, kind="quota", reason="5-hour limit")
    with pytest.raises(AllLimited, match="earliest reset is a at"):
        run_exec(session_ctx, ExecOptions(argv=["claude", "-p", "hi"], proxy=False), Recorder())


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (ExecOptions(argv=[]), "no command to run"),
        (ExecOptions(argv=["vim"]), "cannot tell which tool 'vim' is"),
        (ExecOptions(argv=["claude"], policy="lucky"), "unknown policy 'lucky'"),
        (ExecOptions(argv=["claude"], max_rotations=-1), "--max-rotations must be 0 or more"),
    ],
)
def test_options_are_validated_before_anything_runs(
    offline_env: dict[str, str], opts: ExecOptions, message: str
) -> None:
    c = Ctx(env=offline_env)
    with pytest.raises(UsageError, match=message):
        opts.validate(c)
    assert not c.paths.state_dir.exists(), "validation touched acct's state"
