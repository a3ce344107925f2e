"""How errors reach the user: one line on stderr, never a traceback, hints without nesting."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from acct.services.context import Ctx
from tests.conftest import AcctRunner, seed_account
from tests.fake_anthropic.client import FakeAnthropic


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("acct: ")
    return lines[0]


def test_a_file_in_the_way_of_the_data_directory_is_one_line_not_a_traceback(
    home: Path, ctx: Ctx, acct: AcctRunner
) -> None:
    (home / ".local").write_text("")
    proc = acct("login", "k", "--api-key", input="sk-ant-api03-key\n")
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert str(home / ".local") in line and "Not a directory" in line


def test_xdg_state_home_pointing_at_a_file_is_one_line_not_a_traceback(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, tmp_path: Path
) -> None:
    seed_account(fake, ctx, "work")
    state = tmp_path / "state-file"
    state.write_text("")
    for args in (("list",), ("list", "--usage"), ("refresh", "work")):
        proc = acct(*args, env={"XDG_STATE_HOME": str(state)})
        assert proc.returncode == 1, args
        line = one_line(proc.stderr)
        assert str(state) in line and "Not a directory" in line


def test_an_os_error_that_reaches_the_top_is_one_line(env: dict[str, str]) -> None:
    code = textwrap.dedent(
        """
        import errno, sys
        from acct.cli import app, run

        @app.command("boom")
        def boom() -> None:
            raise OSError(errno.ENOSPC, "No space left on device", "/var/full/accounts.toml")

        sys.exit(run(["boom"]))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert one_line(proc.stderr) == "acct: No space left on device: /var/full/accounts.toml"


def _depth(text: str) -> int:
    deepest = level = 0
    for c in text:
        level += {"(": 1, ")": -1}.get(c, 0)
        deepest = max(deepest, level)
    return deepest


def test_error_hints_follow_the_message_without_nested_parentheses(
    ctx: Ctx, acct: AcctRunner
) -> None:
    path = ctx.paths.accounts_file
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_text("version = 1\n[[accounts]]\nname = 'a'\nid = '1'\nenabled = 'yes'\n")
    line = one_line(acct("list").stderr)
    assert "acct leaves it untouched; fix or move" in line
    assert _depth(line) <= 1, line
