"""The CLI's surface: usage and config errors as one line, prompts, refresh wording, the --wait
countdown on a terminal and on a pipe."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import typer

from acct.base.fsio import atomic_write, file_lock
from acct.base.models import Tokens
from acct.cli import usage_error
from acct.services.context import Ctx
from tests.conftest import AcctRunner, exec_env, seed_account
from tests.fake_anthropic.client import FakeAnthropic
from tests.test_cli_errors import one_line
from tests.test_refresh import _in_lock_wait

# --- usage errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("lst",), "acct: no such command 'lst'; did you mean 'list'"),
        (("list", "--bogus"), "acct: no such option: --bogus; `acct list --help` shows the usage"),
        (("exec",), "acct: missing argument 'CMD...'; `acct exec --help` shows the usage"),
        (("login", "--timeout", "0"), "acct: invalid value for '--timeout'"),
    ],
)
def test_a_usage_error_is_one_line_with_exit_2(
    acct: AcctRunner, args: tuple[str, ...], expected: str
) -> None:
    proc = acct(*args)
    assert proc.returncode == 2, proc.stderr
    assert one_line(proc.stderr).startswith(expected)
    assert "╭" not in proc.stderr and proc.stdout == ""


def test_a_usage_error_with_json_also_prints_the_json_error(acct: AcctRunner) -> None:
    proc = acct("list", "--bogus", "--json")
    assert proc.returncode == 2
    one_line(proc.stderr)
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "error" and doc["error"]["code"] == "usage"
    assert doc["error"]["message"] == "no such option: --bogus"


def test_acct_without_arguments_prints_help_on_stdout_and_exits_0(acct: AcctRunner) -> None:
    proc = acct()
    assert proc.returncode == 0, proc.stderr
    assert "Usage: acct" in proc.stdout and "exec" in proc.stdout and proc.stderr == ""


def test_usage_errors_are_read_through_typers_public_exception() -> None:
    """The mapping relies on typer.TyperException being the base of the parser's errors: if a
    Typer release moves them, this fails rather than acct printing boxes again."""
    assert issubclass(typer.BadParameter, typer.TyperException)
    error = usage_error(typer.BadParameter("must be positive", param_hint="'--n'"))
    assert (error.message, error.exit_code) == ("invalid value for '--n': must be positive", 2)


# --- config errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('polcy = "pace"\n', "unknown key 'polcy'"),
        ("[[[ not toml\n", "is not valid TOML"),
        ("max_rotations = -1\n", "max_rotations must be a non-negative number"),
        ("[targets.pi]\nquota_patterns = 'x'\n", "must be a list of strings"),
    ],
)
def test_a_bad_config_fails_every_command_naming_the_file(
    ctx: Ctx, acct: AcctRunner, text: str, what: str
) -> None:
    atomic_write(ctx.paths.config_file, text)
    for args in (("list",), ("status",), ("list", "--json")):
        proc = acct(*args)
        assert proc.returncode == 1, (args, proc.stderr)
        line = one_line(proc.stderr)
        assert str(ctx.paths.config_file) in line and what in line, line
    assert json.loads(acct("list", "--json").stdout)["error"]["code"] == "config"


def test_a_bad_config_leaves_the_prompt_and_help_alone(ctx: Ctx, acct: AcctRunner) -> None:
    atomic_write(ctx.paths.config_file, 'polcy = "pace"\n')
    assert acct("prompt").returncode == 0
    helped = acct("list", "--help")
    assert helped.returncode == 0 and "Usage: acct list" in helped.stdout


# --- prompts on a terminal -----------------------------------------------------------------------


def _on_a_pty(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """``args`` with a new pseudo-terminal as its controlling terminal and stdin/stdout/stderr."""
    master, slave = os.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        args,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=env["HOME"],
        preexec_fn=own_terminal,  # noqa: PLW1509  (a test child: no threads to trip over)
    )
    os.close(slave)
    return proc, master


def _read_until(master: int, proc: subprocess.Popen[bytes], text: str | None) -> str:
    """The terminal's output up to ``text`` (None: until the process ends)."""
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if text is not None and text.encode() in seen:
            break
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed its side
                break
            if not chunk:
                break
            seen += chunk
        elif text is None and proc.poll() is not None:
            break
    return seen.decode("utf-8", "replace")


def test_ctrl_c_at_the_api_key_prompt_is_an_interrupt_with_nothing_stored(
    env: dict[str, str], ctx: Ctx
) -> None:
    proc, master = _on_a_pty([sys.executable, "-m", "acct", "login", "ci", "--api-key"], env)
    try:
        assert "API key:" in _read_until(master, proc, "API key:")
        os.write(master, b"\x03")  # the terminal turns it into SIGINT
        rest = _read_until(master, proc, None)
        assert proc.wait(timeout=30) == 130, rest
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert "acct: login interrupted; nothing was stored" in rest
    assert "Aborted" not in rest
    assert not ctx.paths.accounts_file.exists()


# --- refresh wording -----------------------------------------------------------------------------


def _obtained(ctx: Ctx, name: str, ago: int) -> None:
    with ctx.store.transaction() as accounts:
        acc = accounts.get(name)
        assert acc.tokens is not None
        acc.tokens = Tokens(
            access=acc.tokens.access,
            refresh=acc.tokens.refresh,
            expires_at=acc.tokens.expires_at,
            scopes=acc.tokens.scopes,
            obtained_at=int(time.time()) - ago,
        )
        accounts.put(acc)


def test_refresh_right_after_a_login_says_the_token_is_fresh(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work")
    _obtained(ctx, "work", ago=20)
    fake.reset_log()
    proc = acct("refresh", "work")
    assert proc.returncode == 0, proc.stderr
    assert re.match(r"work: token is fresh \(obtained 2\ds ago\); not refreshed; ", proc.stdout)
    assert "another process" not in proc.stdout
    doc = json.loads(acct("refresh", "work", "--json").stdout)["accounts"][0]
    assert doc["already_fresh"] is True and doc["refreshed_here"] is False
    assert isinstance(doc["obtained_at_epoch"], int) and doc["obtained_at"].startswith("20")
    assert fake.stats().get("token_refresh", 0) == 0


def test_refresh_that_waited_while_another_process_refreshed_says_so(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx
) -> None:
    acc = seed_account(fake, ctx, "work")
    _obtained(ctx, "work", ago=3600)
    fake.reset_log()
    with file_lock(ctx.paths.account_lock(acc.id)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "acct", "refresh", "work"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=env["HOME"],
        )
        deadline = time.monotonic() + 20
        while not _in_lock_wait(proc.pid):
            assert time.monotonic() < deadline and proc.poll() is None, "never waited for the lock"
            time.sleep(0.05)
        # Another process's refresh, as it lands in the store: a new link of the lineage.
        new = fake.mint(acc.uuid or "")
        with ctx.store.transaction() as accounts:
            held = accounts.get("work")
            held.tokens = Tokens(
                access=new["access_token"],
                refresh=new["refresh_token"],
                expires_at=int(time.time()) + 28800,
                obtained_at=int(time.time()),
            )
            accounts.put(held)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.startswith("work: refreshed just now by another process; ")
    assert fake.stats().get("token_refresh", 0) == 0


# --- the --wait countdown ------------------------------------------------------------------------

SENTENCE = "every account is rate-limited; waiting for work's reset at 10:39 UTC"
COUNTDOWN = (
    f"from acct.cli.exec import countdown; import time; countdown(time.time() + 2.5, {SENTENCE!r})"
)


@pytest.mark.parametrize("columns", [80, 12])
def test_the_countdown_redraws_a_short_line_that_never_wraps(
    env: dict[str, str], columns: int
) -> None:
    proc, master = _on_a_pty([sys.executable, "-c", COUNTDOWN], {**env, "COLUMNS": str(columns)})
    try:
        shown = _read_until(master, proc, None)
        assert proc.wait(timeout=30) == 0, shown
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    first, _, redraws = shown.partition("\n")
    assert first.strip() == f"acct: {SENTENCE} (Ctrl-C cancels)"
    assert shown.count(SENTENCE) == 1
    frames = [f.replace("\x1b[K", "") for f in redraws.split("\r") if f.strip("\x1b[K\n")]
    assert frames, repr(shown)
    assert all(len(f) < columns for f in frames), frames
    if columns == 80:
        assert all(re.fullmatch(r"acct: \d+s left", f) for f in frames), frames


def test_the_countdown_on_a_pipe_prints_one_line_and_no_redraws(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", COUNTDOWN],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0
    assert proc.stderr == f"acct: {SENTENCE} (Ctrl-C cancels)\n"


# --- a disabled account named with --account ------------------------------------------------------


def test_exec_on_a_disabled_account_named_with_account_warns(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str], tmp_path: Path
) -> None:
    seed_account(fake, ctx, "team", five_hour=1, seven_day=1)
    with ctx.store.transaction() as accounts:
        acc = accounts.get("team")
        acc.enabled = False
        accounts.put(acc)
    xenv = exec_env(env, fake, tmp_path, tmp_path / "tool.jsonl")
    proc = AcctRunner(xenv)("exec", "--account", "team", "--", "claude", "-p", "hi")
    assert proc.returncode == 0, proc.stderr
    assert "acct: warning: team is disabled; running it because --account names it" in proc.stderr


def test_version_prints_the_version_and_imports_no_command() -> None:
    import subprocess
    import sys

    from acct import __version__

    probe = (
        "import sys, runpy; sys.argv = ['acct', '--version']\n"
        "try:\n    runpy.run_module('acct', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('acct.cli', 'typer', 'httpx')))\n"
        "print('loaded', loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"acct {__version__}", "loaded []"]
    both = subprocess.run([sys.executable, "-m", "acct", "--version"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert both.returncode == 0 and both.stdout == f"acct {__version__}\n"
